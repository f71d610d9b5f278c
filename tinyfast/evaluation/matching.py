"""The COCO greedy match, run for every image, size range and threshold at once.

pycocotools matches each image's detections one by one in score order (a detection takes the
best-IoU GT still free; regular GTs before ignored ones). That order matters only inside an image,
so here step ``r`` handles the detection ranked ``r`` of *every* image, for every (range, threshold)
"lane", with numpy. Only intersecting pairs exist (IoU 0 never reaches a threshold > 0), so a step
costs the number of such pairs, and the number of steps is the largest detection count of an image.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

UNMATCHED, MATCHED, IGNORED = 0, 1, 2


@dataclass(frozen=True)
class RankedPairs:
    """Intersecting (detection, GT) pairs sorted by (detection rank, image, IoU, GT index).

    A (rank, image) segment holds the pairs of one detection, in pycocotools' preference order: among
    the free candidates of a kind the last one wins (best IoU; on equal IoU the later GT, as its ``>=``).
    """

    det: np.ndarray
    gt: np.ndarray
    iou: np.ndarray  # COCO IoU (intersection over detection area for crowd GTs)
    intersection: np.ndarray
    rank: np.ndarray  # rank of the pair's detection in its image

    @classmethod
    def build(
        cls,
        det: np.ndarray,
        gt: np.ndarray,
        iou: np.ndarray,
        intersection: np.ndarray,
        det_rank: np.ndarray,
        det_image: np.ndarray,
        n_images: int,
    ) -> RankedPairs:
        # Pairs arrive ordered by (image, detection, GT): stable sorts keep the GT order among equal keys.
        order = np.argsort(iou, kind="stable")
        order = order[np.argsort((det_rank * n_images + det_image)[det[order]], kind="stable")]
        return cls(det[order], gt[order], iou[order], intersection[order], det_rank[det[order]])

    def subset(self, keep: np.ndarray) -> RankedPairs:
        return RankedPairs(
            self.det[keep], self.gt[keep], self.iou[keep], self.intersection[keep], self.rank[keep]
        )

    def segment_starts(self) -> np.ndarray:
        """Offsets of the first pair of each detection (segments are contiguous)."""
        return _run_starts(self.det)

    def steps(self, segment_starts: np.ndarray) -> Iterator[tuple[int, int, int, int]]:
        """(first pair, end pair, first segment, end segment) of each detection rank."""
        step_starts = _run_starts(self.rank)
        step_bounds = np.append(step_starts, len(self.rank)).tolist()
        segment_bounds = np.searchsorted(segment_starts, step_bounds).tolist()
        for i in range(len(step_starts)):
            yield step_bounds[i], step_bounds[i + 1], segment_bounds[i], segment_bounds[i + 1]


def _run_starts(values: np.ndarray) -> np.ndarray:
    """Offsets where a run of equal values starts."""
    return np.flatnonzero(np.concatenate(([True], values[1:] != values[:-1]))[: len(values)])


def greedy_match(
    pairs: RankedPairs,
    n_dets: int,
    thresholds: np.ndarray,
    *,
    gt_regular: np.ndarray,
    gt_reusable: np.ndarray,
    regular_overlap: np.ndarray,
    ignored_overlap: np.ndarray,
    matched_code: np.ndarray,
    det_active: np.ndarray | None = None,
    absorb_overlap: np.ndarray | None = None,
) -> np.ndarray:
    """Outcome [S, T, n_dets] of every detection in every lane: UNMATCHED, MATCHED or IGNORED.

    ``thresholds`` [T] are the comparison values (pycocotools' ``min(t, 1 - 1e-10)``). Per set s (a size
    range): ``gt_regular[s]`` marks the GTs that count (the others are ignored and tried last),
    ``gt_reusable[s]`` those that may match several detections, ``det_active[s]`` the detections that take
    part (the others are IGNORED). ``regular_overlap``/``ignored_overlap`` [P] are what is compared with
    the threshold for regular/ignored GTs. ``matched_code`` [n_gt] is the outcome of a match to each
    regular GT. With ``absorb_overlap`` [P], a detection left without candidate is IGNORED when its best
    value over ignored GTs reaches the threshold, and that GT (the first on ties) is then taken
    (TinyPerson's IoD rule).
    """
    n_sets, n_gt = gt_regular.shape
    outcome = np.zeros((n_sets, len(thresholds), n_dets), np.int8)
    threshold = np.asarray(thresholds, np.float64)[None, :, None]
    regular = gt_regular[:, pairs.gt]
    candidate = np.where(regular, regular_overlap, ignored_overlap)[:, None, :] >= threshold
    if det_active is not None:
        candidate &= det_active[:, None, pairs.det]
    useful = candidate.any(axis=(0, 1))
    absorb_value = None
    if absorb_overlap is not None:
        absorb_value = np.where(regular, -np.inf, absorb_overlap)
        useful |= (absorb_value >= threshold.min()).any(axis=0)
    # Pairs that can neither match nor absorb change nothing: drop them before the sequential part.
    pairs = pairs.subset(useful)
    regular, candidate = regular[:, useful], candidate[:, :, useful]
    reusable = gt_reusable[:, pairs.gt]
    segment_starts = pairs.segment_starts()
    segment_det = pairs.det[segment_starts]
    if absorb_value is not None:
        absorb_target, absorbable = _absorb_targets(
            absorb_value[:, useful], pairs.gt, segment_starts, threshold, det_active, segment_det, n_gt
        )

    taken = np.zeros((n_sets, len(thresholds), n_gt), bool)
    for start, stop, first_segment, end_segment in pairs.steps(segment_starts):
        gt = pairs.gt[start:stop]
        free = candidate[:, :, start:stop] & (reusable[:, None, start:stop] | ~taken[:, :, gt])
        starts = segment_starts[first_segment:end_segment] - start
        position = np.arange(stop - start, dtype=np.int32)
        step_regular = regular[:, None, start:stop]
        last_regular = np.maximum.reduceat(np.where(free & step_regular, position, -1), starts, axis=2)
        last_ignored = np.maximum.reduceat(np.where(free & ~step_regular, position, -1), starts, axis=2)
        choice = np.where(last_regular >= 0, last_regular, last_ignored)
        lane_set, lane_threshold, segment = np.nonzero(choice >= 0)
        chosen = choice[lane_set, lane_threshold, segment]
        taken[lane_set, lane_threshold, gt[chosen]] = True
        outcome[lane_set, lane_threshold, segment_det[first_segment + segment]] = np.where(
            step_regular[lane_set, 0, chosen], matched_code[gt[chosen]], IGNORED
        )
        if absorb_value is not None:
            lane_set, lane_threshold, segment = np.nonzero(
                (choice < 0) & absorbable[:, :, first_segment:end_segment]
            )
            segment += first_segment
            taken[lane_set, lane_threshold, absorb_target[lane_set, segment]] = True
            outcome[lane_set, lane_threshold, segment_det[segment]] = IGNORED
    if det_active is not None:
        outcome[np.broadcast_to(~det_active[:, None, :], outcome.shape)] = IGNORED
    return outcome


def _absorb_targets(
    value: np.ndarray,
    gt: np.ndarray,
    segment_starts: np.ndarray,
    threshold: np.ndarray,
    det_active: np.ndarray | None,
    segment_det: np.ndarray,
    n_gt: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Per (set, detection): the ignored GT the fallback would take, and per threshold whether it may."""
    if len(gt) == 0:
        return np.zeros((value.shape[0], 0), np.int64), np.zeros((value.shape[0], threshold.size, 0), bool)
    best = np.maximum.reduceat(value, segment_starts, axis=1)
    segment_of_pair = np.repeat(np.arange(len(segment_starts)), np.diff(np.append(segment_starts, len(gt))))
    is_best = (value == best[:, segment_of_pair]) & (value > -np.inf)
    # Like np.argmax in the reference: the first ignored GT (in file order) among equal best values.
    target = np.minimum.reduceat(np.where(is_best, gt, n_gt), segment_starts, axis=1)
    absorbable = best[:, None, :] >= threshold
    if det_active is not None:
        absorbable &= det_active[:, None, segment_det]
    return target, absorbable
