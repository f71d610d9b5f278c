"""Faults in training: a kill in the middle of a checkpoint write, non-finite losses, unreadable images."""

import itertools
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tinyfast import train as train_cli
from tinyfast.data import DataError
from tinyfast.data.build import DataConfig, train_dataset
from tinyfast.data.sampling import EpochBatchSampler
from tinyfast.engine.checkpoint import PAUSE_BEFORE_RENAME, load_checkpoint
from tinyfast.engine.config import DEFAULT_CONFIG, load_config
from tinyfast.engine.trainer import train
from tinyfast.modeling import AdapFCOS

REPOSITORY_ROOT = str(Path(__file__).resolve().parents[1])


def records(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


def assert_same_tensors(ours: dict, theirs: dict) -> None:
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert torch.equal(ours[key], theirs[key]), key


def test_a_run_killed_while_writing_a_checkpoint_resumes_to_the_same_weights(smoke_overrides, tmp_path):
    overrides = smoke_overrides + [
        "train.device=cpu",
        "train.deterministic=true",
        "train.epochs=2",
        "train.max_iters_per_epoch=2",
        "train.checkpoint_interval=3",  # epoch_1 (iteration 2), iter_3, epoch_2 (iteration 4)
        "test.eval_interval=-1",
    ]
    whole = tmp_path / "whole"
    train(load_config(DEFAULT_CONFIG, [*overrides, f"run_dir={whole}"]), whole, progress=False)

    # The same run in another process, stopped inside the write of epoch_2.pth (after fsync, before the
    # rename) and killed there.
    killed = tmp_path / "killed"
    command = [sys.executable, "-m", "tinyfast.train", str(DEFAULT_CONFIG), *overrides, f"run_dir={killed}"]
    environment = {
        **os.environ,
        PAUSE_BEFORE_RENAME: "epoch_2.pth",
        "PYTHONPATH": os.pathsep.join([REPOSITORY_ROOT, os.environ.get("PYTHONPATH", "")]),
    }
    with (tmp_path / "killed.stderr").open("w") as stderr:
        process = subprocess.Popen([*command, "--no-progress"], env=environment, stderr=stderr)
        try:
            deadline = time.monotonic() + 600
            while not (killed / "epoch_2.pth.paused").exists():
                assert process.poll() is None, (tmp_path / "killed.stderr").read_text()
                assert time.monotonic() < deadline, "the run never reached the write of epoch_2.pth"
                time.sleep(0.2)
            os.kill(process.pid, signal.SIGKILL)
        finally:
            process.kill()
            process.wait()
    assert process.returncode == -signal.SIGKILL
    assert len(list(killed.glob(".epoch_2.pth.*.tmp"))) == 1 and not (killed / "epoch_2.pth").exists()
    interrupted = load_checkpoint(killed / "latest.pth")
    assert (interrupted["epoch"], interrupted["batch_in_epoch"], interrupted["iteration"]) == (1, 1, 3)

    assert (
        train_cli.main([str(DEFAULT_CONFIG), *overrides, f"run_dir={killed}", "--resume", "--no-progress"])
        == 0
    )
    assert not list(killed.glob("*.tmp"))
    assert "resumed from" in (killed / "train.log").read_text()
    ours, theirs = load_checkpoint(killed / "latest.pth"), load_checkpoint(whole / "latest.pth")
    assert ours["iteration"] == theirs["iteration"] == 4
    assert_same_tensors(ours["model"], theirs["model"])
    for key, state in ours["optimizer"]["state"].items():
        assert_same_tensors(state, theirs["optimizer"]["state"][key])
    assert [r["iteration"] for r in records(killed)] == [1, 2, 3, 4]  # each iteration logged once
    assert [r["loss"] for r in records(killed)] == [r["loss"] for r in records(whole)]


def poison_losses(monkeypatch, calls: set[int]) -> None:
    """Makes `AdapFCOS.losses` return a NaN classification loss at the given calls (1-based)."""
    original, counter = AdapFCOS.losses, itertools.count(1)

    def losses(self, *args):
        found = original(self, *args)
        if next(counter) in calls:
            found["loss_cls"] = found["loss_cls"] * math.nan
        return found

    monkeypatch.setattr(AdapFCOS, "losses", losses)


def test_a_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(
    smoke_overrides, tmp_path, monkeypatch, capsys
):
    poison_losses(monkeypatch, {3})
    run = tmp_path / "run"
    overrides = [*smoke_overrides, "train.checkpoint_interval=1", "test.eval_interval=-1"]
    assert train_cli.main([str(DEFAULT_CONFIG), *overrides, "--no-progress"]) == 1
    error = capsys.readouterr().err
    assert "non-finite loss at epoch 1, iteration 3" in error and "loss_cls" in error
    assert f"the last good checkpoint is {run / 'latest.pth'}" in error
    last_good = load_checkpoint(run / "latest.pth")
    assert last_good["iteration"] == 2
    assert all(torch.isfinite(value).all() for value in last_good["model"].values())
    assert [r["iteration"] for r in records(run)] == [1, 2]


def test_non_finite_losses_can_be_skipped_and_counted(smoke_overrides, tmp_path, monkeypatch):
    poison_losses(monkeypatch, {2})
    run = tmp_path / "run"
    overrides = [
        *smoke_overrides,
        "train.max_iters_per_epoch=3",
        "train.checkpoint_interval=1",
        "train.skip_bad_batches=1",
        "test.eval_interval=-1",
    ]
    train(load_config(DEFAULT_CONFIG, overrides), run, progress=False)
    log = records(run)
    assert [r["iteration"] for r in log] == [1, 2, 3]
    assert log[1]["skipped"] == "non-finite loss" and log[1]["skipped_batches"] == 1
    assert "skipped" not in log[0] and "skipped" not in log[2]
    assert load_checkpoint(run / "epoch_1.pth")["skipped_batches"] == 1
    # the skipped batch changed nothing
    assert_same_tensors(
        load_checkpoint(run / "iter_1.pth")["model"], load_checkpoint(run / "iter_2.pth")["model"]
    )
    assert "skipped the batch of epoch 1, iteration 2: non-finite loss" in (run / "train.log").read_text()


def test_unreadable_training_images_are_left_out_or_stop_the_run_naming_the_file(
    tiny_synthetic_set, smoke_overrides, data_overrides, tmp_path
):
    data = tmp_path / "data"
    shutil.copytree(tiny_synthetic_set, data)
    overrides = [
        *smoke_overrides,
        *data_overrides(data),
        "train.max_iters_per_epoch=2",
        "test.eval_interval=-1",
    ]
    config = load_config(DEFAULT_CONFIG, overrides)
    dataset = train_dataset(DataConfig.from_config(config["data"]))
    sampler = EpochBatchSampler(len(dataset), 2, seed=0)
    first_item = next(iter(sampler))[0][0]
    broken = dataset.samples[first_item].image.file_name
    (data / "images" / broken).write_bytes(b"not a jpeg")  # after the dataset's up-front checks

    run = tmp_path / "run"
    train(config, run, progress=False)
    log = records(run)
    assert len(log) == 2 and log[0]["skipped_images"] >= 1
    assert load_checkpoint(run / "latest.pth")["skipped_images"] == max(
        r.get("skipped_images", 0) for r in log
    )
    message = f"left out of the batch: {data / 'images' / broken}: cannot decode image"
    assert message in (run / "train.log").read_text()

    strict = load_config(DEFAULT_CONFIG, [*overrides, "data.skip_bad_images=false"])
    with pytest.raises(DataError, match=f"{broken}: cannot decode image.*data.skip_bad_images = true"):
        train(strict, tmp_path / "strict", progress=False)
