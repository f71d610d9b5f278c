"""Point localisation AP/AR, as the reference's location evaluator (CPR, CVPR 2022) defines them.

The reference is ``huicv/evaluation/location_evaluation.py`` of ucas-vg's PointTinyBenchmark. Its rule,
kept here: per category and image, detections are taken by decreasing score (the best ``max_dets``); a
predicted point ``p`` matches a GT box (centre ``c``, size ``w x h``) when its normalised distance
``sqrt(((px - cx) / w)^2 + ((py - cy) / h)^2)`` is at most ``tau``, the nearest free regular GT first, a
GT matched once; detections of equal score are matched together, the closest (detection, GT) pair first.
A detection left unmatched is ignored (neither TP nor FP) when some ignored GT lies within ``tau``
(one may absorb any number); otherwise it is a false positive. GTs are ignored when ``iscrowd`` or an
ignore flag is truthy, or when their box area ``w * h`` is out of the size range ``[lo, hi)`` (the
reference's half-open ranges on the box, not the ``area`` field; the range values are the TinyPerson
ones the box evaluation uses). Then AP is pycocotools' 101-point interpolated precision and AR the recall
reached, averaged over the categories that have a GT in the range (-1 when none has), as the box
evaluation does.

Where this differs from the reference, on purpose:

- Centres are ``x + w / 2`` (the coarse-point generator's and COCO's continuous convention); the
  reference uses ``x + (w - 1) / 2`` for GTs and for box results alike, so box results (whose centre
  shift cancels) give the same outcome, and point results are half a pixel off in its convention.
- The comparison is ``d^2 <= tau^2`` in float64 (inclusive); the reference rounds coordinates to float32
  and compares ``1 / (1 + d^2) >= 1 / (1 + tau^2)``: outcomes differ only within rounding of the boundary.
- AP: pycocotools' precision envelope (precision made non-increasing before sampling), as the box
  evaluation; the reference samples the raw precision at the first detection reaching each recall point,
  which is never higher (AR is the same).
- Ties: equal scores are exact equality (the reference groups scores within 1e-8 of a group's first);
  among equal distances the detection first in the results list, then the GT first in the file, wins
  (the reference's order within a tie is numpy's unstable argsort). The ``max_dets`` cut keeps list order
  among equal scores.
- Ignore flags are the box evaluation's: ``iscrowd``, ``ignore`` and ``uncertain``. The reference means
  to read ``iscrowd`` and ``ignore``, but its ``get_ignore`` overwrites ``ignore`` with ``iscrowd`` before
  reading it, so there a GT flagged only ``ignore`` counts as a positive.
- A category without any GT in a range gives -1 and is left out of the mean (the reference gives 1 or 0).

Zero-width or zero-height GT boxes have no defined normalised distance: they match no point and absorb
none, and they are never in a range starting at area 1 (so they are ignored GTs of every TinyPerson range).
A distance that overflows to inf matches nothing, whatever tau.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from tinyfast.evaluation.accumulate import _precision_at_recalls
from tinyfast.evaluation.coco_format import (
    GroundTruth,
    JsonLike,
    ResultsLike,
    _column,
    _is_real,
    _naming_the_file,
    _number_array,
    _positions,
    _read_json,
    load_ground_truth,
)
from tinyfast.evaluation.matching import _run_starts
from tinyfast.evaluation.params import RECALL_THRESHOLDS, TINYPERSON_AREA_RANGES

DEFAULT_MATCH_THRESHOLDS: tuple[float, ...] = (0.5, 1.0, 2.0)
DEFAULT_POINT_MAX_DETS = 200


@dataclass(frozen=True)
class PointDetections:
    """A COCO results list of points, in list order."""

    image_index: np.ndarray  # [n] int64
    category_index: np.ndarray  # [n] int64
    points: np.ndarray  # [n, 2] float64
    scores: np.ndarray  # [n] float64


def _is_numbers(value: object, length: int) -> bool:
    return (
        isinstance(value, Sequence)
        and not isinstance(value, str | bytes)
        and len(value) == length
        and all(_is_real(type(v)) for v in value)
    )


def _result_point(result: Mapping, index: int, where: str) -> tuple[float, float]:
    """``point``, or the centre of ``bbox`` when the entry has no point."""
    if "point" in result:
        point = result["point"]
        if not _is_numbers(point, 2):
            raise ValueError(f"{where}[{index}].point = {point!r} is not [x, y]")
        x, y = float(point[0]), float(point[1])
        if not (np.isfinite(x) and np.isfinite(y)):
            raise ValueError(f"{where}[{index}].point = {list(point)} has a non-finite value")
        return x, y
    if "bbox" not in result:
        raise ValueError(f"{where}[{index}] has neither 'point' nor 'bbox'")
    box = result["bbox"]
    if not _is_numbers(box, 4):
        raise ValueError(f"{where}[{index}].bbox = {box!r} is not [x, y, w, h]")
    x, y, w, h = (float(v) for v in box)
    if not np.isfinite([x, y, w, h]).all():
        raise ValueError(f"{where}[{index}].bbox = {list(box)} has a non-finite value")
    if w < 0 or h < 0:
        raise ValueError(f"{where}[{index}].bbox = {list(box)} has a negative width or height")
    return x + w / 2, y + h / 2


def load_point_results(source: ResultsLike, ground_truth: GroundTruth) -> PointDetections:
    """Read a COCO results list of ``{image_id, category_id, point: [x, y], score}`` (path or list).

    An entry without ``point`` uses the centre of its ``bbox``. Bad entries raise ValueError naming the
    entry and field: unknown image or category, a missing field, a NaN score, a non-finite point.
    """
    results = _read_json(source, "results")
    try:
        return _point_detections(results, ground_truth)
    except ValueError as error:
        raise _naming_the_file(source, error) from None


def _point_detections(results, ground_truth: GroundTruth) -> PointDetections:
    if not isinstance(results, Sequence) or isinstance(results, str | bytes):
        raise ValueError("results must be a list of {image_id, category_id, point, score}")
    where = "results"
    scores = _number_array(_column(results, "score", where), "score", where)
    if np.isnan(scores).any():
        raise ValueError(f"{where}[{int(np.flatnonzero(np.isnan(scores))[0])}].score is NaN")
    points = np.array([_result_point(r, i, where) for i, r in enumerate(results)], np.float64).reshape(-1, 2)
    return PointDetections(
        image_index=_positions(
            _column(results, "image_id", where), ground_truth.image_ids, "image_id", where
        ),
        category_index=_positions(
            _column(results, "category_id", where), ground_truth.category_ids, "category_id", where
        ),
        points=points,
        scores=scores,
    )


def _check_arguments(
    match_thresholds: Sequence[float], max_dets: int, area_ranges: Sequence[tuple[str, float, float]]
) -> tuple[float, ...]:
    thresholds = tuple(float(t) for t in match_thresholds)
    if not thresholds or any(not (np.isfinite(t) and t > 0) for t in thresholds):
        raise ValueError(f"match_thresholds must be positive finite numbers, got {tuple(match_thresholds)}")
    if isinstance(max_dets, bool) or not isinstance(max_dets, int | np.integer) or max_dets < 1:
        raise ValueError(f"max_dets must be a positive integer, got {max_dets!r}")
    if not area_ranges or any(len(r) != 3 or not r[1] <= r[2] for r in area_ranges):
        raise ValueError(f"area_ranges must be (label, lo, hi) with lo <= hi, got {tuple(area_ranges)}")
    return thresholds


@dataclass(frozen=True)
class _Pairs:
    """(detection, GT) pairs of the same image and category within the largest tau, in matching order."""

    det: np.ndarray
    gt: np.ndarray
    distance_sq: np.ndarray
    group: np.ndarray  # category * n_images + image

    def subset(self, keep: np.ndarray) -> _Pairs:
        return _Pairs(self.det[keep], self.gt[keep], self.distance_sq[keep], self.group[keep])


def _normalised_distance_sq(points: np.ndarray, centres: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """[D, G] squared distances, per axis in units of the GT's width and height; inf for a zero-size GT."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        dx = (points[:, None, 0] - centres[None, :, 0]) / sizes[None, :, 0]
        dy = (points[:, None, 1] - centres[None, :, 1]) / sizes[None, :, 1]
        distance_sq = dx * dx + dy * dy
    return np.where((sizes > 0).all(axis=1)[None, :], distance_sq, np.inf)


