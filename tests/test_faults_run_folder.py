"""Fault suite, run folder and checkpoints: one training per run folder (a lock that dies with its process),
checkpoints verified by their sha256 (a flipped byte, a foreign or broken file is refused naming it), and a
full disk that keeps the previous checkpoint and says so."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinyfast import test as test_cli
from tinyfast import train as train_cli
from tinyfast.engine import checkpoint as checkpoint_module
from tinyfast.engine import run_folder as run_folder_module
from tinyfast.engine.checkpoint import (
    PAUSE_BEFORE_RENAME,
    CheckpointWriteError,
    load_checkpoint,
    save_atomically,
    save_checkpoint,
)
from tinyfast.engine.config import DEFAULT_CONFIG, load_config
from tinyfast.engine.distributed import Processes
from tinyfast.engine.run_folder import LOCK_FILE, RunFolderBusy, main_process_lock, run_folder_lock
from tinyfast.modeling.build import build_model

REPOSITORY_ROOT = str(Path(__file__).resolve().parents[1])
ENVIRONMENT = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join([REPOSITORY_ROOT, os.environ.get("PYTHONPATH", "")]),
}
SHORT_RUN = ["train.device=cpu", "train.max_iters_per_epoch=2", "test.eval_interval=-1"]


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err, err
    return err


def wait_for(path: Path, process: subprocess.Popen, stderr: Path, seconds: float = 600) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert process.poll() is None, stderr.read_text()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.2)


def test_a_second_training_on_the_same_run_folder_refuses_and_leaves_the_first_ones_files(
    smoke_overrides, tmp_path, capsys
):
    run = tmp_path / "run"
    overrides = [*smoke_overrides, *SHORT_RUN]
    command = [sys.executable, "-m", "tinyfast.train", str(DEFAULT_CONFIG), *overrides, "--no-progress"]
    stderr = tmp_path / "first.stderr"
    with stderr.open("w") as stream:  # the first run stops inside its write of epoch_1.pth
        first = subprocess.Popen(
            command, env={**ENVIRONMENT, PAUSE_BEFORE_RENAME: "epoch_1.pth"}, stderr=stream
        )
    try:
        wait_for(run / "epoch_1.pth.paused", first, stderr)
        partial = list(run.glob(".epoch_1.pth.*.tmp"))
        log = (run / "log.jsonl").read_text()
        assert len(partial) == 1

        assert train_cli.main([str(DEFAULT_CONFIG), *overrides, "--no-progress"]) == 2
        message = one_error_line(capsys)
        assert f"run folder {run} is in use by another training (pid {first.pid})" in message
        assert partial[0].exists() and (run / "log.jsonl").read_text() == log  # nothing of the first touched
        first.send_signal(signal.SIGTERM)
        assert first.wait(60) == -signal.SIGTERM
    finally:
        first.kill()
        first.wait()
    # The dead run's lock is no obstacle; the new run clears its unfinished write.
    assert train_cli.main([str(DEFAULT_CONFIG), *overrides, "--no-progress"]) == 0
    assert not list(run.glob("*.tmp")) and load_checkpoint(run / "latest.pth")["iteration"] == 2


# Ctrl-C's handler set explicitly: a process started in the background inherits SIGINT ignored.
HOLD_THE_LOCK = """
import signal, sys, time
from tinyfast.engine.run_folder import run_folder_lock
signal.signal(signal.SIGINT, signal.default_int_handler)
with run_folder_lock(sys.argv[1]):
    open(sys.argv[2], "w").close()
    time.sleep(600)
