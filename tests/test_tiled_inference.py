"""Tiled inference end to end with a fake detector that finds painted persons in each tile."""

import json

import pytest
import torch
import torchvision
from painted_persons import PaintedPersonDetector, painted_image

from tinyfast.tiling import (
    MERGE_NMS_IOU,
    TileSettings,
    TorchvisionDetector,
    detect_images,
    detector_merge_policy,
    merge_policy,
    tile_grid,
    write_coco_results,
)

PERSONS = [
    (100, 100, 112, 120),  # inside tile (0, 0) only
    (620, 300, 650, 320),  # cut by the right side of the first tile column (20 of 30 px visible)
    (700, 495, 712, 519),  # cut by the bottom of the first tile row (17 of 24 px visible)
    (980, 680, 1000, 700),  # at the image corner
]


def assert_found_once_each(found, persons, tolerance=1.0):
    assert len(found["boxes"]) == len(persons), found["boxes"].tolist()
    expected = torch.tensor(persons, dtype=torch.float32)
    iou = torchvision.ops.box_iou(found["boxes"], expected)
    assert bool((iou.max(dim=0).values > 0.8).all())
    matched = expected[iou.argmax(dim=1)]
    assert float((found["boxes"] - matched).abs().max()) <= tolerance


@pytest.mark.parametrize("policy", ["during", "after"])
def test_each_person_is_detected_once_across_tiles(policy):
    detector = PaintedPersonDetector(jitter=0.5)
    (found,) = detect_images(detector, [painted_image(PERSONS)], policy)
    assert_found_once_each(found, PERSONS)


def test_flip_and_scale_augmentation_find_the_same_persons():
    detector = PaintedPersonDetector()
    (found,) = detect_images(detector, [painted_image(PERSONS)], "during", scales=(1.0, 2.0), flips=True)
    assert_found_once_each(found, PERSONS, tolerance=1.0)
    assert {shape[-2:] for shape, _ in detector.calls} == {(512, 640), (1024, 1280)}


def test_a_scale_with_two_factors_stretches_the_tiles_and_maps_back():
    detector = PaintedPersonDetector()
    (found,) = detect_images(detector, [painted_image(PERSONS)], "during", scales=((2.0, 1.5),))
    assert_found_once_each(found, PERSONS, tolerance=1.0)
    assert {shape[-2:] for shape, _ in detector.calls} == {(768, 1280)}


def test_a_barely_visible_truncated_part_is_dropped_with_border_handling():
    persons = [(630, 300, 650, 320)]  # 10 of 20 px in the first column: IoU 0.5 with the whole, not > 0.5
    image = painted_image(persons)
    (kept,) = detect_images(PaintedPersonDetector(), [image], "during")
    assert len(kept["boxes"]) == 2  # the reference keeps the truncated duplicate
    (found,) = detect_images(PaintedPersonDetector(), [image], merge_policy("during", truncated="drop"))
    assert_found_once_each(found, persons)


def test_tiles_of_several_images_share_forward_passes():
    detector = PaintedPersonDetector()
    images = [painted_image(PERSONS), painted_image(PERSONS[:1]), painted_image([])]
    found = detect_images(detector, images, "during", tile_batch_size=5)
    assert [len(f["boxes"]) for f in found] == [4, 1, 0]
    assert [shape[0] for shape, _ in detector.calls] == [5, 5, 2]  # 12 tiles, 5 at a time


def test_policies_pass_their_per_tile_settings():
    during, after = merge_policy("during"), merge_policy("after")
    assert during.tile_settings == TileSettings(nms_pre=1000, per_tile_nms=False)
    assert (during.max_per_image, during.class_agnostic) == (1000, False)
    assert after.tile_settings.max_per_tile == 200 and after.tile_settings.per_tile_nms
    assert (after.max_per_image, after.class_agnostic, after.iou_threshold) == (None, True, 0.5)
    two_stage = merge_policy("during", dense_head=False)
    assert two_stage.tile_settings.per_tile_nms and two_stage.max_per_image is None
    detector = PaintedPersonDetector()
    detect_images(detector, [painted_image(PERSONS)], "after")
    assert all(settings == after.tile_settings for _, settings in detector.calls)


