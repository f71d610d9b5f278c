"""Checkpoints that a crash or a kill never leaves broken (temporary file, fsync, rename), the last k of
each kind kept, and what a resumed run needs besides the weights: the RNG states and where to resume.

A checkpoint file is a one-line header, `tinyfast-checkpoint 1 sha256=<hex of the payload>`, followed by
the payload, a `torch.save` archive of the state dict. `load_checkpoint` verifies the checksum before it
unpickles anything, so a flipped byte, a truncated copy or a file that is no tinyfast checkpoint is an
error naming the file, never a silently altered model.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import pickle
import random
import re
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import torch

# Fault injection for the kill-and-resume test: when this variable names the file being written, the write
# stops after fsync and before the rename, touches `<name>.paused` next to it and waits to be killed.
PAUSE_BEFORE_RENAME = "TINYFAST_TEST_PAUSE_BEFORE_RENAME"
LATEST = "latest.pth"
_NAME = re.compile(r"(epoch|iter)_(\d+)\.pth")
_MAGIC = b"tinyfast-checkpoint 1 sha256="
_HEADER = re.compile(re.escape(_MAGIC) + rb"([0-9a-f]{64})\n")


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (e.g. a full disk); the file it would replace is unchanged."""


def _pause_if_requested(path: Path) -> None:
    if os.environ.get(PAUSE_BEFORE_RENAME) == path.name:
        path.with_name(path.name + ".paused").touch()
        while True:
            time.sleep(1)


def encode_checkpoint(state: dict) -> bytes:
    """The bytes of a checkpoint file: the header with the payload's sha256, then the payload."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()
    return _MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload


def _write_all(descriptor: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(descriptor, view) :]


def save_atomically(state: dict, path: Path) -> None:
    """Writes `state` to `path` through a temporary file in the same folder, fsync and rename: `path` is
    either its old or its new content, whatever happens. A failed write (CheckpointWriteError) removes the
    temporary file and says that the previous file is kept."""
    data = encode_checkpoint(state)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        try:
            _write_all(descriptor, data)
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        _pause_if_requested(path)
        os.replace(temporary, path)
    except BaseException as error:
        Path(temporary).unlink(missing_ok=True)
        if isinstance(error, OSError):
            reason = "the disk is full" if error.errno == errno.ENOSPC else error.strerror or str(error)
            kept = f"; the previous {path.name} is unchanged" if path.is_file() else ""
            message = f"cannot write checkpoint {path}: {reason}{kept}"
            raise CheckpointWriteError(error.errno, message) from error
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
    path, latest = run_dir / f"{name}.pth", run_dir / LATEST
    try:
        save_atomically(state, path)
        save_atomically(state, latest)
    except CheckpointWriteError as error:
        kept = f"{latest} holds the previous checkpoint" if latest.is_file() else "no checkpoint was kept"
        raise CheckpointWriteError(error.errno, f"{error.strerror}; {kept}") from error
    kind = match.group(1)
    numbers = sorted(
        int(m.group(2)) for p in run_dir.iterdir() if (m := _NAME.fullmatch(p.name)) and m[1] == kind
    )
    for old in numbers[:-keep_last] if keep_last > 0 else []:
        (run_dir / f"{kind}_{old}.pth").unlink(missing_ok=True)
    return path


def load_checkpoint(path: str | Path) -> dict:
    """The state dict saved in `path`; ValueError naming the file when it is missing, empty, truncated,
    corrupt (its checksum does not match) or not a tinyfast checkpoint."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"checkpoint {path} is a folder, not a checkpoint file")
    if not path.is_file():
        raise ValueError(f"checkpoint {path} does not exist")
    data = path.read_bytes()
    if not data:
        raise ValueError(f"checkpoint {path} is empty")
    header = _HEADER.match(data, 0, len(_MAGIC) + 65)
    if header is None:
        raise ValueError(
            f"{path} is not a tinyfast checkpoint (no 'tinyfast-checkpoint' header: a file of another tool, "
            "a plain torch.save or not a checkpoint at all)"
        )
    payload = memoryview(data)[header.end() :]
    if hashlib.sha256(payload).hexdigest() != header.group(1).decode():
        raise ValueError(f"checkpoint {path} is corrupt: its sha256 does not match (truncated or altered)")
    try:
        state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=False)
    except (RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, ValueError) as error:
        raise ValueError(f"checkpoint {path} cannot be read ({' '.join(str(error).split())})") from None
    if not isinstance(state, dict):
        raise ValueError(f"checkpoint {path} holds a {type(state).__name__}, not a state dict")
    return state


def model_checkpoint(source: str | Path, what: str = "model") -> Path:
    """The checkpoint of a model given as a run folder (its `latest.pth`) or as a checkpoint file;
    ValueError naming `what` and the path when it is neither."""
    path = Path(source)
    if path.is_dir():
        if not (path / LATEST).is_file():
            raise ValueError(
                f"{what} {path} is a folder without {LATEST}: not a run folder of a trained model"
            )
        return path / LATEST
    if path.is_file():
        return path
    raise ValueError(f"{what} {path} is neither a run folder nor a checkpoint file")


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
