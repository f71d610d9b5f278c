"""Reading ahead of the computation: the next batches of images decoded in a background thread (decoding and
torch's operations release the GIL) and, on a GPU, uploaded there too, from pinned memory on a CUDA stream of
their own, so that neither waits for the model nor the model for them."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

import torch

Key = TypeVar("Key")
Item = TypeVar("Item")
Prepared = TypeVar("Prepared")

_END = object()


def prefetch(
    items: Iterable[Item], prepare: Callable[[Item], Prepared] = lambda item: item, depth: int = 2
) -> Iterator[Prepared]:
    """`prepare(item)` for each of `items`, in order, iterated and prepared in a background thread at most
    `depth` items ahead of the caller (`depth` 0: in the caller's thread, one at a time). An exception raised
    there is raised here, at the item it belongs to; leaving the loop early stops the thread."""
    if depth < 0:
        raise ValueError(f"prefetch: depth must be >= 0, got {depth}")
    if depth == 0:
        yield from map(prepare, items)
        return
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry) -> bool:
        while not stop.is_set():
            try:
                ready.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((prepare(item), None)):
                    return
        except BaseException as error:  # noqa: BLE001 (handed to the consumer, who raises it)
            put((None, error))
            return
        put((_END, None))

    worker = threading.Thread(target=produce, name="tinyfast-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            value, error = ready.get()
            if error is not None:
                raise error
            if value is _END:
                return
            yield value
    finally:
        stop.set()
        worker.join()


class DeviceUpload:
    """Moves lists of CPU tensors to `device` for `prefetch_to_device`. On CUDA: `start` (in the background
    thread) pins them and copies them on a side stream without blocking; `finish` (in the caller's thread)
    makes the current stream wait for that copy and tells the allocator the tensors are used there. Elsewhere
    `start` is `.to(device)` and `finish` returns its input."""

    def __init__(self, device: torch.device | str):
        self.device = torch.device(device)
        self.stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None

    def start(self, tensors: list[torch.Tensor]):
        if self.stream is None:
            return [tensor.to(self.device) for tensor in tensors], None
        pinned = [tensor if tensor.is_cuda else tensor.pin_memory() for tensor in tensors]
        with torch.cuda.stream(self.stream):
            moved = [tensor.to(self.device, non_blocking=True) for tensor in pinned]
            copied = torch.cuda.Event()
            copied.record(self.stream)
        return moved, copied

    def finish(self, started) -> list[torch.Tensor]:
        moved, copied = started
        if copied is None:
            return moved
        current = torch.cuda.current_stream(self.device)
        current.wait_event(copied)
        for tensor in moved:
            tensor.record_stream(current)
        return moved


def prefetch_to_device(
    batches: Iterable[tuple[Key, list[torch.Tensor]]], device: torch.device | str, depth: int = 2
) -> Iterator[tuple[Key, list[torch.Tensor]]]:
    """`(key, tensors)` batches (e.g. decoded images) with their tensors on `device`, read and uploaded in a
    background thread up to `depth` batches ahead (see `prefetch` and `DeviceUpload`)."""
    upload = DeviceUpload(device)
    for key, started in prefetch(batches, lambda batch: (batch[0], upload.start(batch[1])), depth):
        yield key, upload.finish(started)
