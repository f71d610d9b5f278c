"""tinyfast.ops.point_nms against the plain greedy reference on the TinyPerson merge workload as points.

The workload's boxes become points (their centres) with sizes sqrt(area), one group per image, merged at a
distance of half a size: what the merge of a point localiser's tiles sees. pytest-benchmark times our op;
the reference (NumPy, each kept point compared with the rest of its group, O(kept x N) as torchvision's CPU
box NMS) is timed in the same test with a best-of-few timer, and the speed-up goes to ``extra_info`` and the
end-of-run summary. With ``--benchmark-disable`` (CI) or ``TINYFAST_BENCH_QUICK=1`` a one-image workload
runs once, as a smoke test. The reference runs on the CPU for both devices.
"""

import pytest
import torch

from bench.timing import DEVICES, best_time, quick_mode, synchronized
from bench.workload import tiny_person_merge
from tests.reference.point_nms import reference_point_nms
from tinyfast.ops import point_nms

DISTANCE_THRESHOLD = 0.5
FULL = {"num_images": 8, "rounds": 5, "baseline_runs": 1}
QUICK = {"num_images": 1, "rounds": 1, "baseline_runs": 1}


@pytest.mark.parametrize("device", DEVICES)
def test_point_nms_tiny_person_merge(benchmark, summary_line, device):
    settings = QUICK if quick_mode(benchmark) else FULL
    workload = tiny_person_merge(num_images=settings["num_images"])
    boxes = workload.boxes
    points = (boxes[:, :2] + boxes[:, 2:]) / 2
    sizes = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).sqrt()
    arguments = (points, workload.scores, workload.idxs, sizes, DISTANCE_THRESHOLD)
    on_device = tuple(value.to(device) if isinstance(value, torch.Tensor) else value for value in arguments)
    ours = synchronized(lambda: point_nms(*on_device), device)

    ours()  # warm-up (lazy initialisation, CUDA context) outside both timings
    baseline_keep, baseline_s = best_time(lambda: reference_point_nms(*arguments), settings["baseline_runs"])
    keep = benchmark.pedantic(ours, rounds=settings["rounds"], warmup_rounds=0)
    ours_s = benchmark.stats.stats.min if benchmark.enabled else best_time(ours, 1)[1]

    assert torch.equal(keep.cpu(), baseline_keep)
    benchmark.extra_info.update(
        points=len(points),
        kept=len(keep),
        baseline_s=baseline_s,
        ours_s=ours_s,
        ratio=baseline_s / ours_s,
    )
    summary_line(
        f"point_nms {device}, {len(points)} points, {workload.idxs.unique().numel()} images: "
        f"ours {ours_s * 1e3:.1f} ms, reference {baseline_s * 1e3:.1f} ms, ratio {baseline_s / ours_s:.2f}x"
    )
