"""Two gloo processes on the CPU (torchrun) against one process with the doubled batch."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
from torchvision.io import write_png

from tinyfast.data.transforms import read_image
from tinyfast.engine.checkpoint import load_checkpoint
from tinyfast.engine.config import DEFAULT_CONFIG, load_config
from tinyfast.engine.evaluation import evaluate_detector
from tinyfast.engine.trainer import train
from tinyfast.modeling.build import build_model

REPOSITORY_ROOT = str(Path(__file__).resolve().parents[1])


def torchrun(arguments: list[str], log_path: Path, timeout: float = 900) -> int:
    """Runs `torchrun --standalone` (a free port) in a session of its own, killed whole on timeout. Each
    process computes with one thread (torchrun's default, made explicit)."""
    environment = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([REPOSITORY_ROOT, os.environ.get("PYTHONPATH", "")]),
    }
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", *arguments]
    with log_path.open("w") as log:
        process = subprocess.Popen(
            command, env=environment, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            return process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise


def one_tile_test_set(source: Path, out: Path) -> list[str]:
    """The top-left 640x512 of each test image (one tile of tiled inference instead of 6 or 12) with the
    annotations inside it; returns the config overrides that use it."""
    coco = json.loads((source / "annotations" / "test.json").read_text())
    (out / "images").mkdir(parents=True)
    for info in coco["images"]:
        image = read_image(source / "images" / info["file_name"])
        info["file_name"] = Path(info["file_name"]).with_suffix(".png").name
        write_png(image[:, :512, :640].contiguous(), str(out / "images" / info["file_name"]))
        info["width"], info["height"] = 640, 512
    coco["annotations"] = [
        ann
        for ann in coco["annotations"]
        if ann["bbox"][0] + ann["bbox"][2] <= 640 and ann["bbox"][1] + ann["bbox"][3] <= 512
    ]
    (out / "test.json").write_text(json.dumps(coco))
    return [f"data.test_annotations={out / 'test.json'}", f"data.test_images={out / 'images'}"]


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs gloo")
def test_two_processes_train_as_one_with_the_doubled_batch_and_evaluate_as_one(
    tiny_synthetic_set, smoke_overrides, tmp_path
):
    common = [
        *smoke_overrides,
        *one_tile_test_set(tiny_synthetic_set, tmp_path / "test_set"),
        "train.device=cpu",
        "train.max_iters_per_epoch=4",
        "model.backbone_norm=group",  # BatchNorm statistics would be per process on the CPU
        "test.images_per_batch=1",
        "train.amp=fp32",  # float32: sums in another order differ in the last bits, not in bf16's
        "test.precision=fp32",
    ]
    two = tmp_path / "two"
    arguments = ["--nproc_per_node", "2", "-m", "tinyfast.train", str(DEFAULT_CONFIG), *common]
    arguments += [f"run_dir={two}", "train.batch_size=1", "train.workers=1", "--no-progress"]
    assert torchrun(arguments, tmp_path / "torchrun.log") == 0, (tmp_path / "torchrun.log").read_text()

    one = tmp_path / "one"
    config = load_config(
        DEFAULT_CONFIG, [*common, f"run_dir={one}", "train.batch_size=2", "test.eval_interval=-1"]
    )
    train(config, one, progress=False)

    two_log, one_log = records(two), records(one)
    assert "AP50_tiny" in two_log[-1] and len(one_log) == 4
    assert [r["lr"] for r in two_log[:4]] == [r["lr"] for r in one_log]
    np.testing.assert_allclose([r["loss"] for r in two_log[:4]], [r["loss"] for r in one_log], rtol=1e-4)
    two_weights, one_weights = (
        load_checkpoint(two / "latest.pth")["model"],
        load_checkpoint(one / "latest.pth")["model"],
    )
    for key, value in one_weights.items():
        torch.testing.assert_close(two_weights[key], value, rtol=1e-3, atol=3e-5)  # sums in another order
    scaled_lr = config["train"]["lr"] * 2 * 1 / config["train"]["reference_batch"]  # 2 processes x 1 image
    assert f"1 images -> lr {scaled_lr:g}" in (two / "train.log").read_text()
    assert "2 process(es)" in (two / "train.log").read_text()

    # The same checkpoint evaluated by this process alone, with one thread as each torchrun process had.
    model = build_model(config["model"])
    model.load_state_dict(two_weights)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        metrics = evaluate_detector(
            model.detect_tiles, config, tmp_path / "single", progress=False, images_per_batch=1
        )
    finally:
        torch.set_num_threads(threads)
    single = json.loads((tmp_path / "single" / "results_during.json").read_text())
    assert single == json.loads((two / "results_during.json").read_text()) and single
    assert metrics == json.loads((two / "metrics_during.json").read_text())


@pytest.mark.cuda
@pytest.mark.skipif(
    not torch.cuda.is_available() or not dist.is_available() or not dist.is_nccl_available(),
    reason="needs a CUDA device and NCCL",
)
def test_a_gpu_process_under_torchrun_trains_in_bf16_with_nccl_and_evaluates(
    tiny_synthetic_set, smoke_overrides, tmp_path
):
    run = tmp_path / "gpu"
    arguments = ["--nproc_per_node", "1", "-m", "tinyfast.train", str(DEFAULT_CONFIG), *smoke_overrides]
    arguments += [*one_tile_test_set(tiny_synthetic_set, tmp_path / "test_set"), f"run_dir={run}"]
    arguments += ["train.device=cuda", "train.amp=bf16", "--no-progress"]
    assert torchrun(arguments, tmp_path / "torchrun.log") == 0, (tmp_path / "torchrun.log").read_text()

    log = records(run)
    losses = [record["loss"] for record in log if "loss" in record]
    assert len(losses) == 8 and np.isfinite(losses).all()
    assert 0 <= log[-1]["AP50_tiny"] <= 1
    assert "trains in float32" not in (run / "train.log").read_text()
    weights = load_checkpoint(run / "latest.pth")["model"]
    assert all(value.device.type == "cpu" and value.isfinite().all() for value in weights.values())
