"""Reading ahead (`tinyfast.utils.prefetch`): the same items in the same order as reading in the loop, errors
at the item they belong to, the thread stopped when the loop ends early, and the upload to the device."""

import threading
import time

import pytest
import torch
from cuda_marks import cuda_test

from tinyfast.utils.prefetch import DeviceUpload, prefetch, prefetch_to_device


def live_prefetch_threads() -> int:
    return sum(thread.name == "tinyfast-prefetch" for thread in threading.enumerate())


@pytest.mark.parametrize("depth", [0, 1, 3])
def test_prefetch_gives_every_prepared_item_in_order(depth):
    assert list(prefetch(range(50), lambda item: item * item, depth)) == [k * k for k in range(50)]
    assert list(prefetch([], depth=depth)) == []
    assert live_prefetch_threads() == 0


def test_prefetch_reads_ahead_in_another_thread_at_most_depth_items():
    started, threads = [], set()

    def slow_items():
        for item in range(6):
            threads.add(threading.current_thread().name)
            started.append(item)
            yield item

    reader = prefetch(slow_items(), depth=2)
    assert next(reader) == 0
    deadline = time.monotonic() + 60  # the reader fills its queue meanwhile (however loaded the machine)
    while len(started) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)  # then waits
    # Item 0 taken, 1 and 2 queued, 3 prepared and waiting for room: never more.
    assert started == [0, 1, 2, 3]
    assert list(reader) == [1, 2, 3, 4, 5] and threads == {"tinyfast-prefetch"}


def test_an_error_while_reading_is_raised_at_its_item():
    def items():
        yield 1
        yield 2
        raise ValueError("image 3 does not decode")

    reader = prefetch(items(), depth=2)
    assert next(reader) == 1 and next(reader) == 2
    with pytest.raises(ValueError, match="image 3 does not decode"):
        next(reader)
    assert live_prefetch_threads() == 0
    with pytest.raises(ZeroDivisionError):
        list(prefetch([1, 0], lambda item: 1 / item, depth=1))
    with pytest.raises(ValueError, match="depth"):
        list(prefetch([1], depth=-1))


def test_leaving_the_loop_early_stops_the_reader():
    reader = prefetch(iter(range(10**9)), depth=2)
    assert next(reader) == 0
    reader.close()
    assert live_prefetch_threads() == 0


def test_on_the_cpu_the_batches_arrive_unchanged():
    images = [torch.rand(3, 8, 10), torch.rand(3, 5, 4)]
    ((key, moved),) = list(prefetch_to_device([("batch", images)], "cpu"))
    assert key == "batch" and all(a is b for a, b in zip(moved, images, strict=True))
    upload = DeviceUpload("cpu")
    assert upload.stream is None and upload.finish(upload.start(images))[1] is images[1]


@cuda_test
def test_on_the_gpu_batches_are_uploaded_on_a_side_stream_before_use():
    images = [torch.randint(0, 255, (3, 1080, 1920), dtype=torch.uint8) for _ in range(3)]
    batches = [(k, [image]) for k, image in enumerate(images)]
    for key, (moved,) in prefetch_to_device(batches, "cuda", depth=2):
        assert moved.is_cuda
        assert torch.equal(moved.float().mul(2).cpu(), images[key].float().mul(2))  # the copy is complete
