"""The run folder belongs to one training at a time: an exclusive lock held for the run's life.

The lock is `fcntl.flock` on `<run_dir>/.lock`. The operating system releases it when its process ends,
however it ends (an exception, SIGTERM, SIGKILL, a crash), so a lock left by a dead process is never in
the way; the file itself stays and only records the pid of its last holder for the message.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from tinyfast.engine import distributed
from tinyfast.utils import comm

LOCK_FILE = ".lock"


class RunFolderBusy(ValueError):
    """Another process trains in this run folder."""


def _open_lock_file(run_dir: Path) -> int:
    if run_dir.exists() and not run_dir.is_dir():
        raise ValueError(f"run_dir {run_dir} is a file, not a folder")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):  # a parent is a file
        raise ValueError(f"run_dir {run_dir} cannot be created: a parent of it is a file") from None
    return os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)


@contextlib.contextmanager
def run_folder_lock(run_dir: str | Path) -> Iterator[Path]:
    """Holds the run folder's lock for the block (creating the folder); RunFolderBusy naming the folder
    when another living process holds it."""
    run_dir = Path(run_dir)
    descriptor = _open_lock_file(run_dir)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(descriptor, 32, 0).decode(errors="replace").strip() or "unknown"
            raise RunFolderBusy(
                f"run folder {run_dir} is in use by another training (pid {holder}): wait for it to end "
                "or choose another run_dir"
            ) from None
        except OSError as error:  # a file system without locks (some network mounts)
            raise OSError(error.errno, f"cannot lock run folder {run_dir}: {error.strerror}") from error
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
        yield run_dir
    finally:
        os.close(descriptor)  # releases the lock


@contextlib.contextmanager
def main_process_lock(run_dir: str | Path, processes: distributed.Processes) -> Iterator[None]:
    """The run folder's lock, held by the main process only (it alone writes the folder); when it cannot
    take it, every process of the launch raises the same error instead of waiting for the main one."""
    with contextlib.ExitStack() as stack:
        refusal = None
        if processes.is_main:
            try:
                stack.enter_context(run_folder_lock(run_dir))
            except ValueError as error:
                refusal = error
        if processes.world_size > 1:
            refusal = comm.broadcast_from_main(None if refusal is None else str(refusal))
            refusal = None if refusal is None else RunFolderBusy(refusal)
        if refusal is not None:
            raise refusal
        yield
