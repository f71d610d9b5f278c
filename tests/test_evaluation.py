"""Hand-built TinyPerson evaluation cases whose numbers are worked out by hand, bad input, and the CLI."""

from __future__ import annotations

import json
import math

import pytest

from tinyfast.evaluate import main
from tinyfast.evaluation import EvalParams, MissRateParams, evaluate

# 101 recall points: precision 1 up to recall 0.5 and 0 after gives 51/101. (pycocotools divides by
# tp + fp + eps, so "1" is 1 - 2e-16: compare with approx.)
HALF_RECALL_AP = 51 / 101


def dataset(gts: list[tuple], n_images: int = 1) -> dict:
    """gts: (image_id, [x, y, w, h], extra fields)."""
    annotations = [
        {
            "id": i + 1,
            "image_id": image,
            "category_id": 1,
            "bbox": box,
            "area": box[2] * box[3],
            "iscrowd": 0,
            **extra,
        }
        for i, (image, box, extra) in enumerate(gts)
    ]
    images = [
        {"id": i, "width": 1920, "height": 1080, "file_name": f"{i}.jpg"} for i in range(1, n_images + 1)
    ]
    return {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "person"}]}


def det(image: int, box: list[float], score: float) -> dict:
    return {"image_id": image, "category_id": 1, "bbox": box, "score": score}


def ap(gt: dict, results: list, key: str = "AP50_all", **kwargs) -> float:
    return evaluate(gt, results, miss_rate=False, **kwargs)[key]


def test_perfect_detection_gives_one():
    gt = dataset([(1, [10, 10, 8, 8], {})])
    metrics = evaluate(gt, [det(1, [10, 10, 8, 8], 0.9)], miss_rate=False)
    assert metrics["AP50_tiny"] == pytest.approx(1.0) and metrics["AR75_tiny1"] == 1.0
    assert metrics["AP50_small"] == -1  # no GT in that range


def test_ignore_region_absorbs_several_detections():
    gt = dataset([(1, [100, 100, 10, 10], {}), (1, [300, 300, 40, 40], {"ignore": 1})])
    results = [
        det(1, [305, 305, 5, 5], 0.97),  # inside the ignore region: IoU 25/1600 but IoD 1
        det(1, [320, 320, 6, 6], 0.95),  # a second one, absorbed by the same region
        det(1, [100, 100, 10, 10], 0.9),  # the true positive
    ]
    assert ap(gt, results) == pytest.approx(1.0)
    # Without the IoD rule both are false positives ranked before the true positive: precision 1/3.
    assert ap(gt, results, params=EvalParams(iod_fallback=False)) == pytest.approx(1 / 3)


def test_uncertain_box_is_ignored():
    gt = dataset([(1, [100, 100, 10, 10], {}), (1, [200, 200, 10, 10], {"uncertain": 1})])
    results = [det(1, [100, 100, 10, 10], 0.9)]
    assert evaluate(gt, results, miss_rate=False)["AR50_all"] == 1.0
    # Counted as a person, the uncertain box is missed: recall 1/2, precision 1 up to there.
    counted = EvalParams(ignore_flags=())
    assert ap(gt, results, "AR50_all", params=counted) == 0.5
    assert ap(gt, results, params=counted) == pytest.approx(HALF_RECALL_AP)


@pytest.mark.parametrize(
    ("side", "ranges_holding_it"),
    [
        (8, {"all", "tiny", "tiny1", "tiny2"}),  # area 64
        (12, {"all", "tiny", "tiny2", "tiny3"}),  # area 144
        (20, {"all", "tiny", "tiny3", "small"}),  # area 400
        (32, {"all", "small", "reasonable"}),  # area 1024
    ],
)
def test_boundary_areas_belong_to_both_ranges(side, ranges_holding_it):
    gt = dataset([(1, [50, 50, side, side], {})])
    metrics = evaluate(gt, [det(1, [50, 50, side, side], 0.9)], miss_rate=False)
    for label in ("all", "tiny", "tiny1", "tiny2", "tiny3", "small", "reasonable"):
        assert metrics[f"AP50_{label}"] == pytest.approx(1.0 if label in ranges_holding_it else -1), label