"""


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_the_lock_is_released_however_its_process_ends(how, tmp_path):
    run, ready, stderr = tmp_path / "run", tmp_path / "ready", tmp_path / "holder.stderr"
    with stderr.open("w") as stream:
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLD_THE_LOCK, str(run), str(ready)], env=ENVIRONMENT, stderr=stream
        )
    try:
        wait_for(ready, holder, stderr, 120)
        with pytest.raises(
            RunFolderBusy, match=f"run folder {run} is in use by another training .pid {holder.pid}"
        ):
            with run_folder_lock(run):
                pass
        holder.send_signal(how)
        holder.wait(60)
    finally:
        holder.kill()
        holder.wait()
    assert (run / LOCK_FILE).read_text() == f"{holder.pid}\n"  # the stale file stays, its lock does not
    with run_folder_lock(run):
        assert (run / LOCK_FILE).read_text() == f"{os.getpid()}\n"


def test_the_lock_is_exclusive_within_a_process_and_released_by_an_exception(tmp_path):
    with pytest.raises(RuntimeError, match="boom"):
        with run_folder_lock(tmp_path):
            with pytest.raises(RunFolderBusy):
                with run_folder_lock(tmp_path):
                    pass
            raise RuntimeError("boom")
    with run_folder_lock(tmp_path):
        pass


def test_a_file_system_without_locks_is_an_error_naming_the_folder(tmp_path, monkeypatch):
    def no_locks(descriptor, operation):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(run_folder_module.fcntl, "flock", no_locks)
    with pytest.raises(OSError, match=f"cannot lock run folder {tmp_path}: No locks available"):
        with run_folder_lock(tmp_path):
            pass


def test_only_the_main_process_locks_the_run_folder(tmp_path):
    cpu = torch.device("cpu")
    with main_process_lock(tmp_path / "a", Processes(rank=0, world_size=1, local_rank=0, device=cpu)):
        with pytest.raises(RunFolderBusy):
            with run_folder_lock(tmp_path / "a"):
                pass
    with main_process_lock(tmp_path / "b", Processes(rank=1, world_size=1, local_rank=1, device=cpu)):
        with run_folder_lock(tmp_path / "b"):  # a non-main process leaves the folder alone
            pass


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs gloo")
def test_every_process_of_a_launch_stops_when_the_run_folder_is_taken(smoke_overrides, tmp_path):
    run = tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    command += ["-m", "tinyfast.train", str(DEFAULT_CONFIG), *smoke_overrides, *SHORT_RUN, "--no-progress"]
    with run_folder_lock(run):
        ran = subprocess.run(
            command, env={**ENVIRONMENT, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=600
        )
    assert ran.returncode != 0
    # rank 0 says it once; rank 1 stops too instead of waiting for rank 0 at a barrier
    assert (ran.stdout + ran.stderr).count(f"error: run folder {run} is in use by another training") == 1
    assert sorted(p.name for p in run.iterdir()) == [LOCK_FILE]


def test_a_run_dir_that_is_a_file_is_a_message(smoke_overrides, tmp_path, capsys):
    file = tmp_path / "taken"
    file.write_text("not a folder")
    assert train_cli.main([str(DEFAULT_CONFIG), *smoke_overrides, f"run_dir={file}"]) == 2
    assert f"run_dir {file} is a file, not a folder" in one_error_line(capsys)
    assert train_cli.main([str(DEFAULT_CONFIG), *smoke_overrides, f"run_dir={file / 'below'}"]) == 2
    assert "a parent of it is a file" in one_error_line(capsys)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(position=st.floats(0, 1, exclude_max=True), bit=st.integers(0, 7))
def test_a_checkpoint_with_any_one_bit_flipped_is_refused_naming_the_file(position, bit, tmp_path):
    path = tmp_path / "epoch_1.pth"
    if not path.exists():
        save_checkpoint({"model": {"w": torch.arange(100.0)}, "epoch": 1}, tmp_path, "epoch_1", 1)
    data = bytearray(path.read_bytes())
    index = int(position * len(data))
    data[index] ^= 1 << bit
    flipped = tmp_path / "flipped.pth"
    flipped.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=f"{flipped}"):
        load_checkpoint(flipped)
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.arange(100.0))


def test_a_checkpoint_with_one_byte_flipped_in_its_weights_is_refused_as_corrupt(tmp_path):
    save_checkpoint({"model": {"w": torch.zeros(1000)}}, tmp_path, "epoch_1", 1)
    data = bytearray((tmp_path / "epoch_1.pth").read_bytes())
    data[-2000] ^= 0x40  # inside the tensor data: torch.load alone would return altered weights
    (tmp_path / "epoch_1.pth").write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"checkpoint .*epoch_1.pth is corrupt: its sha256 does not match"):
        load_checkpoint(tmp_path / "epoch_1.pth")


def write_foreign_checkpoints(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    save_checkpoint({"model": {"w": torch.ones(4)}}, folder, "epoch_1", 1)
    good = (folder / "epoch_1.pth").read_bytes()
    files = {
        "empty": b"",
        "truncated": good[: len(good) - 100],
        "text": b"these are not the weights you are looking for\n",
        "header only": good[: good.index(b"\n") + 1],
    }
    paths = {name: folder / f"{name.replace(' ', '_')}.pth" for name in [*files, "tensor", "plain dict"]}
    for name, data in files.items():
        paths[name].write_bytes(data)
    torch.save(torch.ones(3), paths["tensor"])
    torch.save({"model": {"w": torch.ones(4)}}, paths["plain dict"])
    return paths


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("empty", "is empty"),
        ("truncated", "is corrupt"),
        ("text", "is not a tinyfast checkpoint"),
        ("header only", "is corrupt"),
        ("tensor", "is not a tinyfast checkpoint"),
        ("plain dict", "is not a tinyfast checkpoint"),
    ],
)
def test_corrupt_empty_truncated_or_foreign_checkpoints_are_refused_by_every_command(
    name, message, smoke_overrides, tmp_path, capsys
):
    path = write_foreign_checkpoints(tmp_path / "bad")[name]
    with pytest.raises(ValueError, match=f"{path}.* {message}"):
        load_checkpoint(path)
    overrides = [*smoke_overrides, *SHORT_RUN]
    assert train_cli.main([str(DEFAULT_CONFIG), *overrides, "--resume-from", str(path), "--no-progress"]) == 2
    assert str(path) in one_error_line(capsys)
    assert test_cli.main([str(DEFAULT_CONFIG), str(path), *overrides, "--no-progress"]) == 2
    assert str(path) in one_error_line(capsys)
    run = tmp_path / "run"
    run.mkdir(exist_ok=True)
    (run / "latest.pth").write_bytes(path.read_bytes())
    assert train_cli.main([str(DEFAULT_CONFIG), *overrides, "--resume", "--no-progress"]) == 2
    assert str(run / "latest.pth") in one_error_line(capsys)


def test_a_checkpoint_of_another_model_cannot_be_resumed_and_says_why(smoke_overrides, tmp_path, capsys):
    config = load_config(DEFAULT_CONFIG, smoke_overrides)
    model = build_model({**config["model"], "channels": 8})
    save_checkpoint(
        {
            "model": model.state_dict(),
            "optimizer": {},
            "scaler": {},
            "rng": {},
            "world_size": 1,
            "batch_size": 2,
            "epoch": 0,
            "batch_in_epoch": 0,
            "iteration": 0,
            "skipped_batches": 0,
            "skipped_images": 0,
        },
        tmp_path,
        "epoch_1",
        1,
    )
    argv = [str(DEFAULT_CONFIG), *smoke_overrides, *SHORT_RUN, "--resume-from", str(tmp_path / "epoch_1.pth")]
    assert train_cli.main(argv) == 2
    assert (
        "epoch_1.pth cannot be resumed by this config's run (Error(s) in loading state_dict"
        in one_error_line(capsys)
    )


def full_disk_after(monkeypatch, writes: int) -> None:
    """The checkpoint writes after the first `writes` fail half-way with ENOSPC."""
    real_write_all, calls = checkpoint_module._write_all, []

    def write_all(descriptor: int, data: bytes) -> None:
        calls.append(len(data))
        if len(calls) > writes:
            os.write(descriptor, data[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_write_all(descriptor, data)

    monkeypatch.setattr(checkpoint_module, "_write_all", write_all)


def test_a_full_disk_keeps_the_previous_checkpoint_and_says_so(tmp_path, monkeypatch):
    save_checkpoint({"epoch": 1}, tmp_path, "epoch_1", keep_last=0)
    full_disk_after(monkeypatch, 0)
    with pytest.raises(CheckpointWriteError) as raised:
        save_checkpoint({"epoch": 2}, tmp_path, "epoch_2", keep_last=0)
    assert raised.value.errno == errno.ENOSPC
    assert f"cannot write checkpoint {tmp_path / 'epoch_2.pth'}: the disk is full" in str(raised.value)
    assert f"{tmp_path / 'latest.pth'} holds the previous checkpoint" in str(raised.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch_1.pth", "latest.pth"]
    assert load_checkpoint(tmp_path / "latest.pth") == {"epoch": 1}

    monkeypatch.undo()
    full_disk_after(monkeypatch, 1)  # epoch_2.pth is written, latest.pth is not
    with pytest.raises(CheckpointWriteError, match="the previous latest.pth is unchanged"):
        save_checkpoint({"epoch": 2}, tmp_path, "epoch_2", keep_last=0)
    assert load_checkpoint(tmp_path / "latest.pth") == {"epoch": 1}
    assert not list(tmp_path.glob(".*.tmp"))

    with pytest.raises(CheckpointWriteError, match=r"cannot write checkpoint .*fresh.pth: the disk is full$"):
        save_atomically({}, tmp_path / "new" / "fresh.pth")


def test_a_full_disk_during_training_is_one_line_and_exit_code_1(
    smoke_overrides, tmp_path, monkeypatch, capsys
):
    full_disk_after(monkeypatch, 2)  # epoch_1.pth and latest.pth, then the disk is full
    argv = [str(DEFAULT_CONFIG), *smoke_overrides, *SHORT_RUN, "train.epochs=2", "--no-progress"]
    assert train_cli.main(argv) == 1
    message = one_error_line(capsys)
    assert (
        "epoch_2.pth: the disk is full" in message and "latest.pth holds the previous checkpoint" in message
    )
    assert load_checkpoint(tmp_path / "run" / "latest.pth")["epoch"] == 1
    monkeypatch.undo()
    assert train_cli.main([*argv, "--resume"]) == 0  # and the run continues from there once there is room
    assert load_checkpoint(tmp_path / "run" / "latest.pth")["epoch"] == 2
