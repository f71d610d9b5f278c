"""The fast evaluator against plain, loop-by-loop references: stock pycocotools, and the TinyPerson rules
(docs/protocol.md §4) written as a pycocotools ``COCOeval`` subclass the way the reference does it."""

from __future__ import annotations

import contextlib
import copy
import io

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from tinyfast.evaluation import EvalParams, MissRateParams, evaluate, precision_recall
from tinyfast.evaluation.overlaps import intersecting_pairs
from tinyfast.evaluation.synthetic import synthetic_dataset


def _quiet(function, *args):
    with contextlib.redirect_stdout(io.StringIO()):
        return function(*args)


def _coco_pair(gt: dict, results: list) -> tuple[COCO, COCO]:
    coco_gt = _quiet(COCO)
    coco_gt.dataset = copy.deepcopy(gt)
    _quiet(coco_gt.createIndex)
    return coco_gt, _quiet(coco_gt.loadRes, copy.deepcopy(results))


class TinyPersonReferenceEval(COCOeval):
    """TinyPerson's COCOeval: ignore/uncertain flags, inclusive ranges, IoD fallback to ignored GTs."""

    def __init__(self, coco_gt: COCO, coco_dt: COCO, params: EvalParams):
        super().__init__(coco_gt, coco_dt, "bbox")
        self.params.iouThrs = np.array(params.iou_thresholds)
        self.params.recThrs = np.array(params.recall_thresholds)
        self.params.maxDets = list(params.max_dets)
        self.params.areaRng = [[lo, hi] for _, lo, hi in params.area_ranges]
        self.params.areaRngLbl = [label for label, _, _ in params.area_ranges]

    def _prepare(self):
        super()._prepare()
        for gts in self._gts.values():
            for g in gts:
                g["ignore"] = int(
                    bool(g.get("iscrowd", 0)) or bool(g.get("uncertain", 0)) or bool(g.get("_flag", 0))
                )

    def evaluate(self):
        for ann in self.cocoGt.dataset["annotations"]:
            ann["_flag"] = ann.get("ignore", 0)
        super().evaluate()

    def evaluateImg(self, imgId, catId, aRng, maxDet):
        gt = self._gts[imgId, catId]
        dt = self._dts[imgId, catId]
        if len(gt) == 0 and len(dt) == 0:
            return None
        for g in gt:
            g["_ignore"] = 1 if g["ignore"] or g["area"] < aRng[0] or g["area"] > aRng[1] else 0
        gtind = np.argsort([g["_ignore"] for g in gt], kind="mergesort")
        gt = [gt[i] for i in gtind]
        dtind = np.argsort([-d["score"] for d in dt], kind="mergesort")
        dt = [dt[i] for i in dtind[0:maxDet]]
        iscrowd = [int(o["iscrowd"]) for o in gt]
        ious = (
            self.ious[imgId, catId][:, gtind] if len(self.ious[imgId, catId]) > 0 else self.ious[imgId, catId]
        )
        T, G, D = len(self.params.iouThrs), len(gt), len(dt)
        gtm, dtm, dtIg = np.zeros((T, G)), np.zeros((T, D)), np.zeros((T, D))
        gtIg = np.array([g["_ignore"] for g in gt])
        ignored = [i for i, g in enumerate(gt) if g["_ignore"]]
        if len(ious) != 0:
            for tind, t in enumerate(self.params.iouThrs):
                for dind, d in enumerate(dt):
                    iou = min([t, 1 - 1e-10])
                    m = -1
                    for gind in range(G):
                        if gtm[tind, gind] > 0 and not iscrowd[gind]:
                            continue
                        if m > -1 and gtIg[m] == 0 and gtIg[gind] == 1:
                            break
                        if ious[dind, gind] < iou:
                            continue
                        iou = ious[dind, gind]
                        m = gind
                    if m == -1 and self.use_iod and ignored:
                        det_area = d["bbox"][2] * d["bbox"][3]
                        iods = [
                            ious[dind, i] / (1 + ious[dind, i]) * (1 + gt[i]["area"] / det_area)
                            if det_area
                            else np.nan
                            for i in ignored
                        ]
                        best = int(np.argmax(iods))
                        if iods[best] >= iou:
                            m = ignored[best]
                    if m == -1:
                        continue
                    dtIg[tind, dind] = gtIg[m]
                    dtm[tind, dind] = gt[m]["id"]
                    gtm[tind, m] = d["id"]
        out = np.array([d["area"] < aRng[0] or d["area"] > aRng[1] for d in dt]).reshape((1, D))
        dtIg = np.logical_or(dtIg, np.logical_and(dtm == 0, np.repeat(out, T, 0)))
        return {
            "image_id": imgId,
            "category_id": catId,
            "aRng": aRng,
            "maxDet": maxDet,
            "dtIds": [d["id"] for d in dt],
            "gtIds": [g["id"] for g in gt],
            "dtMatches": dtm,
            "gtMatches": gtm,
            "dtScores": [d["score"] for d in dt],
            "gtIgnore": gtIg,
            "dtIgnore": dtIg,
        }

    use_iod = True