@pytest.mark.parametrize(("side", "expected"), [(8.0, 0.5), (7.99, 1.0)])
def test_unmatched_detection_on_the_area_boundary_counts(side, expected):
    gt = dataset([(1, [50, 50, 10, 10], {})])  # area 100: tiny2 [64, 144]
    results = [det(1, [500, 500, side, side], 0.9), det(1, [50, 50, 10, 10], 0.5)]
    # A false positive of area exactly 64 is in tiny2 (precision 1/2); one of area 63.84 is ignored there.
    assert ap(gt, results, "AP50_tiny2") == pytest.approx(expected)


@pytest.mark.parametrize(("fp_image", "expected"), [(1, 0.5), (3, 1.0)])
def test_equal_scores_are_ranked_in_image_id_order(fp_image, expected):
    gt = dataset([(2, [50, 50, 10, 10], {})], n_images=3)
    results = [det(2, [50, 50, 10, 10], 0.5), det(fp_image, [50, 50, 10, 10], 0.5)]
    # pycocotools concatenates images by id then sorts stably: a tied false positive on image 1 comes first.
    assert ap(gt, results) == pytest.approx(expected)


def test_equal_ious_go_to_the_later_gt():
    gt = dataset([(1, [0, 0, 10, 10], {}), (1, [10, 0, 10, 10], {})])
    # The first detection overlaps both GTs with IoU 1/3: the later GT takes it (`>=` in pycocotools),
    # leaving the first GT to the second detection: two true positives.
    results = [det(1, [5, 0, 10, 10], 0.9), det(1, [0, 0, 10, 10], 0.8)]
    assert ap(gt, results, "AP25_all") == pytest.approx(1.0)


def test_zero_area_detection_is_ignored_in_tinyperson_ranges_and_false_positive_from_area_zero():
    gt = dataset([(1, [50, 50, 10, 10], {})])
    results = [det(1, [50, 50, 0, 10], 0.9), det(1, [50, 50, 10, 10], 0.5)]
    assert ap(gt, results) == pytest.approx(1.0)
    assert ap(gt, results, params=EvalParams(area_ranges=(("all", 0, 1e10),))) == pytest.approx(0.5)


def test_detection_on_an_image_without_gt_is_a_false_positive():
    gt = dataset([(1, [50, 50, 10, 10], {})], n_images=2)
    assert ap(gt, [det(2, [50, 50, 10, 10], 0.9), det(1, [50, 50, 10, 10], 0.5)]) == pytest.approx(0.5)


def test_no_detections_at_all():
    gt = dataset([(1, [50, 50, 10, 10], {})])
    metrics = evaluate(gt, [])
    assert metrics["AP50_tiny"] == 0 and metrics["AR50_tiny"] == 0 and metrics["MR_tiny2"] == 1.0


def test_max_dets_keeps_the_best_scored_per_image():
    gt = dataset([(1, [50, 50, 10, 10], {})])
    results = [det(1, [500, 500, 10, 10], 0.9), det(1, [50, 50, 10, 10], 0.5)]
    assert ap(gt, results, "AR50_all", max_dets=1) == 0
    assert ap(gt, results, "AR50_all", max_dets=2) == 1


def test_miss_rate_hand_built():
    # 100 images, 4 GTs of 10x10 (size 10: in tiny2, tiny and all) on image 1.
    gt = dataset([(1, [100 * i, 100, 10, 10], {}) for i in range(1, 5)], n_images=100)
    hit = [det(1, [100 * i, 100, 10, 10], 0) for i in range(1, 4)]
    miss = [det(image, [900, 900, 10, 10], 0) for image in range(2, 6)]
    ranked = [hit[0], miss[0], hit[1], miss[1], miss[2], hit[2]]  # TP FP TP FP FP TP
    for score, result in zip(range(len(ranked), 0, -1), ranked, strict=True):
        result["score"] = score / 10
    # FPPI after each: 0 .01 .01 .02 .03 .03, recall .25 .25 .5 .5 .5 .75. At the 9 FPPI points
    # (.01, .0178, .0316, ...) the recall is .5, .5, then .75 seven times.
    expected = math.exp((2 * math.log(0.5) + 7 * math.log(0.25)) / 9)
    metrics = evaluate(gt, ranked)
    assert metrics["MR_tiny2"] == pytest.approx(expected, abs=1e-12)
    assert metrics["MR_tiny"] == metrics["MR_all"] == metrics["MR_tiny2"]
    assert metrics["MR_tiny1"] == metrics["MR_tiny3"] == metrics["MR_small"] == -1
    # Detections far outside a setup's sizes are dropped there: with 2x2 false positives (size 2 < 8 / 1.25)
    # tiny2 sees no false positive, recall .75 at every point.
    for result in miss:
        result["bbox"] = [900, 900, 2, 2]
    assert evaluate(gt, ranked)["MR_tiny2"] == pytest.approx(0.25)


