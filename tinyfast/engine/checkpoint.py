"""Checkpoints written so that a crash or a kill never leaves a broken one: temporary file, fsync, rename."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch


def save_atomically(state: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as file:
            torch.save(state, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def save_checkpoint(state: dict, run_dir: Path, epoch: int, keep_last: int) -> Path:
    """Writes `epoch_{epoch}.pth` and `latest.pth`, then removes the epoch files older than `keep_last`."""
    path = run_dir / f"epoch_{epoch}.pth"
    save_atomically(state, path)
    save_atomically(state, run_dir / "latest.pth")
    epochs = sorted(int(p.stem.split("_")[1]) for p in run_dir.glob("epoch_*.pth"))
    for old in epochs[:-keep_last] if keep_last > 0 else []:
        (run_dir / f"epoch_{old}.pth").unlink(missing_ok=True)
    return path


def load_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint {path} does not exist")
    return torch.load(path, map_location="cpu", weights_only=False)
