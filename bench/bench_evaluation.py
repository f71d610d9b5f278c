"""TinyPerson evaluation speed: ours against pycocotools' COCOeval (evaluate + accumulate), same run.

Default size is small (CI runs it once with --benchmark-disable). ``TINYFAST_BENCH_FULL=1`` runs the issue's
size, 800 images x 40 GTs x 1000 detections (pycocotools then takes several minutes).
"""

from __future__ import annotations

import contextlib
import io
import os
import time

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from tinyfast.evaluation import EvalParams, evaluate
from tinyfast.evaluation.synthetic import synthetic_dataset

FULL = os.environ.get("TINYFAST_BENCH_FULL") == "1"
N_IMAGES, GTS_PER_IMAGE, DETS_PER_IMAGE = (800, 40, 1000) if FULL else (10, 20, 200)


def _pycocotools_seconds(gt: dict, results: list, params: EvalParams) -> float:
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes([dict(r) for r in results])
        evaluator = COCOeval(coco_gt, coco_dt, "bbox")
        evaluator.params.iouThrs = np.array(params.iou_thresholds)
        evaluator.params.maxDets = list(params.max_dets)
        evaluator.params.areaRng = [[lo, hi] for _, lo, hi in params.area_ranges]
        evaluator.params.areaRngLbl = [label for label, _, _ in params.area_ranges]
        start = time.perf_counter()
        evaluator.evaluate()
        evaluator.accumulate()
        return time.perf_counter() - start


def test_evaluation_speed_vs_pycocotools(benchmark):
    gt, results = synthetic_dataset(N_IMAGES, GTS_PER_IMAGE, DETS_PER_IMAGE, seed=0)
    params = EvalParams.tinyperson(DETS_PER_IMAGE)
    durations = []

    def ours() -> dict[str, float]:
        start = time.perf_counter()
        metrics = evaluate(gt, results, DETS_PER_IMAGE, miss_rate=False)
        durations.append(time.perf_counter() - start)
        return metrics

    metrics = benchmark.pedantic(ours, rounds=3 if FULL else 1, iterations=1)
    reference_seconds = _pycocotools_seconds(gt, results, params)
    speedup = reference_seconds / min(durations)
    benchmark.extra_info.update(
        size=f"{N_IMAGES} images x {GTS_PER_IMAGE} GTs x {DETS_PER_IMAGE} detections",
        ours_seconds=min(durations),
        pycocotools_seconds=reference_seconds,
        speedup_vs_pycocotools=speedup,
    )
    print(
        f"\n{N_IMAGES}x{GTS_PER_IMAGE}x{DETS_PER_IMAGE}: ours {min(durations):.2f} s (parsing included), "
        f"pycocotools evaluate+accumulate {reference_seconds:.2f} s, speedup {speedup:.1f}x"
    )
    assert 0 <= metrics["AP50_tiny"] <= 1
    if FULL:
        assert speedup >= 20