def _candidate_pairs(
    det_points: np.ndarray,
    det_group: np.ndarray,
    gt_centres: np.ndarray,
    gt_sizes: np.ndarray,
    gt_group: np.ndarray,
    max_distance_sq: float,
) -> _Pairs:
    """Pairs within ``max_distance_sq``, found one (image, category) at a time; both inputs group-sorted."""
    dets, gts, values = [], [], []
    groups = np.intersect1d(det_group, gt_group)
    det_bounds = np.searchsorted(det_group, np.stack([groups, groups + 1]))
    gt_bounds = np.searchsorted(gt_group, np.stack([groups, groups + 1]))
    for d0, d1, g0, g1 in zip(*det_bounds.tolist(), *gt_bounds.tolist(), strict=True):
        distance_sq = _normalised_distance_sq(det_points[d0:d1], gt_centres[g0:g1], gt_sizes[g0:g1])
        # A distance that overflows to inf never matches, whatever tau.
        det, gt = np.nonzero((distance_sq <= max_distance_sq) & np.isfinite(distance_sq))
        dets.append(det + d0)
        gts.append(gt + g0)
        values.append(distance_sq[det, gt])
    if not dets:
        empty = np.zeros(0, np.int64)
        return _Pairs(empty, empty, np.zeros(0), empty)
    det, gt = np.concatenate(dets), np.concatenate(gts)
    return _Pairs(det, gt, np.concatenate(values), det_group[det])


