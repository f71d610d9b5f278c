"""tinyfast.ops.merge_tiles against (a) the PyTorch + torchvision composition and (b) SAHI's postprocess, on
the TinyPerson merge workload in its raw per-tile form.

As bench_batched_nms.py: pytest-benchmark times our op, the baseline is timed in the same test, the
speed-up goes to ``extra_info`` and the end-of-run summary; quick mode (``--benchmark-disable``, CI) runs a
one-image workload once. SAHI (``sahi.postprocess.combine``) works per image on numpy arrays
``[x1, y1, x2, y2, score, category]``; it gets the boxes already in image coordinates for free, and runs
with its fastest backend on this machine (numpy, numba or torchvision, picked by timing each once; numpy in
quick mode). Its cases are skipped when ``sahi`` is not installed.
"""

import importlib.util

import pytest
import torch
import torchvision

from bench.timing import DEVICES, best_time, quick_mode, synchronized
from bench.workload import IMAGE_SIZE, tiny_person_merge
from tinyfast.ops import merge_tiles

IOU_THRESHOLD = 0.5
MAX_PER_IMAGE = 1000  # the corrected "during" cap
FULL = {"num_images": 8, "rounds": 5, "baseline_runs": 3}
QUICK = {"num_images": 1, "rounds": 1, "baseline_runs": 1}
needs_sahi = pytest.mark.skipif(importlib.util.find_spec("sahi") is None, reason="sahi is not installed")


def merge_arguments(workload):
    num_images = len(workload.tile_image.unique())
    image_sizes = torch.tensor([IMAGE_SIZE], dtype=torch.float32, device=workload.boxes.device)
    return (
        workload.tile_boxes,
        workload.scores,
        torch.zeros_like(workload.tile_index),
        workload.tile_index,
        workload.tiles,
        workload.tile_image,
        image_sizes.repeat(num_images, 1),
    )


def composition(tile_boxes, scores, labels, tile_index, tiles, tile_image, image_sizes):
    """Shift and clip in PyTorch, torchvision's batched NMS per image and class, top-k per image."""
    image = tile_image[tile_index]
    boxes = tile_boxes + tiles[tile_index, :2].repeat(1, 2)
    boxes = torch.minimum(boxes.clamp(min=0), image_sizes[image].repeat(1, 2))
    keep = torchvision.ops.batched_nms(boxes, scores, image * (labels.max() + 1) + labels, IOU_THRESHOLD)
    keep = keep[torch.argsort(image[keep], stable=True)]
    first = torch.searchsorted(image[keep], image[keep])
    keep = keep[torch.arange(len(keep), device=keep.device) - first < MAX_PER_IMAGE]
    return boxes[keep], scores[keep], labels[keep], image[keep]


def ours_and_speedup(benchmark, settings, ours, baseline_s):
    result = benchmark.pedantic(ours, rounds=settings["rounds"], warmup_rounds=0)
    ours_s = benchmark.stats.stats.min if benchmark.enabled else best_time(ours, 1)[1]
    return result, ours_s, baseline_s / ours_s


@pytest.mark.parametrize("device", DEVICES)
def test_merge_tiles_vs_composition(benchmark, summary_line, device):
    settings = QUICK if quick_mode(benchmark) else FULL
    workload = tiny_person_merge(num_images=settings["num_images"], device=device)
    arguments = merge_arguments(workload)
    options = dict(iou_threshold=IOU_THRESHOLD, max_per_image=MAX_PER_IMAGE)
    ours = synchronized(lambda: merge_tiles(*arguments, **options), device)
    theirs = synchronized(lambda: composition(*arguments), device)

    ours()  # warm-up outside both timings
    expected, baseline_s = best_time(theirs, settings["baseline_runs"])
    merged, ours_s, ratio = ours_and_speedup(benchmark, settings, ours, baseline_s)

    for got, want in zip(merged, expected, strict=True):
        assert torch.equal(got, want)
    benchmark.extra_info.update(boxes=len(workload.boxes), kept=len(merged.boxes), baseline_s=baseline_s,
                                ours_s=ours_s, ratio=ratio)  # fmt: skip
    summary_line(
        f"merge_tiles {device}, {len(workload.boxes)} boxes, {settings['num_images']} images: ours "
        f"{ours_s * 1e3:.1f} ms, shift + torchvision batched_nms + top-k {baseline_s * 1e3:.1f} ms, "
        f"ratio {ratio:.1f}x"
    )


def sahi_postprocess(function, per_image):
    return [function(predictions, "IOU", IOU_THRESHOLD) for predictions in per_image]


def fastest_sahi_backend(function, predictions):
    from sahi.postprocess.backends import set_postprocess_backend

    timings = {}
    for backend in ("numpy", "numba", "torchvision"):
        if importlib.util.find_spec(backend) is None:
            continue
        set_postprocess_backend(backend)
        function(predictions[:200], "IOU", IOU_THRESHOLD)  # warm-up (numba compiles)
        timings[backend] = best_time(lambda: function(predictions, "IOU", IOU_THRESHOLD), 1)[1]
    fastest = min(timings, key=timings.get)
    set_postprocess_backend(fastest)
    return fastest


@needs_sahi
@pytest.mark.parametrize("method", ["batched_nms", "batched_greedy_nmm"])
def test_merge_tiles_vs_sahi(benchmark, summary_line, method):
    from sahi.postprocess import combine
    from sahi.postprocess.backends import set_postprocess_backend

    settings = QUICK if quick_mode(benchmark) else FULL
    workload = tiny_person_merge(num_images=settings["num_images"])
    arguments = merge_arguments(workload)
    rows = torch.cat([workload.boxes, workload.scores[:, None], torch.zeros(len(workload.boxes), 1)], dim=1)
    per_image = [rows[workload.idxs == image].numpy() for image in range(settings["num_images"])]
    function = getattr(combine, method)
    if quick_mode(benchmark):
        backend = "numpy"
        set_postprocess_backend(backend)
    else:
        backend = fastest_sahi_backend(function, per_image[0])
    ours = lambda: merge_tiles(*arguments, iou_threshold=IOU_THRESHOLD)  # noqa: E731

    ours()
    kept, baseline_s = best_time(lambda: sahi_postprocess(function, per_image), settings["baseline_runs"])
    merged, ours_s, ratio = ours_and_speedup(benchmark, settings, ours, baseline_s)

    if method == "batched_nms":  # the same greedy NMS at IoU > 0.5 (SAHI: >=, no ties at distinct scores)
        assert len(merged.boxes) == sum(len(k) for k in kept)
    benchmark.extra_info.update(
        boxes=len(workload.boxes), backend=backend, baseline_s=baseline_s, ours_s=ours_s, ratio=ratio
    )
    summary_line(
        f"merge_tiles cpu vs SAHI {method} ({backend}), {len(workload.boxes)} boxes, "
        f"{settings['num_images']} images: ours {ours_s * 1e3:.1f} ms, SAHI {baseline_s * 1e3:.1f} ms, "
        f"ratio {ratio:.1f}x"
    )
