"""Tiled inference of one 1920x1080 image end to end: ours against the SAHI way, in the same run.

- Ours: ``detect_images`` sends the 12 tiles of the reference grid through the model as one batch and merges
  them with ``merge_tiles`` on the image's device ("during" with the model's settings: no NMS per tile,
  one NMS at 0.6 on the image, the best 1000).
- Baseline: the same model sees one tile at a time (as SAHI's sliced prediction does); each tile's
  detections are shifted to the image and clipped on the CPU in numpy, and SAHI's postprocess
  (``sahi.postprocess.combine.batched_nms``, the same IoU threshold, per class, its fastest backend; numpy
  in quick mode) merges them, then the best 1000 are kept.

The model is the default run's Adap FCOS (tinyfast/configs/fcos_synthetic.toml: ResNet-18, 64-channel FPN
P2-P6, two GroupNorm convs per tower) with random weights (seed 0), except that the classification prior is
0.5 with weights 5x the initial ones and the regression starts at 2 strides per side: every candidate passes
``score_thr``, scores spread over (0, 1) and neighbouring candidates overlap as a trained dense head's do,
so the merge gets its full load (the best 1000 locations per tile and level: 40,800 boxes). Both sides get
the same normalised image; decoding is not timed. Quick mode (``--benchmark-disable``, CI): a 960x540
image with 320x256 tiles (overlap 50, again 12 tiles), once.
"""

import importlib.util

import numpy as np
import pytest
import torch
import torchvision

from bench.bench_merge_tiles import fastest_sahi_backend
from bench.timing import DEVICES, best_time, quick_mode, synchronized
from tinyfast.engine.config import DEFAULT_CONFIG, load_config
from tinyfast.modeling.build import build_model, policy_for_model
from tinyfast.tiling import detect_images, tile_grid

FULL = {"image": (1920, 1080), "tile": (640, 512), "overlap": (100, 100), "rounds": 2, "baseline_runs": 2}
QUICK = {"image": (960, 540), "tile": (320, 256), "overlap": (50, 50), "rounds": 1, "baseline_runs": 1}
REGRESSION_START = 2.0  # strides from the point to each side of a candidate box


def default_model(device):
    config = load_config(DEFAULT_CONFIG)
    torch.manual_seed(0)
    model = build_model(config["model"]).to(device).eval()
    torch.nn.init.zeros_(model.head.cls_logits.bias)
    torch.nn.init.normal_(model.head.cls_logits.weight, std=0.05)
    torch.nn.init.constant_(model.head.bbox_pred.bias, REGRESSION_START)
    return model, policy_for_model("during", config["model"], nms_pre=1000)


def one_tile_at_a_time_with_sahi_merge(model, image, policy, crops, sahi_nms):
    """SAHI's way: the model on each tile alone, placement and merge in numpy on the CPU."""
    height, width = image.shape[-2:]
    rows = []
    for x1, y1, x2, y2 in crops:
        (found,) = model.detect_tiles(image[None, :, y1:y2, x1:x2], policy.tile_settings)
        boxes = found["boxes"].cpu().numpy() + np.array([x1, y1, x1, y1], dtype=np.float32)
        boxes = boxes.clip(0, [width, height, width, height]).astype(np.float32)
        scores, labels = found["scores"].cpu().numpy(), found["labels"].cpu().numpy()
        rows.append(np.concatenate([boxes, scores[:, None], labels[:, None].astype(np.float32)], axis=1))
    predictions = np.concatenate(rows)
    keep = sahi_nms(predictions, "IOU", policy.iou_threshold)[: policy.max_per_image]  # sorted by score
    return predictions[keep], predictions


@pytest.mark.skipif(importlib.util.find_spec("sahi") is None, reason="sahi is not installed")
@pytest.mark.parametrize("device", DEVICES)
def test_tiled_inference_end_to_end_vs_sahi_way(benchmark, summary_line, device):
    from sahi.postprocess import combine
    from sahi.postprocess.backends import set_postprocess_backend

    settings = QUICK if quick_mode(benchmark) else FULL
    width, height = settings["image"]
    crops = tile_grid(width, height, settings["tile"], settings["overlap"])
    model, policy = default_model(device)
    image = torch.randn(3, height, width, generator=torch.Generator().manual_seed(0)).to(device)
    tiling = dict(tile=settings["tile"], overlap=settings["overlap"], tile_batch_size=len(crops))
    ours = synchronized(lambda: detect_images(model.detect_tiles, [image], policy, **tiling)[0], device)
    baseline = lambda: one_tile_at_a_time_with_sahi_merge(model, image, policy, crops, combine.batched_nms)  # noqa: E731

    ours()  # warm-up outside both timings
    if quick_mode(benchmark):
        backend = "numpy"
        set_postprocess_backend(backend)
    else:
        with torch.no_grad():
            _, predictions = baseline()
        backend = fastest_sahi_backend(combine.batched_nms, predictions)
    (expected, predictions), baseline_s = best_time(baseline, settings["baseline_runs"])
    candidates = len(predictions)
    found = benchmark.pedantic(ours, rounds=settings["rounds"], warmup_rounds=0)
    ours_s = benchmark.stats.stats.min if benchmark.enabled else best_time(ours, 1)[1]

    assert len(crops) == 12 and candidates > 12 * 1000
    assert len(found["boxes"]) == len(expected) == policy.max_per_image
    # Batch 12 and batch 1 convolutions round differently (~1e-7 on the CPU; ~1e-3 on GPUs, whose
    # convolutions use TF32): the same boxes to that rounding, except where two scores that close trade
    # places at the max_per_image cut.
    overlap = torchvision.ops.box_iou(found["boxes"].cpu(), torch.from_numpy(expected[:, :4]))
    assert (overlap.max(dim=1).values > 0.99).float().mean() >= (1.0 if device == "cpu" else 0.99)
    atol = 1e-5 if device == "cpu" else 2e-3
    torch.testing.assert_close(found["scores"].cpu(), torch.from_numpy(expected[:, 4]), atol=atol, rtol=0)
    ratio = baseline_s / ours_s
    benchmark.extra_info.update(
        image=f"{width}x{height}", tiles=len(crops), candidates=candidates, backend=backend,
        baseline_s=baseline_s, ours_s=ours_s, ratio=ratio,
    )  # fmt: skip
    summary_line(
        f"tiled inference {device}, {width}x{height}, {len(crops)} tiles, {candidates} candidates: ours "
        f"(12 tiles batched, merge_tiles) {ours_s:.2f} s, one tile at a time + SAHI batched_nms ({backend}) "
        f"{baseline_s:.2f} s, ratio {ratio:.2f}x"
    )
