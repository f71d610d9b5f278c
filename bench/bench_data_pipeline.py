"""The default run's iteration with its data pipeline against the bare step on batches already in memory, in
the same process and on the same model: what the loader (decoding, cutting, augmenting in its workers,
collating, pinning on a GPU) costs the training loop beyond the step it feeds.

Both sides call the engine's own iteration (``Trainer._step``: the upload, forward and losses under the
run's autocast, backward, SGD step) on batches of the same loader, a ``Trainer`` of the default run
(tinyfast/configs/fcos_synthetic.toml: its synthetic set, generated into a temporary folder, 320x256 cuts,
4 a batch, ``train.workers`` as the config says, or sized to the cores on a GPU machine). Ours: the next
batch from the loader, then the step, as training runs. Baseline: the step on batches loaded beforehand.
The ratio is the bare step's time over the iteration's (the target is an iteration of at most 1.15x the
bare step, a ratio of at least 0.87). The CPU row runs at bf16 (skipped where the CPU has no native bf16),
the GPU row at bf16.

With ``--benchmark-disable`` (CI) or ``TINYFAST_BENCH_QUICK=1``: the tiny synthetic set with 160x128 cuts,
a 16-channel model, 2 iterations a side.
"""

import time

import pytest
import torch

from bench.timing import DEVICES, needs_native_bf16, quick_mode
from tinyfast.engine.config import DEFAULT_CONFIG, load_config
from tinyfast.engine.distributed import Processes
from tinyfast.engine.trainer import Trainer

FULL = {"iterations": 8, "warmup": 3, "overrides": []}
QUICK = {
    "iterations": 2,
    "warmup": 1,
    "overrides": [
        "data.synthetic_preset=tiny",
        "data.sub_size=[160, 128]",
        "data.min_objects_per_cut=1",
        "model.channels=16",
        "model.stacked_convs=1",
        "train.batch_size=2",
    ],
}


def default_run_trainer(root, device: str, overrides) -> Trainer:
    config = load_config(
        DEFAULT_CONFIG,
        [
            f"run_dir={root / 'run'}",
            f"data.root={root / 'synthetic'}",
            f"train.device={device}",
            "train.amp=bf16",
            *([] if device == "cpu" else ["train.workers=-1"]),
            *overrides,
        ],
    )
    processes = Processes(rank=0, world_size=1, local_rank=0, device=torch.device(device))
    return Trainer(config, root / "run", processes, progress=False)


def timed_steps(trainer: Trainer, batches, device: str) -> float:
    """Seconds per iteration of `trainer._step` over `batches` (an iterator: loading counts)."""
    count = 0
    start = time.perf_counter()
    for loaded in batches:
        outcome = trainer._step(loaded)
        assert "loss" in outcome, outcome
        count += 1
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / count


@pytest.mark.parametrize("device", DEVICES)
def test_default_run_iteration_vs_the_bare_step(benchmark, summary_line, tmp_path, device):
    needs_native_bf16(device)
    settings = QUICK if quick_mode(benchmark) else FULL
    trainer = default_run_trainer(tmp_path, device, settings["overrides"])
    iterations, warmup = settings["iterations"], settings["warmup"]
    needed = warmup + 2 * iterations
    assert trainer.sampler.batches_per_epoch >= needed, trainer.sampler.batches_per_epoch
    trainer.sampler.set_epoch(0)
    loader = iter(trainer.loader)
    timed_steps(trainer, (next(loader) for _ in range(warmup)), device)  # workers up, kernels warm
    in_memory = [next(loader) for _ in range(iterations)]

    baseline_s = timed_steps(trainer, iter(in_memory), device)
    ours_s = benchmark.pedantic(
        lambda: timed_steps(trainer, (next(loader) for _ in range(iterations)), device),
        rounds=1,
        warmup_rounds=0,
    )

    ratio = baseline_s / ours_s
    train = trainer.settings.train
    benchmark.extra_info.update(
        device=device, precision="bf16", batch=f"{train.batch_size} x {trainer.settings.data.sub_size}",
        workers=trainer.loader.num_workers, iterations=iterations, baseline_s=baseline_s, ours_s=ours_s,
        ratio=ratio, overhead=f"{ours_s / baseline_s:.2f}x (target <= 1.15x)",
    )  # fmt: skip
    summary_line(
        f"default run iteration {device} bf16, {trainer.loader.num_workers} workers: loader + step "
        f"{ours_s:.3f} s, bare step {baseline_s:.3f} s, overhead {ours_s / baseline_s:.2f}x"
    )