def reference_precision_recall(gt, results, params: EvalParams) -> tuple[np.ndarray, np.ndarray]:
    coco_gt, coco_dt = _coco_pair(gt, results)
    evaluator = TinyPersonReferenceEval(coco_gt, coco_dt, params)
    _quiet(evaluator.evaluate)
    _quiet(evaluator.accumulate)
    return evaluator.eval["precision"], evaluator.eval["recall"]


def reference_miss_rates(gt: dict, results: list, params: MissRateParams) -> dict[str, float]:
    """CityPersons' evaluation (loop per image and detection) on sqrt(area), TinyPerson's setups."""
    images = sorted(image["id"] for image in gt["images"])
    categories = sorted(category["id"] for category in gt["categories"])
    thr = min(params.iou_threshold, 1 - 1e-10)
    fppi_thresholds = np.asarray(params.fppi_thresholds)
    out = {}
    for label, lo, hi in params.size_ranges:
        mrs = []
        for category in categories:
            scores, tps, fps, n_positives = [], [], [], 0
            for image in images:
                gts = [
                    g for g in gt["annotations"] if g["image_id"] == image and g["category_id"] == category
                ]
                dts = [d for d in results if d["image_id"] == image and d["category_id"] == category]
                ignore = [
                    bool(g.get("iscrowd") or g.get("ignore") or g.get("uncertain"))
                    or not lo <= np.sqrt(g["area"]) <= hi
                    for g in gts
                ]
                gtind = np.argsort(ignore, kind="mergesort")
                gts, ignore = [gts[i] for i in gtind], [ignore[i] for i in gtind]
                n_positives += ignore.count(False)
                dts = [
                    dts[i]
                    for i in np.argsort([-d["score"] for d in dts], kind="mergesort")[: params.max_dets]
                ]
                dts = [
                    d
                    for d in dts
                    if lo / params.size_margin
                    <= np.sqrt(d["bbox"][2] * d["bbox"][3])
                    < hi * params.size_margin
                ]
                taken = [False] * len(gts)
                for d in dts:
                    dx, dy, dw, dh = d["bbox"]
                    best, best_iou, best_regular = -1, thr, None
                    for gind, g in enumerate(gts):
                        if taken[gind]:
                            continue
                        if best_regular is not None and ignore[gind]:
                            break
                        gx, gy, gw, gh = g["bbox"]
                        w = min(dx + dw, gx + gw) - max(dx, gx)
                        h = min(dy + dh, gy + gh) - max(dy, gy)
                        iou = 0.0
                        if w > 0 and h > 0:
                            iou = w * h / (dw * dh if ignore[gind] else dw * dh + gw * gh - w * h)
                        if iou < best_iou:
                            continue
                        best, best_iou, best_regular = gind, iou, not ignore[gind]
                    scores.append(d["score"])
                    if best >= 0 and not ignore[best]:
                        taken[best] = True
                        tps.append(gts[best]["id"] != 0)
                        fps.append(gts[best]["id"] == 0)
                    else:
                        tps.append(False)
                        fps.append(best < 0)
            if n_positives == 0:
                continue
            order = np.argsort(-np.array(scores, dtype=float), kind="mergesort")
            recall = np.cumsum(np.array(tps, bool)[order]) / n_positives
            fppi = np.cumsum(np.array(fps, bool)[order]) / len(images)
            q = np.zeros(len(fppi_thresholds))
            for i, f in enumerate(fppi_thresholds):
                reached = np.flatnonzero(fppi <= f)
                q[i] = recall[reached[-1]] if len(reached) else 0.0
            mrs.append(q)
        with np.errstate(divide="ignore"):
            out[f"MR_{label}"] = float(np.exp(np.mean(np.log(1 - np.concatenate(mrs))))) if mrs else -1.0
    return out


