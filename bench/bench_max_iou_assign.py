"""tinyfast.ops.max_iou_assign against the dense mmdetection 2.x assigner (tests/reference/max_iou_assign.py).

Workload: one TinyPerson-like 640x512 image, RetinaNet anchors on P2-P6 (strides 4..64, octave_base_scale 2,
3 scales, ratios 0.5/1/2: 245,520 anchors), 800 tiny GTs and 8 ignore regions; RetinaNet's assigner (pos
0.5, neg 0.4, low-quality matches, ignore IoF 0.5). pytest-benchmark times our op; the dense reference is
timed in the same test (best of a few runs). Peak memory of one call of each is measured separately, outside
the timings, as in bench_fcos_targets.py (``bench.timing.peak_bytes``).

Speed-up (``ratio``) and memory ratio (``memory_ratio``, dense / ours) go to ``extra_info`` and the end-of-run
summary, with the size of one GTs x anchors float32 IoU matrix (``dense_gxn_bytes``), for scale. With
``--benchmark-disable`` (CI) or ``TINYFAST_BENCH_QUICK=1`` (the default when ``CI=true``) a small workload
(a 320x256 image, 200 GTs) runs once, as a smoke test.
"""

import pytest
import torch

from bench.timing import DEVICES, best_time, peak_bytes, quick_mode, synchronized
from bench.workload import RETINANET_ASSIGNER, tiny_person_retinanet
from tests.reference.max_iou_assign import dense_max_iou_assign
from tinyfast.ops import max_iou_assign

FULL = {"gts_per_image": 800, "height": 512, "width": 640, "rounds": 5, "baseline_runs": 2}
QUICK = {"gts_per_image": 200, "height": 256, "width": 320, "rounds": 1, "baseline_runs": 1}


@pytest.mark.parametrize("device", DEVICES)
def test_max_iou_assign_tiny_person(benchmark, summary_line, device):
    settings = QUICK if quick_mode(benchmark) else FULL
    workload = tiny_person_retinanet(
        gts_per_image=settings["gts_per_image"],
        height=settings["height"],
        width=settings["width"],
        device=device,
    )
    arguments, keywords = workload.arguments(), workload.ignore_arguments() | RETINANET_ASSIGNER
    ours = synchronized(lambda: max_iou_assign(*arguments, **keywords), device)
    theirs = synchronized(lambda: dense_max_iou_assign(*arguments, **keywords), device)

    ours()  # warm-up (lazy initialisation, CUDA context) outside both timings
    (expected_assigned, expected_max_iou), baseline_s = best_time(theirs, settings["baseline_runs"])
    assigned, max_iou = benchmark.pedantic(ours, rounds=settings["rounds"], warmup_rounds=0)
    ours_s = benchmark.stats.stats.min if benchmark.enabled else best_time(ours, 1)[1]
    ours_bytes, dense_bytes = peak_bytes(ours, device), peak_bytes(theirs, device)

    assert torch.equal(assigned, expected_assigned) and torch.equal(max_iou, expected_max_iou)
    assert (assigned >= 0).any() and (assigned == -2).any()
    num_anchors, num_gts = len(workload.boxes), len(workload.gt_boxes)
    gxn_bytes = num_anchors * num_gts * 4
    benchmark.extra_info.update(
        anchors=num_anchors,
        gts=num_gts,
        baseline_s=baseline_s,
        ours_s=ours_s,
        ratio=baseline_s / ours_s,
        ours_peak_bytes=ours_bytes,
        dense_peak_bytes=dense_bytes,
        memory_ratio=dense_bytes / ours_bytes,
        dense_gxn_bytes=gxn_bytes,
    )
    summary_line(
        f"max_iou_assign {device}, {num_anchors} anchors, {num_gts} GTs: ours {ours_s * 1e3:.1f} ms, "
        f"dense {baseline_s * 1e3:.0f} ms, ratio {baseline_s / ours_s:.1f}x; peak memory ours "
        f"{ours_bytes / 2**20:.1f} MiB, dense {dense_bytes / 2**20:.0f} MiB, memory_ratio "
        f"{dense_bytes / ours_bytes:.0f}x (one G x N float32 IoU matrix: {gxn_bytes / 2**20:.0f} MiB)"
    )
