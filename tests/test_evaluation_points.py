"""Point evaluation exact against a plain-Python transcription of the rule; hand-computed cases; bad input."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pytest

from tinyfast.data import generate_coarse_points, load_point_annotations, save_point_annotations
from tinyfast.data.convert import import_yolo
from tinyfast.evaluate import main
from tinyfast.evaluation import evaluate_points
from tinyfast.evaluation.coco_format import load_ground_truth
from tinyfast.evaluation.params import RECALL_THRESHOLDS, TINYPERSON_AREA_RANGES
from tinyfast.evaluation.points import load_point_results, point_match

TAUS = (0.5, 1.0, 2.0)
HALF_RECALL_AP = 51 / 101  # precision 1 up to recall 0.5, none after


# ---------------------------------------------------------------------------------------------------------
# The rule, transcribed with loops (no numpy): what evaluate_points must reproduce exactly.


def plain_distance_sq(point: tuple[float, float], box: list[float]) -> float:
    x, y, w, h = (float(v) for v in box)
    if w == 0 or h == 0:
        return math.inf
    dx = (point[0] - (x + w / 2)) / w
    dy = (point[1] - (y + h / 2)) / h
    return dx * dx + dy * dy


def plain_within(distance_sq: float, tau: float) -> bool:
    return math.isfinite(distance_sq) and distance_sq <= tau * tau


def plain_point(result: dict) -> tuple[float, float]:
    if "point" in result:
        return float(result["point"][0]), float(result["point"][1])
    x, y, w, h = (float(v) for v in result["bbox"])
    return x + w / 2, y + h / 2


def plain_is_ignored(ann: dict, flags: tuple[str, ...]) -> bool:
    return bool(ann.get("iscrowd", 0)) or any(ann.get(flag, 0) for flag in flags)


def plain_image_outcomes(dets: list[tuple[int, dict]], anns: list[dict], regular: list[bool], tau: float):
    """Outcome ('tp', 'ignored', 'fp') of each detection of one image, in score order."""
    taken = [False] * len(anns)
    outcome: list[str | None] = [None] * len(dets)
    points = [plain_point(result) for _, result in dets]
    start = 0
    while start < len(dets):
        stop = start
        while stop < len(dets) and dets[stop][1]["score"] == dets[start][1]["score"]:
            stop += 1
        while True:  # equal scores: the closest free (detection, GT) pair first
            best = None
            for d in range(start, stop):
                if outcome[d] is not None:
                    continue
                for g, ann in enumerate(anns):
                    if regular[g] and not taken[g]:
                        distance_sq = plain_distance_sq(points[d], ann["bbox"])
                        if plain_within(distance_sq, tau) and (best is None or (distance_sq, d, g) < best):
                            best = (distance_sq, d, g)
            if best is None:
                break
            outcome[best[1]] = "tp"
            taken[best[2]] = True
        start = stop
    for d in range(len(dets)):
        if outcome[d] is None:
            near_ignored = any(
                not regular[g] and plain_within(plain_distance_sq(points[d], ann["bbox"]), tau)
                for g, ann in enumerate(anns)
            )
            outcome[d] = "ignored" if near_ignored else "fp"
    return outcome


def plain_ap_ar(ordered: list[str], n_positives: int) -> tuple[float, float]:
    tp = fp = 0
    recalls, precisions = [], []
    for outcome in ordered:
        if outcome == "ignored":
            continue
        tp += outcome == "tp"
        fp += outcome == "fp"
        recalls.append(tp / n_positives)
        precisions.append(tp / (fp + tp + np.spacing(1)))
    for i in range(len(precisions) - 1, 0, -1):
        precisions[i - 1] = max(precisions[i - 1], precisions[i])
    total = 0.0
    for threshold in RECALL_THRESHOLDS:
        first = next((i for i, r in enumerate(recalls) if r >= threshold), None)
        total += precisions[first] if first is not None else 0.0
    return total / len(RECALL_THRESHOLDS), (recalls[-1] if recalls else 0.0)


def plain_evaluate(
    gt, results, taus=TAUS, max_dets=200, ranges=TINYPERSON_AREA_RANGES, flags=("ignore", "uncertain")
):
    """(metrics, outcomes): outcomes[(category, range label, tau)][result index] for the kept detections."""
    image_ids = sorted(image["id"] for image in gt["images"])
    per_metric: dict[str, list[float]] = {}
    outcomes = {}
    for category in sorted(c["id"] for c in gt["categories"]):
        for label, lo, hi in ranges:
            for tau in taus:
                records, n_positives, by_result = [], 0, {}
                for image_position, image in enumerate(image_ids):
                    anns = [
                        a
                        for a in gt["annotations"]
                        if a["category_id"] == category and a["image_id"] == image
                    ]
                    regular = [
                        not plain_is_ignored(a, flags) and lo <= a["bbox"][2] * a["bbox"][3] < hi
                        for a in anns
                    ]
                    n_positives += sum(regular)
                    dets = [
                        (i, r)
                        for i, r in enumerate(results)
                        if r["category_id"] == category and r["image_id"] == image
                    ]
                    dets = sorted(dets, key=lambda entry: -entry[1]["score"])[:max_dets]
                    for rank, ((index, result), outcome) in enumerate(
                        zip(dets, plain_image_outcomes(dets, anns, regular, tau), strict=True)
                    ):
                        records.append((-result["score"], image_position, rank, outcome))
                        by_result[index] = outcome
                outcomes[(category, label, tau)] = by_result
                if n_positives:
                    records.sort(key=lambda record: record[:3])
                    ap, ar = plain_ap_ar([record[3] for record in records], n_positives)
                    per_metric.setdefault(f"AP{tau}_{label}", []).append(ap)
                    per_metric.setdefault(f"AR{tau}_{label}", []).append(ar)
    metrics = {}
    for tau in taus:
        for label, _, _ in ranges:
            for kind in ("AP", "AR"):
                values = per_metric.get(f"{kind}{tau}_{label}", [])
                metrics[f"{kind}{tau}_{label}"] = sum(values) / len(values) if values else -1.0
    return metrics, outcomes


def implementation_outcomes(gt, results, taus=TAUS, max_dets=200, ranges=TINYPERSON_AREA_RANGES):
    ground_truth = load_ground_truth(gt, ("ignore", "uncertain"))
    out = point_match(ground_truth, load_point_results(results, ground_truth), taus, max_dets, ranges)
    outcomes = {}
    for k, category in enumerate(ground_truth.category_ids):
        for a, (label, _, _) in enumerate(ranges):
            for t, tau in enumerate(taus):
                codes = np.where(out.matched[a, t], "tp", np.where(out.ignored[a, t], "ignored", "fp"))
                keep = out.category == k
                outcomes[(category, label, tau)] = dict(
                    zip(out.result_index[keep].tolist(), codes[keep].tolist(), strict=True)
                )
    return outcomes


def assert_matches_plain(gt, results, taus=TAUS, max_dets=200, ranges=TINYPERSON_AREA_RANGES):
    expected_metrics, expected_outcomes = plain_evaluate(gt, results, taus, max_dets, ranges)
    assert implementation_outcomes(gt, results, taus, max_dets, ranges) == expected_outcomes
    metrics = evaluate_points(gt, results, taus, max_dets, area_ranges=ranges)
    assert metrics.keys() == expected_metrics.keys()
    for key, value in expected_metrics.items():
        assert metrics[key] == pytest.approx(value, abs=1e-12), key
    return metrics


# ---------------------------------------------------------------------------------------------------------
# Builders.


def dataset(gts: list[tuple], n_images: int = 1, n_categories: int = 1) -> dict:
    """gts: (image_id, [x, y, w, h], extra fields); category 1 unless extra says otherwise."""
    annotations = [
        {"id": i + 1, "image_id": image, "category_id": 1, "bbox": box, "area": box[2] * box[3], **extra}
        for i, (image, box, extra) in enumerate(gts)
    ]
    images = [{"id": i, "width": 640, "height": 512, "file_name": f"{i}.jpg"} for i in range(1, n_images + 1)]
    categories = [{"id": c, "name": f"c{c}"} for c in range(1, n_categories + 1)]
    return {"images": images, "annotations": annotations, "categories": categories}


def pt(image: int, x: float, y: float, score: float, category: int = 1) -> dict:
    return {"image_id": image, "category_id": category, "point": [x, y], "score": score}


def random_case(rng: random.Random) -> tuple[dict, list[dict], int]:
    n_images, n_categories = rng.randint(1, 3), rng.randint(1, 2)
    sides = [0, 1, 2, 4, 6, 8, 12, 16, 20, 25, 32, 40]
    gts = []
    for _ in range(rng.randint(0, 12)):
        image = rng.randint(1, n_images)
        box = [
            float(rng.randint(0, 60)),
            float(rng.randint(0, 60)),
            float(rng.choice(sides)),
            float(rng.choice(sides)),
        ]
        extra = {"category_id": rng.randint(1, n_categories)}
        flag = rng.random()
        if flag < 0.1:
            extra["ignore"] = 1
        elif flag < 0.15:
            extra["uncertain"] = True
        elif flag < 0.2:
            extra["iscrowd"] = 1
        gts.append((image, box, extra))
    gt = dataset(gts, n_images, n_categories)
    results = []
    for _ in range(rng.randint(0, 16)):
        image, category = rng.randint(1, n_images), rng.randint(1, n_categories)
        score = rng.choice([0.9, 0.8, 0.8, 0.5, 0.3, 0.3, 0.1])
        if gts and rng.random() < 0.8:
            x, y, w, h = rng.choice(gts)[1]
            # Offsets in quarters of the box: many points land exactly on a tau boundary.
            px = x + w / 2 + w * rng.randint(-9, 9) / 4
            py = y + h / 2 + h * rng.randint(-9, 9) / 4
        else:
            px, py = rng.uniform(0, 80), rng.uniform(0, 80)
        if rng.random() < 0.2:
            size = float(rng.choice([0, 2, 4]))
            results.append(
                {
                    "image_id": image,
                    "category_id": category,
                    "bbox": [px - size / 2, py - size / 2, size, size],
                    "score": score,
                }
            )
        else:
            results.append(pt(image, px, py, score, category))
    return gt, results, rng.choice([1, 2, 3, 200])


@pytest.mark.parametrize("seed", range(150))
def test_random_sets_match_plain_rule(seed):
    gt, results, max_dets = random_case(random.Random(seed))
    assert_matches_plain(gt, results, max_dets=max_dets)


def test_random_sets_match_plain_rule_with_custom_ranges():
    ranges = (("any", 0.0, math.inf), ("mid", 16.0, 400.0))
    for seed in range(30):
        gt, results, max_dets = random_case(random.Random(1000 + seed))
        assert_matches_plain(gt, results, taus=(0.25, 1.5), max_dets=max_dets, ranges=ranges)


# ---------------------------------------------------------------------------------------------------------
# Hand-computed cases.


def hand_case():
    gt = dataset(
        [
            (1, [10, 10, 4, 4], {}),  # A: area 16 (tiny1), centre (12, 12)
            (1, [100, 100, 15, 15], {}),  # B: area 225 (tiny3), centre (107.5, 107.5)
        ]
    )
    results = [
        pt(1, 13, 12, 0.9),  # to A: 0.25
        pt(1, 107.5 + 22.5, 107.5, 0.8),  # to B: 1.5
        pt(1, 18, 12, 0.7),  # to A: 1.5 (A is taken first by the 0.9 point)
        pt(1, 400, 400, 0.6),  # far from everything
    ]
    return gt, results


def test_hand_computed_all_and_tiny():
    metrics = evaluate_points(*hand_case())
    for label in ("all", "tiny"):
        # tau 0.5 and 1: TP, FP, FP, FP with 2 GTs.
        assert metrics[f"AP0.5_{label}"] == pytest.approx(HALF_RECALL_AP)
        assert metrics[f"AR0.5_{label}"] == 0.5
        assert metrics[f"AP1.0_{label}"] == pytest.approx(HALF_RECALL_AP)
        assert metrics[f"AR1.0_{label}"] == 0.5
        # tau 2: TP, TP, FP, FP.
        assert metrics[f"AP2.0_{label}"] == pytest.approx(1.0)
        assert metrics[f"AR2.0_{label}"] == 1.0


def test_hand_computed_per_size_range():
    metrics = evaluate_points(*hand_case())
    # tiny1: only A counts; B (out of range) absorbs the 0.8 point at tau 2: TP, FP, FP -> AP 1.
    assert metrics["AP2.0_tiny1"] == pytest.approx(1.0) and metrics["AR2.0_tiny1"] == 1.0
    assert metrics["AP0.5_tiny1"] == pytest.approx(1.0) and metrics["AR0.5_tiny1"] == 1.0
    # tiny3: only B counts; at tau 1 the 0.9 point is absorbed by A (ignored), the others are FPs.
    assert metrics["AP1.0_tiny3"] == 0.0 and metrics["AR1.0_tiny3"] == 0.0
    # at tau 2 the 0.9 and 0.7 points are absorbed by A, the 0.8 one is a TP: ignored, TP, ignored, FP.
    assert metrics["AP2.0_tiny3"] == pytest.approx(1.0) and metrics["AR2.0_tiny3"] == 1.0
    for label in ("tiny2", "small", "reasonable"):
        assert metrics[f"AP1.0_{label}"] == -1 and metrics[f"AR1.0_{label}"] == -1
    assert_matches_plain(*hand_case())


def test_one_point_and_keys():
    gt = dataset([(1, [10, 10, 8, 8], {})])
    metrics = evaluate_points(gt, [pt(1, 14, 14, 0.5)])
    assert metrics["AP1.0_tiny"] == pytest.approx(1.0) and metrics["AR0.5_tiny2"] == 1.0
    assert metrics["AR0.5_tiny1"] == -1  # area 64: ranges are [lo, hi), so 8x8 is tiny2, not tiny1
    assert set(metrics) == {
        f"{kind}{tau}_{label}"
        for kind in ("AP", "AR")
        for tau in TAUS
        for label, _, _ in TINYPERSON_AREA_RANGES
    }
    assert "AP0.25_all" in evaluate_points(gt, [], match_thresholds=(0.25,))


def test_points_exactly_on_the_boundary_match():
    gt = dataset([(1, [0, 0, 8, 8], {})])  # centre (4, 4)
    on_half = [pt(1, 8, 4, 0.5)]  # (4 / 8) = 0.5 exactly
    assert evaluate_points(gt, on_half)["AR0.5_all"] == 1.0
    just_out = [pt(1, 8 + 1e-9, 4, 0.5)]
    metrics = evaluate_points(gt, just_out)
    assert metrics["AR0.5_all"] == 0.0 and metrics["AR1.0_all"] == 1.0
    on_largest = [pt(1, 4, 4 - 16, 0.5)]  # 2.0 exactly, the largest tau: a candidate pair all the same
    metrics = evaluate_points(gt, on_largest)
    assert metrics["AR1.0_all"] == 0.0 and metrics["AR2.0_all"] == 1.0
    assert evaluate_points(gt, [pt(1, 4, 4 - 16 - 1e-9, 0.5)])["AR2.0_all"] == 0.0
    diagonal = [pt(1, 4 + 8 * 0.6, 4 + 8 * 0.8, 0.5)]  # normalised (0.6, 0.8): distance 1 up to rounding
    assert_matches_plain(gt, diagonal)


def test_identical_points_give_one_tp_and_one_fp():
    gt = dataset([(1, [10, 10, 8, 8], {})])
    metrics = assert_matches_plain(gt, [pt(1, 14, 14, 0.9), pt(1, 14, 14, 0.8)])
    assert metrics["AR1.0_all"] == 1.0 and metrics["AP1.0_all"] == pytest.approx(1.0)
    two_gts = dataset([(1, [10, 10, 8, 8], {}), (1, [10, 10, 8, 8], {})])  # identical GTs too
    assert assert_matches_plain(two_gts, [pt(1, 14, 14, 0.9), pt(1, 14, 14, 0.9)])["AR1.0_all"] == 1.0


def test_equal_scores_match_the_closest_pair_first_whatever_the_list_order():
    gt = dataset([(1, [-5, -5, 10, 10], {}), (1, [5, -5, 10, 10], {})])  # centres (0, 0) and (10, 0)
    near_both, near_first = pt(1, 4, 0, 0.7), pt(1, -3, 0, 0.7)  # 0.4/0.6 and 0.3/1.3 from the centres
    for results in ([near_both, near_first], [near_first, near_both]):
        assert assert_matches_plain(gt, results)["AR1.0_all"] == 1.0
    # With distinct scores the first point takes the first GT and the second one finds nothing free.
    assert assert_matches_plain(gt, [near_both, {**near_first, "score": 0.6}])["AR1.0_all"] == 0.5


def test_nearest_free_gt_wins_and_ties_go_to_the_first_gt():
    gt = dataset([(1, [0, 0, 10, 10], {}), (1, [10, 0, 10, 10], {})])  # centres (5, 5), (15, 5)
    results = [pt(1, 10, 5, 0.9), pt(1, 4, 5, 0.8)]  # the first is 0.5 from both centres
    outcomes = implementation_outcomes(gt, results)
    # The tie goes to the first GT; the second point is then 1.1 from the only free one.
    assert outcomes[(1, "all", 1.0)] == {0: "tp", 1: "fp"}
    assert outcomes[(1, "all", 2.0)] == {0: "tp", 1: "tp"}
    assert_matches_plain(gt, results)


def test_points_near_ignored_gts_only_are_ignored():
    gt = dataset(
        [
            (1, [10, 10, 8, 8], {}),
            (1, [100, 100, 20, 20], {"ignore": 1}),
            (1, [200, 200, 8, 8], {"uncertain": 1}),
        ]
    )
    results = [
        pt(1, 110, 110, 0.99),  # in the ignore region
        pt(1, 112, 108, 0.98),  # the same region absorbs a second one
        pt(1, 204, 204, 0.97),  # uncertain counts as ignore
        pt(1, 14, 14, 0.9),  # the TP
        pt(1, 14, 15, 0.85),  # a duplicate: A is taken, no ignored GT near it -> FP
    ]
    metrics = assert_matches_plain(gt, results)
    assert metrics["AP1.0_all"] == pytest.approx(1.0) and metrics["AR1.0_all"] == 1.0
    # A duplicate next to a taken regular GT and inside an ignored region is ignored, not a FP.
    overlapping = dataset([(1, [10, 10, 8, 8], {}), (1, [0, 0, 40, 40], {"iscrowd": 1})])
    outcomes = implementation_outcomes(overlapping, [pt(1, 14, 14, 0.9), pt(1, 14, 14, 0.8)])
    assert outcomes[(1, "all", 1.0)] == {0: "tp", 1: "ignored"}


def test_zero_size_gt_matches_nothing():
    gt = dataset([(1, [10, 10, 0, 8], {}), (1, [50, 50, 8, 0], {})])
    results = [pt(1, 10, 14, 0.9), pt(1, 54, 50, 0.8)]  # exactly at the centres
    metrics = assert_matches_plain(gt, results)
    assert metrics["AP1.0_all"] == -1  # area 0: outside every TinyPerson range (they start at 1)
    any_size = (("any", 0.0, math.inf),)
    metrics = assert_matches_plain(gt, results, ranges=any_size)
    assert metrics["AR1.0_any"] == 0.0 and metrics["AP1.0_any"] == 0.0
    outcomes = implementation_outcomes(gt, results)
    assert outcomes[(1, "all", 2.0)] == {0: "fp", 1: "fp"}  # not absorbed either


def test_huge_values_do_not_overflow_into_matches():
    gt = dataset([(1, [0, 0, 1e-300, 1e-300], {"iscrowd": 1}), (1, [10, 10, 8, 8], {})])
    results = [pt(1, 1e300, -1e300, 0.9), pt(1, 1.0, 1.0, 0.8), pt(1, 14, 14, 0.7)]
    metrics = assert_matches_plain(gt, results, taus=(0.5, 1.0, 1e200))
    assert metrics["AR1e+200_all"] == 1.0
    assert implementation_outcomes(gt, results, taus=(1e200,))[(1, "all", 1e200)] == {
        0: "fp",
        1: "tp",
        2: "fp",
    }


def test_max_dets_cut_keeps_the_best_per_image_and_category():
    gt = dataset([(1, [10, 10, 8, 8], {}), (1, [40, 40, 8, 8], {}), (2, [10, 10, 8, 8], {})], n_images=2)
    results = [pt(1, 200, 200, 0.9), pt(1, 14, 14, 0.8), pt(1, 44, 44, 0.7), pt(2, 14, 14, 0.6)]
    assert evaluate_points(gt, results, max_dets=2)["AR1.0_all"] == pytest.approx(2 / 3)
    assert evaluate_points(gt, results, max_dets=3)["AR1.0_all"] == 1.0
    tied = [pt(1, 200, 200, 0.5), pt(1, 14, 14, 0.5)]  # equal scores: the list order decides the cut
    assert evaluate_points(gt, tied, max_dets=1)["AR1.0_all"] == 0.0
    assert evaluate_points(gt, tied[::-1], max_dets=1)["AR1.0_all"] == pytest.approx(1 / 3)
    assert_matches_plain(gt, results, max_dets=2)


def test_empty_ground_truth_and_empty_results():
    no_gt = dataset([])
    metrics = evaluate_points(no_gt, [pt(1, 5, 5, 0.5)])
    assert set(metrics.values()) == {-1.0}
    gt = dataset([(1, [10, 10, 8, 8], {})])
    metrics = evaluate_points(gt, [])
    assert metrics["AP1.0_all"] == 0.0 and metrics["AR1.0_all"] == 0.0 and metrics["AP1.0_small"] == -1
    assert_matches_plain(gt, [])


def test_categories_are_averaged_over_those_with_gts():
    gt = dataset([(1, [10, 10, 8, 8], {}), (1, [40, 40, 8, 8], {"category_id": 2})], n_categories=3)
    metrics = assert_matches_plain(gt, [pt(1, 14, 14, 0.9, category=1), pt(1, 14, 14, 0.9, category=2)])
    assert metrics["AR1.0_all"] == 0.5 and metrics["AP1.0_all"] == pytest.approx(0.5)  # (1 + 0) / 2


def test_bbox_centre_is_used_without_a_point():
    gt = dataset([(1, [10, 10, 8, 8], {}), (1, [40, 40, 20, 20], {})])
    boxes = [
        {"image_id": 1, "category_id": 1, "bbox": [11, 12, 8, 8], "score": 0.9},  # centre (15, 16)
        {"image_id": 1, "category_id": 1, "bbox": [30, 30, 4, 2], "score": 0.8},  # centre (32, 31)
    ]
    points = [pt(1, 15, 16, 0.9), pt(1, 32, 31, 0.8)]
    assert evaluate_points(gt, boxes) == evaluate_points(gt, points)
    both = [{**boxes[0], "point": [100, 100]}]  # `point` wins over `bbox`
    assert evaluate_points(gt, both)["AR1.0_all"] == 0.0


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"point": [float("nan"), 1.0]}, r"results\[1\]\.point .* non-finite"),
        ({"point": [1.0, float("inf")]}, r"results\[1\]\.point .* non-finite"),
        ({"point": [1.0]}, r"results\[1\]\.point .* is not \[x, y\]"),
        ({"point": "12"}, r"results\[1\]\.point .* is not \[x, y\]"),
        ({"point": None, "bbox": [0, 0, 1, 1]}, r"results\[1\]\.point"),
        ({"point": [1, 2], "score": float("nan")}, r"results\[1\]\.score is NaN"),
        ({"bbox": [0, 0, float("inf"), 1]}, r"results\[1\]\.bbox .* non-finite"),
        ({"bbox": [0, 0, -1, 1]}, r"results\[1\]\.bbox .* negative"),
        ({}, r"results\[1\] has neither 'point' nor 'bbox'"),
        ({"point": [1, 2], "image_id": 7}, r"results\[1\]\.image_id = 7 is not an id"),
        ({"point": [1, 2], "category_id": 3}, r"results\[1\]\.category_id = 3 is not an id"),
    ],
)
def test_bad_results_are_rejected_naming_the_entry(entry, message):
    gt = dataset([(1, [10, 10, 8, 8], {})])
    bad = {"image_id": 1, "category_id": 1, "score": 0.5, **entry}
    with pytest.raises(ValueError, match=message):
        evaluate_points(gt, [pt(1, 14, 14, 0.9), bad])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"match_thresholds": ()}, "match_thresholds"),
        ({"match_thresholds": (0.0,)}, "match_thresholds"),
        ({"match_thresholds": (float("nan"),)}, "match_thresholds"),
        ({"max_dets": 0}, "max_dets"),
        ({"max_dets": 2.5}, "max_dets"),
        ({"max_dets": "3"}, "max_dets"),
        ({"area_ranges": ()}, "area_ranges"),
        ({"area_ranges": (("all", 10.0, 1.0),)}, "area_ranges"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        evaluate_points(dataset([(1, [10, 10, 8, 8], {})]), [], **kwargs)


def test_a_dense_image_matches_plain_rule():
    rng = random.Random(7)
    gts = [
        (1, [rng.uniform(0, 200), rng.uniform(0, 200), rng.uniform(2, 12), rng.uniform(2, 12)], {})
        for _ in range(120)
    ]
    gt = dataset(gts)
    results = []
    for _, (x, y, w, h), _ in gts:
        for _ in range(2):
            results.append(
                pt(1, x + w / 2 + rng.gauss(0, w / 2), y + h / 2 + rng.gauss(0, h / 2), rng.random())
            )
    assert_matches_plain(gt, results, max_dets=200)


def test_cli_points(tmp_path, capsys):
    gt_path, results_path = tmp_path / "gt.json", tmp_path / "results.json"
    gt_path.write_text(json.dumps(hand_case()[0]))
    results_path.write_text(json.dumps(hand_case()[1]))
    assert main([str(gt_path), str(results_path), "--points", "--match-thresholds", "0.5", "2"]) == 0
    out = capsys.readouterr().out
    assert "dis=2.0" in out and "dis=1.0" not in out
    assert f"area=       all | maxDets= 200 ] = {HALF_RECALL_AP:0.4f}/0.5000" in out
    results_path.write_text(json.dumps([pt(1, float("nan"), 1, 0.5)]))
    assert main([str(gt_path), str(results_path), "--points"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "results[0].point" in err and len(err.splitlines()) == 1


RPI_VALID = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyperson-rpi640" / "valid"


@pytest.mark.skipif(not RPI_VALID.is_dir(), reason="../shared/data/tinyperson-rpi640 not present")
def test_real_images_coarse_points_and_their_evaluation(tmp_path):
    gt, _ = import_yolo(RPI_VALID, ["person"])
    path = tmp_path / "valid_coarse.json"
    save_point_annotations(generate_coarse_points(gt, seed=0), path)
    loaded = load_point_annotations(path)
    assert sum(len(p) for p in loaded.points.values()) == len(gt["annotations"]) == 10_805
    rng = np.random.default_rng(0)
    coarse = [
        {"image_id": a["image_id"], "category_id": 1, "point": a["point"], "score": float(rng.random())}
        for a in json.loads(path.read_text())["annotations"]
    ]
    centres = [{**r, "point": None} for r in coarse]
    for result, ann in zip(centres, gt["annotations"], strict=True):
        x, y, w, h = ann["bbox"]
        result["point"] = [x + w / 2, y + h / 2]
    # Up to 554 persons in an image: keep them all.
    exact = evaluate_points(gt, centres, max_dets=1000)
    for tau in ("0.5", "1.0", "2.0"):
        assert exact[f"AP{tau}_all"] == pytest.approx(1.0)
        # Every GT is found (its own centre is 0 away), but in a size range the centre of an out-of-range
        # GT takes an in-range neighbour within tau (regular GTs come first) and leaves that one's own
        # centre a false positive: AP is a little below 1 there.
        for label in ("all", "tiny", "tiny1", "tiny2", "tiny3", "small"):
            assert exact[f"AR{tau}_{label}"] == 1.0 and exact[f"AP{tau}_{label}"] > 0.9
    metrics = evaluate_points(gt, coarse, max_dets=1000)
    # A coarse point lies within 0.5 box per axis of its centre (at most 0.71 away): at tau 1 almost
    # every person is found (crowds let a point take a neighbour); at tau 0.5 about those whose coarse point
    # is within 0.5 of their own centre (one in twenty is not).
    assert 0.97 < metrics["AR1.0_all"] <= metrics["AR2.0_all"] + 0.01
    within_half = np.mean(
        [
            math.hypot((p[0] - x - w / 2) / w, (p[1] - y - h / 2) / h) <= 0.5
            for p, (x, y, w, h) in zip(
                [r["point"] for r in coarse], [a["bbox"] for a in gt["annotations"]], strict=True
            )
        ]
    )
    assert 0.9 < within_half < 0.99 and abs(metrics["AR0.5_all"] - within_half) < 0.01
    # The dense images, exactly as the plain-Python rule (their 60 best points, to keep it short).
    counts = np.bincount([a["image_id"] for a in gt["annotations"]])
    dense = set(np.argsort(counts)[-2:].tolist())
    subset = {
        **gt,
        "images": [i for i in gt["images"] if i["id"] in dense],
        "annotations": [a for a in gt["annotations"] if a["image_id"] in dense],
    }
    assert_matches_plain(subset, [r for r in coarse if r["image_id"] in dense], max_dets=60)
