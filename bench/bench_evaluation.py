"""TinyPerson evaluation speed: ours against pycocotools' COCOeval (evaluate + accumulate), same run.

The full size is the issue's, 800 images x 40 GTs x 1000 detections (pycocotools takes minutes). With
``--benchmark-disable`` (CI) or ``TINYFAST_BENCH_QUICK=1`` (the default when ``CI=true``) a small set runs
once.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from bench.timing import best_time, quick_mode
from tinyfast.evaluation import EvalParams, evaluate
from tinyfast.evaluation.synthetic import synthetic_dataset

FULL = {"images": 800, "gts_per_image": 40, "dets_per_image": 1000, "rounds": 3}
QUICK = {"images": 10, "gts_per_image": 20, "dets_per_image": 200, "rounds": 1}


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
        _, seconds = best_time(lambda: (evaluator.evaluate(), evaluator.accumulate()), runs=1)
        return seconds


def test_evaluation_speed_vs_pycocotools(benchmark, summary_line):
    size = QUICK if quick_mode(benchmark) else FULL
    dets_per_image = size["dets_per_image"]
    gt, results = synthetic_dataset(size["images"], size["gts_per_image"], dets_per_image, seed=0)
    params = EvalParams.tinyperson(dets_per_image)
    durations = []

    def ours() -> dict[str, float]:
        metrics, seconds = best_time(lambda: evaluate(gt, results, dets_per_image, miss_rate=False), runs=1)
        durations.append(seconds)
        return metrics

    metrics = benchmark.pedantic(ours, rounds=size["rounds"], iterations=1)
    baseline_s = _pycocotools_seconds(gt, results, params)
    ours_s = min(durations)
    described = f"{size['images']} images x {size['gts_per_image']} GTs x {dets_per_image} detections"
    ratio = baseline_s / ours_s
    benchmark.extra_info.update(size=described, baseline_s=baseline_s, ours_s=ours_s, ratio=ratio)
    summary_line(
        f"evaluate, {described}: ours {ours_s:.2f} s (parsing included), "
        f"pycocotools evaluate+accumulate {baseline_s:.2f} s, ratio {ratio:.1f}x"
    )
    assert 0 <= metrics["AP50_tiny"] <= 1