def _greedy_match(pairs: _Pairs, eligible: np.ndarray, n_dets: int, n_gts: int) -> np.ndarray:
    """matched [A, T, n_dets]: one greedy pass over the pairs of each group, all groups and lanes at once.

    ``pairs`` are in matching order within each group; a pair is taken in lane (a, t) when it is
    ``eligible`` there and neither its detection nor its GT is taken yet. Step k handles the k-th pair of
    every group (distinct groups never share a detection or a GT).
    """
    n_ranges, n_thresholds = eligible.shape[:2]
    det_free = np.ones((n_ranges, n_thresholds, n_dets), bool)
    gt_free = np.ones((n_ranges, n_thresholds, n_gts), bool)
    starts = _run_starts(pairs.group)
    group_start = np.repeat(starts, np.diff(np.append(starts, len(pairs.group))))
    step = np.arange(len(pairs.group)) - group_start
    order = np.argsort(step, kind="stable")
    det, gt, eligible = pairs.det[order], pairs.gt[order], eligible[:, :, order]
    bounds = np.append(_run_starts(step[order]), len(order)).tolist()
    for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
        d, g = det[start:stop], gt[start:stop]
        take = eligible[:, :, start:stop] & det_free[:, :, d] & gt_free[:, :, g]
        det_free[:, :, d] &= ~take
        gt_free[:, :, g] &= ~take
    return ~det_free


@dataclass(frozen=True)
class PointOutcome:
    """What the match decided, over the kept detections sorted by (category, image, score rank)."""

    matched: np.ndarray  # [A, T, n] bool: a true positive in (size range, threshold) lane
    ignored: np.ndarray  # [A, T, n] bool: unmatched but within tau of an ignored GT
    result_index: np.ndarray  # [n] position in the results list
    category: np.ndarray  # [n] category index
    scores: np.ndarray  # [n]
    positives: np.ndarray  # [A, K] regular GTs per size range and category