def _assert_same(ours: tuple[np.ndarray, np.ndarray], reference: tuple[np.ndarray, np.ndarray]) -> None:
    np.testing.assert_allclose(ours[0], reference[0], rtol=0, atol=1e-9)
    np.testing.assert_allclose(ours[1], reference[1], rtol=0, atol=1e-9)


FLAGGED_SETS = [
    dict(seed=1),
    dict(seed=2, crowd_fraction=0.1, score_decimals=1),
    dict(seed=3, empty_image_fraction=0.3, zero_area_fraction=0.1, score_decimals=2),
    dict(seed=4, n_categories=2, ignore_fraction=0.4, uncertain_fraction=0.3, crowd_fraction=0.05),
    dict(seed=5, ignore_fraction=1.0, score_decimals=0),
]


@pytest.mark.parametrize("options", FLAGGED_SETS)
def test_equals_tinyperson_reference_with_flags(options):
    gt, results = synthetic_dataset(12, 12, 60, **options)
    params = EvalParams(max_dets=(40,))
    _assert_same(precision_recall(gt, results, params), reference_precision_recall(gt, results, params))


def test_equals_tinyperson_reference_with_several_max_dets_and_ids_from_zero():
    gt, results = synthetic_dataset(8, 10, 50, seed=6, crowd_fraction=0.1, score_decimals=1)
    for annotation in gt["annotations"]:
        annotation["id"] -= 1  # a match to annotation id 0 counts as no match in pycocotools
    params = EvalParams(max_dets=(5, 20, 50))
    _assert_same(precision_recall(gt, results, params), reference_precision_recall(gt, results, params))


def test_equals_reference_when_area_field_differs_from_box():
    gt, results = synthetic_dataset(10, 10, 50, seed=7, ignore_fraction=0.3, score_decimals=1)
    rng = np.random.default_rng(0)
    for annotation in gt["annotations"]:
        annotation["area"] *= float(rng.uniform(0.5, 1.5))
    params = EvalParams(max_dets=(50,))
    _assert_same(precision_recall(gt, results, params), reference_precision_recall(gt, results, params))


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_equals_stock_pycocotools_with_coco_params(seed):
    gt, results = synthetic_dataset(
        15,
        10,
        80,
        seed=seed,
        n_categories=2,
        ignore_fraction=0,
        uncertain_fraction=0,
        crowd_fraction=0.1 if seed == 13 else 0.0,
        score_decimals=2 if seed == 12 else None,
    )
    for annotation in gt["annotations"]:  # spread the sizes over COCO's small/medium/large
        annotation["bbox"][2:] = [side * 4 for side in annotation["bbox"][2:]]
        annotation["area"] = annotation["bbox"][2] * annotation["bbox"][3]
    for result in results:
        result["bbox"][2:] = [side * 4 for side in result["bbox"][2:]]
    coco_gt, coco_dt = _coco_pair(gt, results)
    stock = COCOeval(coco_gt, coco_dt, "bbox")
    _quiet(stock.evaluate)
    _quiet(stock.accumulate)
    ours = precision_recall(gt, results, EvalParams.coco())
    _assert_same(ours, (stock.eval["precision"], stock.eval["recall"]))


