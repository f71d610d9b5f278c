"""Other detectors in tiled inference: the torchvision two-stage example of docs/tiling.md, run as written,
and the ultralytics YOLO adapter against a plain reference of its decoding, threshold, top-k and NMS."""

import json
import re
from pathlib import Path

import pytest
import torch
import torchvision
from torchvision.ops import batched_nms as torchvision_batched_nms
from torchvision.ops import box_convert

from tinyfast.tiling import (
    TileSettings,
    TorchvisionDetector,
    UltralyticsDetector,
    coco_results,
    detect_images,
    merge_policy,
)

TILING_DOC = Path(__file__).resolve().parents[1] / "docs" / "tiling.md"


def tiling_example() -> str:
    """The first Python block of docs/tiling.md (the README links there for tiled inference)."""
    return re.search(r"```python\n(.*?)```", TILING_DOC.read_text(), re.S).group(1)


def test_the_documented_two_stage_example_runs_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    images = [torch.rand(3, 90, 150)]  # one tile, seen as it is and mirrored
    namespace = {"images": images, "image_ids": [7]}
    exec(compile(tiling_example(), str(TILING_DOC), "exec"), namespace)
    results = json.loads((tmp_path / "results.json").read_text())
    assert namespace["detector"].label_offset == 1  # two-stage: background 0 subtracted
    assert results and {r["category_id"] for r in results} == {1}
    assert {r["image_id"] for r in results} == {7}
    for r in results:
        x, y, w, h = r["bbox"]
        assert 0 <= x and 0 <= y and x + w <= 150 + 1e-3 and y + h <= 90 + 1e-3


def test_two_stage_labels_that_count_the_background_are_a_clear_error():
    model = torchvision.models.detection.fasterrcnn_resnet50_fpn(
        weights=None, weights_backbone=None, num_classes=2, min_size=128, max_size=160
    )
    detector = TorchvisionDetector(model, label_offset=0)  # the background left in: labels start at 1
    torch.manual_seed(0)
    (found,) = detect_images(detector, [torch.rand(3, 128, 160)], "during")
    assert len(found["labels"]) and int(found["labels"].min()) == 1
    with pytest.raises(ValueError, match="image 3 has label 1, outside the 1 category ids"):
        coco_results([found], [3])
    assert (
        TorchvisionDetector(
            torchvision.models.detection.fcos_resnet50_fpn(weights=None, weights_backbone=None, num_classes=2)
        ).label_offset
        == 0
    )


ultralytics = pytest.importorskip("ultralytics", reason="ultralytics is optional (pip install ultralytics)")


@pytest.fixture(scope="module")
def yolo():
    torch.manual_seed(0)
    return ultralytics.YOLO("yolov8n.yaml")  # built from its yaml: random weights, nothing downloaded


def reference_detections(network, tiles, settings, iou):
    """The adapter's contract in plain PyTorch and torchvision: pad, scale, decode, threshold, top-k, NMS."""
    height, width = tiles.shape[-2:]
    padded = torch.nn.functional.pad(tiles / 255.0, (0, -width % 32, 0, -height % 32))
    network.eval()
    with torch.no_grad():
        raw = network(padded)[0]
    out = []
    for prediction in raw:
        boxes = box_convert(prediction[:4].T, "cxcywh", "xyxy")
        scores, labels = prediction[4:].max(dim=0)
        keep = scores > settings.score_threshold
        boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        top = scores.topk(min(settings.nms_pre, len(scores))).indices
        boxes, scores, labels = boxes[top], scores[top], labels[top]
        kept = torchvision_batched_nms(boxes, scores, labels, iou)[: settings.max_per_tile]
        out.append((boxes[kept], scores[kept], labels[kept]))
    return out


def test_yolo_adapter_honours_threshold_top_k_per_tile_nms_and_cap(yolo):
    tiles = (
        torch.rand(2, 3, 200, 300, generator=torch.Generator().manual_seed(1)) * 255
    )  # not multiples of 32
    detector = UltralyticsDetector(yolo)
    everything = detector(tiles, TileSettings(nms_pre=None, per_tile_nms=False, score_threshold=None))
    threshold = float(everything[0]["scores"].median())
    settings = TileSettings(nms_pre=300, per_tile_nms=True, max_per_tile=40, score_threshold=threshold)
    found = detector(tiles, settings)
    expected = reference_detections(detector.network, tiles, settings, iou=0.7)
    for ours, (boxes, scores, labels) in zip(found, expected, strict=True):
        assert 0 < len(ours["scores"]) <= 40 and (ours["scores"] > threshold).all()
        assert torch.equal(ours["scores"], scores) and torch.equal(ours["labels"], labels)
        assert torch.allclose(ours["boxes"], boxes, atol=1e-4)
        assert ours["labels"].dtype == torch.int64
    raw = detector(tiles, TileSettings(nms_pre=50, per_tile_nms=False, score_threshold=threshold))
    assert all(len(r["scores"]) == 50 for r in raw)  # no NMS in the tile: the best nms_pre candidates
    assert torch.equal(raw[0]["scores"], everything[0]["scores"][everything[0]["scores"] > threshold][:50])
    assert detector.network is yolo.model and UltralyticsDetector(yolo.model).network is yolo.model
    with pytest.raises(ValueError, match="ultralytics YOLO or DetectionModel"):
        UltralyticsDetector(torch.nn.Conv2d(3, 3, 1))


def test_yolo_adapter_in_tiled_inference_of_a_full_image(yolo):
    image = (torch.rand(3, 720, 1280, generator=torch.Generator().manual_seed(2)) * 255).round()
    policy = merge_policy("after", score_threshold=0.0)  # random weights: every score is small
    (found,) = detect_images(UltralyticsDetector(yolo), [image], policy, tile_batch_size=4)
    assert len(found["boxes"]) <= 6 * 200  # 6 tiles, the policy's cap of 200 per tile
    assert len(found["boxes"]) > 0
    assert (found["boxes"][:, 2] <= 1280).all() and (found["boxes"][:, 3] <= 720).all()
    assert float(found["boxes"][:, 2].max()) > 640  # boxes of the right tiles placed back in the image