def point_match(
    ground_truth: GroundTruth,
    detections: PointDetections,
    match_thresholds: Sequence[float],
    max_dets: int,
    area_ranges: Sequence[tuple[str, float, float]],
) -> PointOutcome:
    """The outcome of every kept detection in every (range, threshold) lane."""
    n_images = len(ground_truth.image_ids)
    # Each (category, image)'s detections by decreasing score, equal scores in list order; the best max_dets.
    order = np.argsort(-detections.scores, kind="stable")
    group = (detections.category_index * n_images + detections.image_index)[order]
    by_group = np.argsort(group, kind="stable")
    order, group = order[by_group], group[by_group]
    rank = np.arange(len(group)) - np.searchsorted(group, group, side="left")
    order, group, rank = order[rank < max_dets], group[rank < max_dets], rank[rank < max_dets]
    scores = detections.scores[order]
    # Equal scores in a group are matched together: they share the rank of the first of them.
    tie_start = np.concatenate(([True], (group[1:] != group[:-1]) | (scores[1:] != scores[:-1])))
    tie_rank = rank[np.maximum.accumulate(np.where(tie_start, np.arange(len(rank)), 0))]

    gt_order = np.argsort(ground_truth.category_index * n_images + ground_truth.image_index, kind="stable")
    gt_group = (ground_truth.category_index * n_images + ground_truth.image_index)[gt_order]
    boxes = ground_truth.boxes[gt_order]
    gt_sizes = boxes[:, 2:]
    gt_centres = boxes[:, :2] + gt_sizes / 2
    gt_areas = gt_sizes[:, 0] * gt_sizes[:, 1]
    lo = np.array([r[1] for r in area_ranges], np.float64)[:, None]
    hi = np.array([r[2] for r in area_ranges], np.float64)[:, None]
    regular = ~ground_truth.ignore[gt_order][None, :] & (gt_areas >= lo) & (gt_areas < hi)

    with np.errstate(over="ignore"):  # tau^2 may overflow to inf: then every finite distance is within
        thresholds_sq = np.square(np.asarray(match_thresholds, np.float64))
    pairs = _candidate_pairs(
        detections.points[order], group, gt_centres, gt_sizes, gt_group, float(thresholds_sq.max())
    )
    # Matching order in a group: score rank (ties together), then distance, list order, GT file order.
    pairs = pairs.subset(
        np.lexsort((pairs.gt, rank[pairs.det], pairs.distance_sq, tie_rank[pairs.det], pairs.group))
    )
    within = pairs.distance_sq[None, None, :] <= thresholds_sq[None, :, None]
    pair_regular = regular[:, None, pairs.gt]
    useful = pair_regular.any(axis=(0, 1))
    matched = _greedy_match(
        pairs.subset(useful), (pair_regular & within)[:, :, useful], len(order), len(gt_order)
    )
    near_ignored = np.zeros_like(matched)
    lane_range, lane_threshold, pair = np.nonzero(~pair_regular & within)
    near_ignored[lane_range, lane_threshold, pairs.det[pair]] = True

    n_categories = len(ground_truth.category_ids)
    gt_category = ground_truth.category_index[gt_order]
    return PointOutcome(
        matched=matched,
        ignored=~matched & near_ignored,
        result_index=order,
        category=detections.category_index[order],
        scores=scores,
        positives=np.stack([np.bincount(gt_category[r], minlength=n_categories) for r in regular]),
    )


