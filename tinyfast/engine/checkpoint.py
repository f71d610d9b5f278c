"""Checkpoints that a crash or a kill never leaves broken (temporary file, fsync, rename), the last k of
each kind kept, and what a resumed run needs besides the weights: the RNG states and where to resume."""

from __future__ import annotations

import os
import random
import re
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

# Fault injection for the kill-and-resume test: when this variable names the file being written, the write
# stops after fsync and before the rename, touches `<name>.paused` next to it and waits to be killed.
PAUSE_BEFORE_RENAME = "TINYFAST_TEST_PAUSE_BEFORE_RENAME"
LATEST = "latest.pth"
_NAME = re.compile(r"(epoch|iter)_(\d+)\.pth")


def _pause_if_requested(path: Path) -> None:
    if os.environ.get(PAUSE_BEFORE_RENAME) == path.name:
        path.with_name(path.name + ".paused").touch()
        while True:
            time.sleep(1)


def save_atomically(state: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as file:
            torch.save(state, file)
            file.flush()
            os.fsync(file.fileno())
        _pause_if_requested(path)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def remove_partial_writes(run_dir: Path) -> list[Path]:
    """Deletes the temporary files of writes that a killed process never finished; returns them."""
    partial = sorted(run_dir.glob(".*.pth.*.tmp"))
    for path in partial:
        path.unlink(missing_ok=True)
    return partial


def save_checkpoint(state: dict, run_dir: Path, name: str, keep_last: int) -> Path:
    """Writes `{name}.pth` (`name` is `epoch_N` or `iter_N`) and `latest.pth`, then removes the files of
    the same kind (epoch or iter) older than the last `keep_last` (0 keeps all)."""
    match = _NAME.fullmatch(f"{name}.pth")
    if match is None:
        raise ValueError(f"checkpoint name must be epoch_N or iter_N, got {name!r}")
    path = run_dir / f"{name}.pth"
    save_atomically(state, path)
    save_atomically(state, run_dir / LATEST)
    kind = match.group(1)
    numbers = sorted(
        int(m.group(2)) for p in run_dir.iterdir() if (m := _NAME.fullmatch(p.name)) and m[1] == kind
    )
    for old in numbers[:-keep_last] if keep_last > 0 else []:
        (run_dir / f"{kind}_{old}.pth").unlink(missing_ok=True)
    return path


def load_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint {path} does not exist")
    return torch.load(path, map_location="cpu", weights_only=False)


def resume_path(run_dir: Path, resume: str | Path | None, auto_resume: bool) -> Path | None:
    """The checkpoint to continue from: `resume` itself, or with `resume="auto"` (or `auto_resume` and no
    `resume`) the run folder's `latest.pth` when there is one; None to start afresh."""
    if resume is not None and str(resume) != "auto":
        if not Path(resume).is_file():
            raise ValueError(f"checkpoint to resume from {resume} does not exist")
        return Path(resume)
    if resume is None and not auto_resume:
        return None
    latest = run_dir / LATEST
    return latest if latest.is_file() else None


def rng_states() -> dict:
    states = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(states["cuda"])
