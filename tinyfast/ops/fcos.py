"""FCOS target assignment (mmdetection 2.x ``FCOSHead.get_targets``) without points x GTs tensors."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import torch

from tinyfast.ops import _library  # noqa: F401  (registers torch.ops.tinyfast)

_INTEGER_DTYPES = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8)


def fcos_targets(
    points: torch.Tensor,
    level_sizes: Sequence[int],
    strides: Sequence[float],
    regress_ranges: Sequence[tuple[float, float]],
    gt_boxes: torch.Tensor,
    gt_labels: torch.Tensor,
    gt_counts: torch.Tensor,
    num_classes: int,
    center_sampling_radius: float | None = 1.5,
    norm_on_bbox: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Label and (l, t, r, b) regression target of every point of every image, as FCOS assigns them.

    ``points`` ``[P, 2]`` (x, y) are one image's points, all levels concatenated level by level
    (``level_sizes`` points each, with ``strides`` and ``regress_ranges`` ``(lo, hi)`` per level); every
    image of the batch has the same points. ``gt_boxes`` ``[G, 4]`` (x1, y1, x2, y2) and ``gt_labels`` ``[G]``
    in ``[0, num_classes)`` are all images' GTs concatenated, ``gt_counts`` ``[B]`` GTs per image.

    Returns ``labels`` ``[B, P]`` int64 (``num_classes`` = background) and ``bbox_targets`` ``[B, P, 4]``
    (float32; float64 when ``points`` or ``gt_boxes`` is float64), divided by the level's stride when
    ``norm_on_bbox``, and 0 for background points.

    The rules are mmdetection 2.x's ``_get_target_single``, with its arithmetic (bit-identical results):
    a GT is a candidate for a point when the point is strictly inside the GT box, or with center sampling
    (``center_sampling_radius`` > 0) strictly inside the box of half-side ``stride * radius`` around the GT
    centre clipped to the GT box, and when ``lo <= max(l, t, r, b) <= hi`` (mmdetection's code; both ends
    inclusive). The candidate of smallest area wins, ties to the GT that comes first; no candidate means
    background. As in mmdetection (areas of non-candidates set to 1e8), a GT of area >= 1e8 is never
    assigned. Zero-area and inverted GTs contain no point.

    Memory is proportional to points + GTs: the GTs of each image are bucketed on a uniform grid and a
    point reads only the GTs of its cell. Bad input raises ``ValueError`` naming the argument.
    """
    lo, hi = _check(points, level_sizes, strides, regress_ranges, gt_boxes, gt_labels, gt_counts, num_classes)
    radius = 0.0 if center_sampling_radius is None else float(center_sampling_radius)
    if math.isnan(radius):
        raise ValueError("fcos_targets: center_sampling_radius must be a number or None, got nan")
    return torch.ops.tinyfast.fcos_targets(
        points,
        [int(size) for size in level_sizes],
        [float(stride) for stride in strides],
        lo,
        hi,
        gt_boxes,
        gt_labels.to(torch.int64),
        gt_counts.to(torch.int64),
        int(num_classes),
        radius,
        bool(norm_on_bbox),
    )


def _check(points, level_sizes, strides, regress_ranges, gt_boxes, gt_labels, gt_counts, num_classes):
    """Structure checks; value checks (finite boxes, labels in range, counts) run in the op."""
    for name, value in (("points", points), ("gt_boxes", gt_boxes), ("gt_labels", gt_labels)):
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"fcos_targets: {name} must be a torch.Tensor, got {type(value).__name__}")
    if not isinstance(gt_counts, torch.Tensor):
        raise ValueError(f"fcos_targets: gt_counts must be a torch.Tensor, got {type(gt_counts).__name__}")
    if points.dim() != 2 or points.shape[1] != 2 or not points.is_floating_point():
        raise ValueError(
            f"fcos_targets: points must be a floating [P, 2] tensor, got {points.dtype} {list(points.shape)}"
        )
    if gt_boxes.dim() != 2 or gt_boxes.shape[1] != 4 or not gt_boxes.is_floating_point():
        raise ValueError(
            "fcos_targets: gt_boxes must be a floating [G, 4] tensor, "
            f"got {gt_boxes.dtype} {list(gt_boxes.shape)}"
        )
    if gt_labels.shape != (gt_boxes.shape[0],) or gt_labels.dtype not in _INTEGER_DTYPES:
        raise ValueError(
            f"fcos_targets: gt_labels must be an integer [G] tensor with G = {gt_boxes.shape[0]} (gt_boxes), "
            f"got {gt_labels.dtype} {list(gt_labels.shape)}"
        )
    if gt_counts.dim() != 1 or gt_counts.dtype not in _INTEGER_DTYPES:
        raise ValueError(
            "fcos_targets: gt_counts must be an integer [B] tensor, "
            f"got {gt_counts.dtype} {list(gt_counts.shape)}"
        )
    devices = {points.device, gt_boxes.device, gt_labels.device, gt_counts.device}
    if len(devices) != 1:
        raise ValueError(
            "fcos_targets: points, gt_boxes, gt_labels and gt_counts must be on one device, got "
            f"{points.device}, {gt_boxes.device}, {gt_labels.device} and {gt_counts.device}"
        )
    level_sizes, strides, regress_ranges = list(level_sizes), list(strides), list(regress_ranges)
    if not all(_is_int(size) and size >= 0 for size in level_sizes):
        raise ValueError(f"fcos_targets: level_sizes must be ints >= 0, got {level_sizes}")
    if sum(level_sizes) != points.shape[0]:
        raise ValueError(
            f"fcos_targets: level_sizes must sum to P = {points.shape[0]}, got {sum(level_sizes)}"
        )
    if len(strides) != len(level_sizes):
        raise ValueError(
            f"fcos_targets: strides must have one entry per level ({len(level_sizes)}), got {strides}"
        )
    if not all(_is_real(s) and math.isfinite(s) and s > 0 for s in strides):
        raise ValueError(f"fcos_targets: strides must be finite numbers > 0, got {strides}")
    if len(regress_ranges) != len(level_sizes) or not all(
        len(pair) == 2 and all(_is_real(v) and not math.isnan(v) for v in pair) for pair in regress_ranges
    ):
        raise ValueError(
            "fcos_targets: regress_ranges must hold one (lo, hi) pair of numbers per level "
            f"({len(level_sizes)}), got {regress_ranges}"
        )
    if not _is_int(num_classes) or num_classes < 1:
        raise ValueError(f"fcos_targets: num_classes must be an int >= 1, got {num_classes!r}")
    return [float(pair[0]) for pair in regress_ranges], [float(pair[1]) for pair in regress_ranges]


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


@torch.library.register_fake("tinyfast::fcos_targets")
def _fcos_targets_fake(
    points,
    level_sizes,
    strides,
    regress_lo,
    regress_hi,
    gt_boxes,
    gt_labels,
    gt_counts,
    num_classes,
    radius,
    norm,
):
    torch._check(points.dim() == 2 and points.shape[1] == 2)
    torch._check(gt_boxes.dim() == 2 and gt_boxes.shape[1] == 4)
    use_double = torch.float64 in (points.dtype, gt_boxes.dtype)
    num_images, num_points = gt_counts.shape[0], points.shape[0]
    labels = gt_labels.new_empty((num_images, num_points), dtype=torch.int64)
    targets = points.new_empty(
        (num_images, num_points, 4), dtype=torch.float64 if use_double else torch.float32
    )
    return labels, targets