def point_precision_recall(
    gt: JsonLike,
    results: ResultsLike,
    match_thresholds: Sequence[float] = DEFAULT_MATCH_THRESHOLDS,
    max_dets: int = DEFAULT_POINT_MAX_DETS,
    *,
    area_ranges: Sequence[tuple[str, float, float]] = TINYPERSON_AREA_RANGES,
    ignore_flags: Sequence[str] = ("ignore", "uncertain"),
) -> tuple[np.ndarray, np.ndarray]:
    """precision [T, R, K, A] (101 recall points) and recall [T, K, A]; -1 where a category has no GT."""
    thresholds = _check_arguments(match_thresholds, max_dets, area_ranges)
    ground_truth = load_ground_truth(gt, tuple(ignore_flags))
    outcome = point_match(
        ground_truth, load_point_results(results, ground_truth), thresholds, int(max_dets), area_ranges
    )
    recall_thresholds = np.asarray(RECALL_THRESHOLDS)
    n_categories, n_ranges = len(ground_truth.category_ids), len(area_ranges)
    precision = -np.ones((len(thresholds), len(recall_thresholds), n_categories, n_ranges))
    recall = -np.ones((len(thresholds), n_categories, n_ranges))
    for k in range(n_categories):
        dets = np.flatnonzero(outcome.category == k)
        # Decreasing score; ties in (image, rank) order, as pycocotools' accumulate.
        dets = dets[np.argsort(-outcome.scores[dets], kind="stable")]
        for a in np.flatnonzero(outcome.positives[:, k]):
            for t in range(len(thresholds)):
                is_tp = outcome.matched[a, t, dets]
                is_fp = ~is_tp & ~outcome.ignored[a, t, dets]
                precision[t, :, k, a], recall[t, k, a] = _precision_at_recalls(
                    is_tp, is_fp, int(outcome.positives[a, k]), recall_thresholds
                )
    return precision, recall


def threshold_label(threshold: float) -> str:
    """How a match threshold appears in the metric keys: ``AP1.0_tiny``, ``AP0.5_all``."""
    return repr(float(threshold))


def evaluate_points(
    gt: JsonLike,
    results: ResultsLike,
    match_thresholds: Sequence[float] = DEFAULT_MATCH_THRESHOLDS,
    max_dets: int = DEFAULT_POINT_MAX_DETS,
    *,
    area_ranges: Sequence[tuple[str, float, float]] = TINYPERSON_AREA_RANGES,
    ignore_flags: Sequence[str] = ("ignore", "uncertain"),
) -> dict[str, float]:
    """Point AP/AR of COCO ``results`` (``point`` [x, y], or ``bbox`` whose centre is used) against ``gt``.

    ``gt``: a COCO json path or dict whose annotations have ``bbox`` (and ``area``, as the box
    evaluation reads it). Keys ``AP{tau}_{range}`` and ``AR{tau}_{range}`` for every match threshold tau
    and size range, e.g. ``AP1.0_tiny``; fractions, -1 when no category has a GT in the range. The rule:
    this module's docstring.
    """
    precision, recall = point_precision_recall(
        gt, results, match_thresholds, max_dets, area_ranges=area_ranges, ignore_flags=ignore_flags
    )
    metrics = {}
    for t, threshold in enumerate(match_thresholds):
        for a, (label, _, _) in enumerate(area_ranges):
            for kind, values in (("AP", precision[t, :, :, a]), ("AR", recall[t, :, a])):
                valid = values[values > -1]
                metrics[f"{kind}{threshold_label(threshold)}_{label}"] = (
                    float(np.mean(valid)) if valid.size else -1.0
                )
    return metrics


def format_point_report(
    metrics: Mapping[str, float],
    match_thresholds: Sequence[float] = DEFAULT_MATCH_THRESHOLDS,
    max_dets: int = DEFAULT_POINT_MAX_DETS,
    area_ranges: Sequence[tuple[str, float, float]] = TINYPERSON_AREA_RANGES,
) -> str:
    """One line per (threshold, range), in the reference's layout: ``(AP/AR) @[ dis=... ] = ap/ar``."""
    lines = []
    for threshold in match_thresholds:
        tau = threshold_label(threshold)
        for label, _, _ in area_ranges:
            lines.append(
                f"Location eval: (AP/AR) @[ dis={tau:<4} | area={label:>10s} | maxDets={max_dets:>4d} ] = "
                f"{metrics[f'AP{tau}_{label}']:0.4f}/{metrics[f'AR{tau}_{label}']:0.4f}"
            )
    return "\n".join(lines)
