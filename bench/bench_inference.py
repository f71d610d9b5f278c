"""Full images per second of tiled inference, against the bare network on the same tiles and against SAHI's
way with the same model, in the same run, on the CPU (float32 and bf16) and on a GPU (bf16).

- Ours: ``detect_images`` on full 1920x1080 images (normalised tensors on the device, 12 tiles each on the
  reference grid, one batch of 12 tiles per image; "during" with the model's settings: the best 1000
  candidates per tile and level, no NMS per tile, one NMS on the image), the model prepared as ``tinyfast
  test`` prepares it (``prepare_for_inference``: BatchNorm folded, channels last, the precision of the row).
- Bare forward: the same prepared network (backbone and head under ``run_network``, in the same precision)
  on the same tiles, already cut, stacked and on the device: what a model costs before any
  post-processing. Its ratio is the bare time over ours (at most 1 by construction; the target is an
  overhead of at most 1.25x, a ratio of at least 0.8).
- SAHI's way (``bench/bench_end_to_end.py``, the one implementation): the same prepared model on one tile at
  a time, the detections placed and merged in numpy on the CPU with SAHI's ``batched_nms`` (its fastest
  backend here; numpy in quick mode).

The model is the default run's Adap FCOS with the weights of ``bench_end_to_end.default_model`` (every
candidate passes the threshold, neighbouring candidates overlap: the post-processing gets its full load).
With ``--benchmark-disable`` (CI) or ``TINYFAST_BENCH_QUICK=1`` one round runs on one 960x540 image with
320x256 tiles (again 12 tiles).
"""

import importlib.util

import pytest
import torch

from bench.bench_end_to_end import default_model, one_tile_at_a_time_with_sahi_merge
from bench.bench_merge_tiles import fastest_sahi_backend
from bench.timing import DEVICES, best_time, needs_native_bf16, quick_mode, synchronized
from tinyfast.modeling.inference import prepare_for_inference, run_network
from tinyfast.tiling import detect_images, tile_grid

# SAHI's way merges ~12,000 candidates an image in numpy: its comparison sees fewer images.
FULL = {"image": (1920, 1080), "tile": (640, 512), "overlap": (100, 100), "images": 2, "sahi_images": 2,
        "rounds": 3}  # fmt: skip
GPU = {**FULL, "images": 8, "rounds": 5}
QUICK = {"image": (960, 540), "tile": (320, 256), "overlap": (50, 50), "images": 1, "sahi_images": 1,
         "rounds": 1}  # fmt: skip
ROWS = [  # (device, precision): the CPU at float32 and bf16, a GPU at bf16
    pytest.param(DEVICES[0], "fp32", id="cpu-fp32"),
    pytest.param(DEVICES[0], "bf16", id="cpu-bf16"),
    pytest.param(*DEVICES[1].values, "bf16", marks=DEVICES[1].marks, id="cuda-bf16"),
]


def workload(benchmark, device, precision):
    """The settings, the prepared model and its policy, the images and the crops of the reference grid."""
    if precision == "bf16":
        needs_native_bf16(device)
    settings = QUICK if quick_mode(benchmark) else GPU if device == "cuda" else FULL
    width, height = settings["image"]
    model, policy = default_model(device)
    prepared = prepare_for_inference(model, precision, device)
    generator = torch.Generator().manual_seed(0)
    images = [
        torch.randn(3, height, width, generator=generator).to(device) for _ in range(settings["images"])
    ]
    crops = tile_grid(width, height, settings["tile"], settings["overlap"])
    assert len(crops) == 12
    return settings, prepared, policy, images, crops


def ours_on(prepared, policy, images, settings, crops, device):
    tiling = dict(tile=settings["tile"], overlap=settings["overlap"], tile_batch_size=len(crops))
    return synchronized(lambda: detect_images(prepared.detect_tiles, images, policy, **tiling), device)


