"""FCOS target assignment (mmdetection 2.x ``FCOSHead.get_targets``) without points x GTs tensors."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

from tinyfast.ops import _arguments, _library  # noqa: F401  (_library registers torch.ops.tinyfast)

_OP = "fcos_targets"


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
    background. Exactly as mmdetection (the areas of non-candidates set to INF = 1e8, the minimum over the
    image's GTs, background where it equals INF): a GT of area exactly 1e8 is never assigned, a GT of area
    above 1e8 only where every GT of its image is a candidate for the point. Zero-area and inverted GTs
    contain no point.

    Memory is proportional to points + GTs: the GTs of each image are bucketed on a uniform grid and a
    point reads only the GTs of its cell. Bad input raises ``ValueError`` naming the argument.
    """
    radius = center_sampling_radius
    pairs = list(regress_ranges) if isinstance(regress_ranges, Iterable) else None
    if pairs is None or not all(isinstance(pair, Sequence) and len(pair) == 2 for pair in pairs):
        _arguments.fail(
            _OP, f"regress_ranges must hold one (lo, hi) pair of numbers per level, got {regress_ranges}"
        )
    return torch.ops.tinyfast.fcos_targets(
        _arguments.tensor(_OP, "points", points),
        _arguments.integers(_OP, "level_sizes", level_sizes),
        _arguments.reals(_OP, "strides", strides),
        _arguments.reals(_OP, "regress_ranges", [lo for lo, _ in pairs]),
        _arguments.reals(_OP, "regress_ranges", [hi for _, hi in pairs]),
        _arguments.tensor(_OP, "gt_boxes", gt_boxes),
        _arguments.integer_tensor(_OP, "gt_labels", gt_labels),
        _arguments.integer_tensor(_OP, "gt_counts", gt_counts),
        _arguments.integer(_OP, "num_classes", num_classes),
        0.0 if radius is None else _arguments.real(_OP, "center_sampling_radius", radius),
        _arguments.boolean(_OP, "norm_on_bbox", norm_on_bbox),
    )


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
    tensors = {"points": points, "gt_boxes": gt_boxes, "gt_labels": gt_labels, "gt_counts": gt_counts}
    _arguments.check_one_device(_OP, tensors)
    torch._check(points.dim() == 2 and points.shape[1] == 2)
    torch._check(gt_boxes.dim() == 2 and gt_boxes.shape[1] == 4)
    use_double = torch.float64 in (points.dtype, gt_boxes.dtype)
    num_images, num_points = gt_counts.shape[0], points.shape[0]
    labels = gt_labels.new_empty((num_images, num_points), dtype=torch.int64)
    targets = points.new_empty(
        (num_images, num_points, 4), dtype=torch.float64 if use_double else torch.float32
    )
    return labels, targets