def test_summary_keys_equal_reference_summary():
    gt, results = synthetic_dataset(10, 10, 50, seed=8)
    params = EvalParams(max_dets=(50,))
    precision, _ = reference_precision_recall(gt, results, params)
    metrics = evaluate(gt, results, max_dets=50, miss_rate=False)
    for t, threshold in enumerate(params.iou_thresholds):
        for a, (label, _, _) in enumerate(params.area_ranges):
            values = precision[t, :, :, a, 0]
            expected = np.mean(values[values > -1]) if (values > -1).any() else -1
            assert metrics[f"AP{round(threshold * 100)}_{label}"] == pytest.approx(expected, abs=1e-12)
    assert len(metrics) == 2 * 3 * 7


@pytest.mark.parametrize(
    "options", [dict(seed=21), dict(seed=22, crowd_fraction=0.1, score_decimals=1, n_categories=2)]
)
def test_miss_rate_equals_loop_reference(options):
    gt, results = synthetic_dataset(10, 12, 60, **options)
    for annotation in gt["annotations"][::3]:  # give the size setups some larger GTs
        annotation["bbox"][2:] = [side * 1.6 for side in annotation["bbox"][2:]]
        annotation["area"] = annotation["bbox"][2] * annotation["bbox"][3]
    params = MissRateParams(max_dets=40)
    ours = evaluate(gt, results, max_dets=40, miss_rate_params=params)
    reference = reference_miss_rates(gt, results, params)
    for key, value in reference.items():
        assert ours[key] == pytest.approx(value, abs=1e-9), key


def _pair_set(pairs: tuple[np.ndarray, np.ndarray, np.ndarray]) -> set[tuple[int, int, float]]:
    return set(zip(pairs[0].tolist(), pairs[1].tolist(), pairs[2].tolist(), strict=True))


def test_overlaps_do_not_depend_on_the_chunk_size():
    rng = np.random.default_rng(0)
    n_images = 30
    det_image = np.sort(rng.integers(0, n_images, 900))
    gt_image = np.sort(rng.integers(0, n_images, 200))
    det_boxes = np.column_stack([rng.uniform(0, 200, (900, 2)), rng.uniform(0, 40, (900, 2))])
    gt_boxes = np.column_stack([rng.uniform(0, 200, (200, 2)), rng.uniform(0, 40, (200, 2))])
    whole = intersecting_pairs(det_boxes, det_image, gt_boxes, gt_image, n_images)
    chunked = intersecting_pairs(det_boxes, det_image, gt_boxes, gt_image, n_images, cell_budget=64)
    assert _pair_set(whole) == _pair_set(chunked) and len(whole[0]) > 100
    # Every intersecting pair is found, with pycocotools' IoU arithmetic (bit for bit).
    for image in range(n_images):
        dets, gts = np.flatnonzero(det_image == image), np.flatnonzero(gt_image == image)
        if len(dets) == 0 or len(gts) == 0:
            continue
        ious = np.asarray(mask_utils.iou(det_boxes[dets].tolist(), gt_boxes[gts].tolist(), [0] * len(gts)))
        found = {(d, g): inter for d, g, inter in zip(*whole, strict=True) if det_image[d] == image}
        for i, d in enumerate(dets):
            for j, g in enumerate(gts):
                inter = found.get((d, g), 0.0)
                area_d, area_g = det_boxes[d, 2] * det_boxes[d, 3], gt_boxes[g, 2] * gt_boxes[g, 3]
                assert (inter / (area_d + area_g - inter) if inter else 0.0) == ious[i, j]
