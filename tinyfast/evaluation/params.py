"""Evaluation parameters: the TinyPerson protocol's and stock COCO's."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Built exactly as pycocotools builds them (np.arange would drift in the last bits).
RECALL_THRESHOLDS: tuple[float, ...] = tuple(np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1))
COCO_IOU_THRESHOLDS: tuple[float, ...] = tuple(np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1))

TINYPERSON_AREA_RANGES: tuple[tuple[str, float, float], ...] = (
    ("all", 1**2, 1e5**2),
    ("tiny", 1**2, 20**2),
    ("tiny1", 1**2, 8**2),
    ("tiny2", 8**2, 12**2),
    ("tiny3", 12**2, 20**2),
    ("small", 20**2, 32**2),
    ("reasonable", 32**2, 1e5**2),
)
COCO_AREA_RANGES: tuple[tuple[str, float, float], ...] = (
    ("all", 0**2, 1e5**2),
    ("small", 0**2, 32**2),
    ("medium", 32**2, 96**2),
    ("large", 96**2, 1e5**2),
)
TINYPERSON_SIZE_RANGES: tuple[tuple[str, float, float], ...] = (
    ("tiny1", 2, 8),
    ("tiny2", 8, 12),
    ("tiny3", 12, 20),
    ("tiny", 2, 20),
    ("small", 20, 32),
    ("all", -1, 1e5**2),
)


def _check_thresholds(name: str, values: tuple[float, ...]) -> None:
    if not values or any(not 0.0 < v <= 1.0 for v in values):
        raise ValueError(f"{name} must be a non-empty sequence of values in (0, 1], got {values}")


@dataclass(frozen=True)
class EvalParams:
    """What the AP/AR evaluation measures. The defaults are the TinyPerson protocol's (docs/protocol.md §4).

    ``area_ranges`` are ``(label, lo, hi)`` on the GT ``area`` field and on detection ``w*h``, both ends
    inclusive. ``ignore_flags`` are the annotation keys that, when truthy, make a GT an ignore region
    (``iscrowd`` always does). ``iod_fallback`` enables the TinyPerson rule that lets an ignore region
    absorb detections it covers (intersection over detection area >= the IoU threshold).
    """

    iou_thresholds: tuple[float, ...] = (0.25, 0.5, 0.75)
    area_ranges: tuple[tuple[str, float, float], ...] = TINYPERSON_AREA_RANGES
    max_dets: tuple[int, ...] = (1000,)
    recall_thresholds: tuple[float, ...] = RECALL_THRESHOLDS
    ignore_flags: tuple[str, ...] = ("ignore", "uncertain")
    iod_fallback: bool = True

    def __post_init__(self) -> None:
        _check_thresholds("iou_thresholds", self.iou_thresholds)
        if not self.max_dets or any(int(m) != m or m < 1 for m in self.max_dets):
            raise ValueError(f"max_dets must be positive integers, got {self.max_dets}")
        # pycocotools sorts maxDets; the last one is the number of detections kept per image.
        object.__setattr__(self, "max_dets", tuple(sorted(int(m) for m in self.max_dets)))
        if not self.area_ranges or any(lo > hi for _, lo, hi in self.area_ranges):
            raise ValueError(f"area_ranges must be (label, lo, hi) with lo <= hi, got {self.area_ranges}")

    @classmethod
    def tinyperson(cls, max_dets: int = 1000) -> EvalParams:
        return cls(max_dets=(max_dets,))

    @classmethod
    def coco(cls) -> EvalParams:
        """Stock pycocotools ``COCOeval`` bbox parameters and rules (no ignore flags, no IoD fallback)."""
        return cls(
            iou_thresholds=COCO_IOU_THRESHOLDS,
            area_ranges=COCO_AREA_RANGES,
            max_dets=(1, 10, 100),
            ignore_flags=(),
            iod_fallback=False,
        )


@dataclass(frozen=True)
class MissRateParams:
    """Caltech-style log-average miss rate per size setup (``(label, lo, hi)`` on ``sqrt(area)``)."""

    size_ranges: tuple[tuple[str, float, float], ...] = TINYPERSON_SIZE_RANGES
    iou_threshold: float = 0.5
    fppi_thresholds: tuple[float, ...] = field(default_factory=lambda: tuple(np.logspace(-2, 0, 9)))
    max_dets: int = 1000
    # Detections smaller than lo / margin or not smaller than hi * margin are dropped before matching.
    size_margin: float = 1.25

    def __post_init__(self) -> None:
        _check_thresholds("iou_threshold", (self.iou_threshold,))
        if int(self.max_dets) != self.max_dets or self.max_dets < 1:
            raise ValueError(f"max_dets must be a positive integer, got {self.max_dets}")