def record(benchmark, summary_line, name, settings, count, device, precision, baseline_s, ours_s, **details):
    ratio = baseline_s / ours_s
    width, height = settings["image"]
    benchmark.extra_info.update(
        device=device, precision=precision, images=f"{count} x {width}x{height}", tiles_per_image=12,
        images_per_s=round(count / ours_s, 2), baseline_s=baseline_s, ours_s=ours_s, ratio=ratio, **details,
    )  # fmt: skip
    summary_line(
        f"{name} {device} {precision}, {count} images {width}x{height}: ours {count / ours_s:.2f} images/s "
        f"({ours_s:.3f} s), baseline {baseline_s:.3f} s, ratio {ratio:.2f}x"
        + "".join(f", {key} {value}" for key, value in details.items())
    )


@pytest.mark.parametrize("device, precision", ROWS)
def test_full_images_vs_the_bare_forward_on_their_tiles(benchmark, summary_line, device, precision):
    settings, prepared, policy, images, crops = workload(benchmark, device, precision)
    tiles = [torch.stack([image[:, y1:y2, x1:x2] for x1, y1, x2, y2 in crops]) for image in images]
    network = lambda batch: prepared.head(prepared.backbone(batch))  # noqa: E731
    bare = synchronized(
        lambda: [run_network(prepared.inference_dtype, network, batch) for batch in tiles], device
    )
    ours = ours_on(prepared, policy, images, settings, crops, device)

    with torch.no_grad():
        bare(), ours()  # warm-up outside both timings
        _, baseline_s = best_time(bare, settings["rounds"])
        found = benchmark.pedantic(ours, rounds=settings["rounds"], warmup_rounds=0)
        ours_s = benchmark.stats.stats.min if benchmark.enabled else best_time(ours, 1)[1]

    assert len(found) == len(images) and all(len(f["scores"]) == policy.max_per_image for f in found)
    overhead = ours_s / baseline_s
    record(benchmark, summary_line, "full images vs bare forward", settings, len(images), device, precision,
           baseline_s, ours_s, overhead=f"{overhead:.2f}x (target <= 1.25x)")  # fmt: skip


@pytest.mark.skipif(importlib.util.find_spec("sahi") is None, reason="sahi is not installed")
@pytest.mark.parametrize("device, precision", ROWS)
def test_full_images_vs_sahi_way(benchmark, summary_line, device, precision):
    from sahi.postprocess import combine
    from sahi.postprocess.backends import set_postprocess_backend

    settings, prepared, policy, images, crops = workload(benchmark, device, precision)
    images = images[: settings["sahi_images"]]
    sahi = lambda: [  # noqa: E731
        one_tile_at_a_time_with_sahi_merge(prepared, image, policy, crops, combine.batched_nms)[0]
        for image in images
    ]
    ours = ours_on(prepared, policy, images, settings, crops, device)

    with torch.no_grad():
        ours()  # warm-up outside both timings
        if quick_mode(benchmark):
            backend = "numpy"
            set_postprocess_backend(backend)
        else:  # SAHI's fastest merge backend here, as bench_end_to_end chooses it
            _, predictions = one_tile_at_a_time_with_sahi_merge(
                prepared, images[0], policy, crops, combine.batched_nms
            )
            backend = fastest_sahi_backend(combine.batched_nms, predictions)
        expected, baseline_s = best_time(sahi, 1 if quick_mode(benchmark) else 2)
        found = benchmark.pedantic(ours, rounds=settings["rounds"], warmup_rounds=0)
        ours_s = benchmark.stats.stats.min if benchmark.enabled else best_time(ours, 1)[1]

    # Both keep the best 1000 of each image; batch-12 and batch-1 networks round differently (more so in
    # bf16), so the scores agree to that rounding only.
    for ours_found, theirs in zip(found, expected, strict=True):
        assert len(ours_found["scores"]) == len(theirs) == policy.max_per_image
        atol = 1e-4 if precision == "fp32" and device == "cpu" else 0.03
        torch.testing.assert_close(
            ours_found["scores"].cpu(), torch.from_numpy(theirs[:, 4]), atol=atol, rtol=0
        )
    record(benchmark, summary_line, "full images vs SAHI's way", settings, len(images), device, precision,
           baseline_s, ours_s, backend=backend, target=">= 10x")  # fmt: skip
