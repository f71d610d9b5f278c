"""tinyfast.ops.fcos_targets against the dense mmdetection 2.x reference (tests/reference/fcos_targets.py).

Workload: 2 TinyPerson-like 640x512 images, strides 4..64 (27,280 points), 800 tiny GTs each, center
sampling 1.5, norm_on_bbox. pytest-benchmark times our op; the dense reference is timed in the same test
(best of a few runs). Peak memory of one call of each is measured separately, outside the timings:

- CPU: the peak of bytes allocated by torch's CPU allocator during the call (the running sum of the
  allocation and free events that ``torch.profiler`` records with ``profile_memory=True``);
- CUDA: ``torch.cuda.max_memory_allocated`` above what was allocated before the call.

Speed-up (``ratio``) and memory ratio (``memory_ratio``, dense / ours) go to ``extra_info`` and the end-of-run
summary, with the size of one points x GTs x 4 tensor of the reference (``dense_pxgx4_bytes``), for scale.
With ``--benchmark-disable`` (CI) or ``TINYFAST_BENCH_QUICK=1`` (the default when ``CI=true``) a small
workload (1 image of 320x256, 200 GTs) runs once, as a smoke test.
"""

import pytest
import torch

from bench.timing import DEVICES, best_time, peak_bytes, quick_mode, synchronized
from bench.workload import tiny_person_fcos
from tests.reference.fcos_targets import dense_fcos_targets
from tinyfast.ops import fcos_targets

FULL = {"num_images": 2, "gts_per_image": 800, "height": 512, "width": 640, "rounds": 5, "baseline_runs": 2}
QUICK = {"num_images": 1, "gts_per_image": 200, "height": 256, "width": 320, "rounds": 1, "baseline_runs": 1}


@pytest.mark.parametrize("device", DEVICES)
def test_fcos_targets_tiny_person(benchmark, summary_line, device):
    settings = QUICK if quick_mode(benchmark) else FULL
    workload = tiny_person_fcos(
        num_images=settings["num_images"],
        gts_per_image=settings["gts_per_image"],
        height=settings["height"],
        width=settings["width"],
        device=device,
    )
    arguments = workload.arguments()
    ours = synchronized(lambda: fcos_targets(*arguments), device)
    theirs = synchronized(lambda: dense_fcos_targets(*arguments), device)

    ours()  # warm-up (lazy initialisation, CUDA context) outside both timings
    (expected_labels, expected_targets), baseline_s = best_time(theirs, settings["baseline_runs"])
    labels, targets = benchmark.pedantic(ours, rounds=settings["rounds"], warmup_rounds=0)
    ours_s = benchmark.stats.stats.min if benchmark.enabled else best_time(ours, 1)[1]
    ours_bytes, dense_bytes = peak_bytes(ours, device), peak_bytes(theirs, device)

    assert torch.equal(labels, expected_labels) and torch.equal(targets, expected_targets)
    num_points, num_gts = len(workload.points), len(workload.gt_boxes)
    pxgx4_bytes = num_points * settings["gts_per_image"] * 4 * 4
    benchmark.extra_info.update(
        points=num_points,
        gts=num_gts,
        images=settings["num_images"],
        baseline_s=baseline_s,
        ours_s=ours_s,
        ratio=baseline_s / ours_s,
        ours_peak_bytes=ours_bytes,
        dense_peak_bytes=dense_bytes,
        memory_ratio=dense_bytes / ours_bytes,
        dense_pxgx4_bytes=pxgx4_bytes,
    )
    summary_line(
        f"fcos_targets {device}, {settings['num_images']} images x {num_points} points, {num_gts} GTs: "
        f"ours {ours_s * 1e3:.1f} ms, dense {baseline_s * 1e3:.0f} ms, ratio {baseline_s / ours_s:.1f}x; "
        f"peak memory ours {ours_bytes / 2**20:.1f} MiB, dense {dense_bytes / 2**20:.0f} MiB, "
        f"memory_ratio {dense_bytes / ours_bytes:.0f}x (one P x G x 4 tensor: {pxgx4_bytes / 2**20:.0f} MiB)"
    )