def test_small_images_get_one_smaller_tile():
    image = torch.zeros(3, 1, 1)
    detector = PaintedPersonDetector()
    assert detect_images(detector, [image], "during")[0]["boxes"].shape == (0, 4)
    assert detector.calls[0][0] == (1, 3, 1, 1)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"overlap": (640, 100)}, "overlap"),
        ({"tile_batch_size": 0}, "tile_batch_size"),
        ({"scales": (0.0,)}, "scales"),
        ({"scales": ()}, "scales"),
        ({"scales": ((2.0, -1.0),)}, "scales"),
        ({"scales": ((2.0, 1.0, 3.0),)}, "scales"),
        ({"policy": "sometimes"}, "name must be"),
    ],
)
def test_bad_arguments_raise_value_error(options, message):
    with pytest.raises(ValueError, match=message):
        detect_images(PaintedPersonDetector(), [painted_image(PERSONS)], **options)


def test_coco_results_are_written_for_full_images(tmp_path):
    (found,) = detect_images(PaintedPersonDetector(), [painted_image(PERSONS)], "during")
    results = write_coco_results([found], [42], tmp_path / "results.json")
    assert json.loads((tmp_path / "results.json").read_text()) == results
    assert {r["image_id"] for r in results} == {42} and len(results) == 4
    assert results[0]["bbox"] == [100.0, 100.0, 12.0, 20.0] and results[0]["category_id"] == 1


def test_torchvision_detector_adapter_applies_the_settings():
    model = torchvision.models.detection.fcos_resnet50_fpn(
        weights=None, weights_backbone=None, num_classes=2, min_size=128, max_size=160
    )
    detector = TorchvisionDetector(model)
    settings = TileSettings(nms_pre=50, per_tile_nms=False, max_per_tile=7)
    outputs = detector(torch.rand(2, 3, 128, 160), settings)
    assert len(outputs) == 2 and all(len(o["boxes"]) <= 7 for o in outputs)
    assert (model.topk_candidates, model.nms_thresh, model.detections_per_img) == (50, 1.0, 7)
    detector(torch.rand(1, 3, 128, 160), TileSettings())
    assert model.nms_thresh == 0.6  # the model's own threshold is restored


def test_a_huge_image_is_cut_one_batch_of_tiles_at_a_time(monkeypatch):
    """Every tile view (here 30 tiles x 2 scales x 2 flips; an 8000x6000 image has 900) is cut only when its
    batch goes to the detector: memory holds one batch of tiles, not all of them."""
    import tinyfast.tiling.inference as inference

    cut, seen = [0], []
    view_pixels = inference._view_pixels

    def counting_view_pixels(image, view):
        cut[0] += 1
        return view_pixels(image, view)

    def detector(tiles, settings):
        seen.append((len(tiles), cut[0]))
        return [
            {
                "boxes": torch.zeros(0, 4),
                "scores": torch.zeros(0),
                "labels": torch.zeros(0, dtype=torch.int64),
            }
            for _ in tiles
        ]

    monkeypatch.setattr(inference, "_view_pixels", counting_view_pixels)
    image = torch.zeros(3, 2000, 3000, dtype=torch.uint8)
    (found,) = detect_images(detector, [image], "during", scales=(1.0, 0.5), flips=True, tile_batch_size=4)
    assert len(found["boxes"]) == 0
    total = sum(size for size, _ in seen)
    assert total == cut[0] == len(tile_grid(3000, 2000)) * 2 * 2 == 120
    assert all(size <= 4 for size, _ in seen)
    done = 0
    for size, cut_so_far in seen:  # when a batch reaches the detector, only it has been cut since the last
        done += size
        assert cut_so_far == done


def test_a_trained_detector_thresholds_in_its_tiles_and_after_merges_at_the_reference_iou():
    during = detector_merge_policy("during", dense_head=True, nms_pre=2000, nms_iou=0.6, score_threshold=0.05)
    assert during.tile_settings == TileSettings(nms_pre=2000, per_tile_nms=False, score_threshold=0.05)
    assert (during.score_threshold, during.iou_threshold, during.max_per_image) == (None, 0.6, 1000)
    after = detector_merge_policy(
        "after", dense_head=False, nms_pre=2000, nms_iou=0.6, score_threshold=0.05, truncated="drop"
    )
    assert after.tile_settings == TileSettings(
        nms_pre=2000, per_tile_nms=True, max_per_tile=200, score_threshold=0.05
    )
    assert (after.iou_threshold, after.class_agnostic, after.truncated) == (MERGE_NMS_IOU, True, "drop")
    assert merge_policy("during").truncated == "keep"