def test_miss_rate_ignored_gt_is_matched_by_intersection_over_detection():
    gt = dataset([(1, [100, 100, 10, 10], {}), (1, [300, 300, 60, 60], {"ignore": 1})], n_images=100)
    results = [det(1, [310, 310, 10, 10], 0.9), det(1, [100, 100, 10, 10], 0.5)]
    # The first detection lies inside the ignore region (IoU 100/3600, intersection/detection area 1).
    assert evaluate(gt, results, miss_rate_params=MissRateParams())["MR_tiny2"] == pytest.approx(0.0)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: r.update(image_id=99), r"results\[0\]\.image_id = 99"),
        (lambda r: r.update(category_id=7), r"results\[0\]\.category_id = 7"),
        (lambda r: r.update(score=float("nan")), r"results\[0\]\.score is NaN"),
        (lambda r: r.update(bbox=[1, 1, -2, 3]), r"results\[0\]\.bbox .* negative width"),
        (lambda r: r.update(bbox=[1, 1, float("inf"), 3]), r"results\[0\]\.bbox .* non-finite"),
        (lambda r: r.update(bbox=[1, 1, 3]), r"results\[0\]\.bbox .* is not \[x, y, w, h\]"),
        (lambda r: r.pop("score"), r"results\[0\] has no 'score'"),
        (lambda r: r.update(score="high"), r"results\[0\]\.score = 'high' is not a number"),
    ],
)
def test_bad_results_raise_naming_the_entry(mutate, message):
    gt = dataset([(1, [50, 50, 10, 10], {})])
    bad = det(1, [50, 50, 10, 10], 0.5)
    mutate(bad)
    with pytest.raises(ValueError, match=message):
        evaluate(gt, [bad])


def test_bad_ground_truth_raises():
    gt = dataset([(1, [50, 50, 10, 10], {}), (1, [60, 60, 10, 10], {})])
    gt["annotations"][1]["id"] = 1
    with pytest.raises(ValueError, match="duplicate ids"):
        evaluate(gt, [])
    gt = dataset([(1, [50, 50, 10, 10], {})])
    gt["annotations"][0]["area"] = -1
    with pytest.raises(ValueError, match=r"annotations\[0\]\.area"):
        evaluate(gt, [])


def test_cli_prints_the_table(tmp_path, capsys):
    gt_path, results_path = tmp_path / "gt.json", tmp_path / "results.json"
    gt_path.write_text(json.dumps(dataset([(1, [50, 50, 10, 10], {})])))
    results_path.write_text(json.dumps([det(1, [50, 50, 10, 10], 0.9)]))
    assert main([str(gt_path), str(results_path), "--max-dets", "200"]) == 0
    out = capsys.readouterr().out
    assert "Average Precision  (AP) @[ IoU=0.50      | area=      tiny | maxDets= 200 ] = 1.0000" in out
    assert "Miss Rate" not in out
    assert main([str(gt_path), str(results_path), "--mr"]) == 0
    assert "Average Miss Rate  (MR)" in capsys.readouterr().out
    results_path.write_text(json.dumps([det(5, [50, 50, 10, 10], 0.9)]))
    assert main([str(gt_path), str(results_path)]) == 2
    assert "image_id = 5" in capsys.readouterr().err
