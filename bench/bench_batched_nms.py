"""tinyfast.ops.batched_nms against torchvision.ops.batched_nms on the TinyPerson merge workload.

pytest-benchmark times our op; torchvision is timed in the same test with a best-of-few timer, and the
speed-up (torchvision time / our time, both best runs) goes to ``extra_info`` and the end-of-run summary.
With ``--benchmark-disable`` (CI) or ``TINYFAST_BENCH_QUICK=1`` (the default when ``CI=true``) a one-image
workload runs once, as a smoke test.
"""

import pytest
import torch
import torchvision

from bench.timing import DEVICES, best_time, quick_mode, synchronized
from bench.workload import tiny_person_merge
from tinyfast.ops import batched_nms

IOU_THRESHOLD = 0.5
FULL = {"num_images": 8, "rounds": 5, "baseline_runs": 3}
QUICK = {"num_images": 1, "rounds": 1, "baseline_runs": 1}


@pytest.mark.parametrize("device", DEVICES)
def test_batched_nms_tiny_person_merge(benchmark, summary_line, device):
    settings = QUICK if quick_mode(benchmark) else FULL
    workload = tiny_person_merge(num_images=settings["num_images"], device=device)
    arguments = (workload.boxes, workload.scores, workload.idxs, IOU_THRESHOLD)
    ours = synchronized(lambda: batched_nms(*arguments), device)
    theirs = synchronized(lambda: torchvision.ops.batched_nms(*arguments), device)

    ours()  # warm-up (lazy initialisation, CUDA context) outside both timings
    baseline_keep, baseline_s = best_time(theirs, settings["baseline_runs"])
    keep = benchmark.pedantic(ours, rounds=settings["rounds"], warmup_rounds=0)
    ours_s = benchmark.stats.stats.min if benchmark.enabled else best_time(ours, 1)[1]

    assert torch.equal(keep, baseline_keep)
    benchmark.extra_info.update(
        boxes=len(workload.boxes),
        kept=len(keep),
        baseline_s=baseline_s,
        ours_s=ours_s,
        ratio=baseline_s / ours_s,
    )
    summary_line(
        f"batched_nms {device}, {len(workload.boxes)} boxes, {workload.idxs.unique().numel()} images: "
        f"ours {ours_s * 1e3:.1f} ms, torchvision {baseline_s * 1e3:.1f} ms, ratio {baseline_s / ours_s:.2f}x"
    )
