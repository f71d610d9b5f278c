"""Reduced precision against float32, same model, same process: a training step and a full image's tiled
inference of the default run's Adap FCOS (tinyfast/configs/fcos_synthetic.toml), bf16 where the device runs
it natively (a CPU with AVX512-BF16 or AMX, a recent GPU), skipped elsewhere.

- Training step: forward, losses, backward and an SGD step on a batch of the default run (4 cuts of
  320x256 with 100 TinyPerson-like persons each), float32 against ``train.amp = "bf16"``'s bf16 autocast with
  channels-last tensors (what the engine does).
- Tiled inference: one 1920x1080 image cut into the reference's 12 tiles, all in one batch, merged by
  ``merge_tiles``: the float32 model as trained against ``prepare_for_inference(model, "bf16")`` (BatchNorm
  folded, channels last, the network under bf16 autocast, boxes decoded in float32). The detections must
  agree: the same number kept, scores within bf16's rounding.

With ``--benchmark-disable`` (CI) or ``TINYFAST_BENCH_QUICK=1`` one round runs at a quarter of the size.
"""

import copy

import pytest
import torch

from bench.bench_end_to_end import default_model
from bench.bench_train_step import tiny_person_batch, training_step
from bench.timing import DEVICES, best_time, needs_native_bf16, quick_mode, synchronized
from tinyfast.engine.config import DEFAULT_CONFIG, load_config
from tinyfast.modeling.build import build_model
from tinyfast.modeling.inference import prepare_for_inference
from tinyfast.tiling import detect_images, tile_grid

TRAIN_FULL = {"batch": 4, "height": 256, "width": 320, "rounds": 3, "baseline_runs": 3}
TRAIN_QUICK = {"batch": 1, "height": 128, "width": 160, "rounds": 1, "baseline_runs": 1}
INFER_FULL = {
    "image": (1920, 1080),
    "tile": (640, 512),
    "overlap": (100, 100),
    "rounds": 2,
    "baseline_runs": 2,
}
INFER_QUICK = {"image": (960, 540), "tile": (320, 256), "overlap": (50, 50), "rounds": 1, "baseline_runs": 1}


@pytest.mark.parametrize("device", DEVICES)
def test_training_step_bf16_vs_float32(benchmark, summary_line, device):
    needs_native_bf16(device)
    settings = TRAIN_QUICK if quick_mode(benchmark) else TRAIN_FULL
    images, targets = tiny_person_batch(settings, device)
    torch.manual_seed(0)
    float32_model = build_model(load_config(DEFAULT_CONFIG)["model"]).to(device).train()
    bf16_model = copy.deepcopy(float32_model).to(memory_format=torch.channels_last)
    float32_sgd = torch.optim.SGD(float32_model.parameters(), lr=1e-3, momentum=0.9)
    bf16_sgd = torch.optim.SGD(bf16_model.parameters(), lr=1e-3, momentum=0.9)
    baseline = synchronized(lambda: training_step(float32_model, float32_sgd, images, targets), device)
    bf16_images = images.contiguous(memory_format=torch.channels_last)
    ours = synchronized(
        lambda: training_step(bf16_model, bf16_sgd, bf16_images, targets, torch.bfloat16), device
    )

    first_float32, first_bf16 = baseline(), ours()  # warm-up outside both timings, from the same weights
    assert abs(first_bf16.item() - first_float32.item()) <= 0.03 * abs(first_float32.item())
    baseline_loss, baseline_s = best_time(baseline, settings["baseline_runs"])
    loss = benchmark.pedantic(ours, rounds=settings["rounds"], warmup_rounds=0)
    ours_s = benchmark.stats.stats.min if benchmark.enabled else best_time(ours, 1)[1]

    assert torch.isfinite(loss) and torch.isfinite(baseline_loss)
    ratio = baseline_s / ours_s
    size = f"{settings['batch']} x {settings['width']}x{settings['height']}"
    benchmark.extra_info.update(size=size, baseline_s=baseline_s, ours_s=ours_s, ratio=ratio)
    summary_line(
        f"training step bf16 {device}, default model, {size}: bf16 {ours_s:.3f} s, float32 "
        f"{baseline_s:.3f} s, ratio {ratio:.2f}x"
    )


@pytest.mark.parametrize("device", DEVICES)
def test_tiled_inference_bf16_vs_float32(benchmark, summary_line, device):
    needs_native_bf16(device)
    settings = INFER_QUICK if quick_mode(benchmark) else INFER_FULL
    width, height = settings["image"]
    crops = tile_grid(width, height, settings["tile"], settings["overlap"])
    model, policy = default_model(device)
    prepared = prepare_for_inference(model, "bf16", device)
    image = torch.randn(3, height, width, generator=torch.Generator().manual_seed(0)).to(device)
    tiling = dict(tile=settings["tile"], overlap=settings["overlap"], tile_batch_size=len(crops))
    baseline = synchronized(lambda: detect_images(model.detect_tiles, [image], policy, **tiling)[0], device)
    ours = synchronized(lambda: detect_images(prepared.detect_tiles, [image], policy, **tiling)[0], device)

    baseline(), ours()  # warm-up outside both timings
    expected, baseline_s = best_time(baseline, settings["baseline_runs"])
    found = benchmark.pedantic(ours, rounds=settings["rounds"], warmup_rounds=0)
    ours_s = benchmark.stats.stats.min if benchmark.enabled else best_time(ours, 1)[1]

    assert len(found["scores"]) == len(expected["scores"]) == policy.max_per_image
    # Scores sorted: bf16 keeps about 3 significant digits of each network output.
    torch.testing.assert_close(found["scores"].cpu(), expected["scores"].cpu(), rtol=0, atol=0.02)
    ratio = baseline_s / ours_s
    benchmark.extra_info.update(image=f"{width}x{height}", tiles=len(crops), baseline_s=baseline_s,
                                ours_s=ours_s, ratio=ratio)  # fmt: skip
    summary_line(
        f"tiled inference bf16 {device}, {width}x{height}, {len(crops)} tiles: bf16 (folded BatchNorm, "
        f"channels last) {ours_s:.2f} s, float32 {baseline_s:.2f} s, ratio {ratio:.2f}x"
    )
