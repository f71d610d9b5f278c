"""Point NMS: greedy suppression of point detections by distance, relative to a size per point."""

from __future__ import annotations

import torch

from tinyfast.ops import _arguments, _library  # noqa: F401  (_library registers torch.ops.tinyfast)

_OP = "point_nms"


def point_nms(
    points: torch.Tensor,
    scores: torch.Tensor,
    idxs: torch.Tensor,
    sizes: torch.Tensor,
    distance_threshold: float,
    max_per_group: int | None = None,
) -> torch.Tensor:
    """Greedy NMS of points within each group of ``idxs``; returns int64 indices of kept points by decreasing
    score.

    ``points`` is ``[N, 2]`` (x, y), ``scores`` ``[N]``, ``idxs`` ``[N]`` integer group ids (for example
    image * num_classes + class, as ``batched_nms``), ``sizes`` ``[N]`` a size estimate per point (the
    object's scale, in the points' units; >= 0). Points are visited by decreasing score, ties by lower index;
    a point is kept unless a kept point of its group lies strictly within ``distance_threshold`` times the
    *kept* point's size of it. So each kept point suppresses a disk of radius
    ``r = distance_threshold * size`` around itself: a large object's point suppresses the nearby points a
    small one would not.

    Exactly (``csrc/point_math.h``, in float64 whatever the input type): with ``r`` the kept point's radius
    and ``(dx, dy)`` the offset of the other point, suppressed iff ``|dx| < r``, ``|dy| < r`` and
    ``(dx / r)^2 + (dy / r)^2 < 1``, which no finite input overflows. A size of 0 (or a threshold of 0)
    suppresses nothing; with an infinite threshold the best point of each group with a size > 0 suppresses
    every point after it. ``max_per_group`` keeps at most that many points per group (the first ones after
    suppression).

    The work is proportional to the points and their kept neighbours, not to N^2: on the CPU each group is
    ranked by a radix sort of its scores and a point reads only the kept points whose disks cover its grid
    cell (cells of two median radii); on the GPU points are swept by x and only points closer in x than the
    group's largest radius are compared.

    Non-finite points, scores or sizes, negative sizes, and a threshold that is NaN or negative raise
    ``ValueError``, as ``batched_nms`` does for boxes and scores.
    """
    return torch.ops.tinyfast.point_nms(
        _arguments.tensor(_OP, "points", points),
        _arguments.tensor(_OP, "scores", scores),
        _arguments.integer_tensor(_OP, "idxs", idxs),
        _arguments.tensor(_OP, "sizes", sizes),
        _arguments.real(_OP, "distance_threshold", distance_threshold),
        _arguments.optional_integer(_OP, "max_per_group", max_per_group),
    )


@torch.library.register_fake("tinyfast::point_nms")
def _point_nms_fake(points, scores, idxs, sizes, distance_threshold, max_per_group):
    _arguments.check_one_device(_OP, {"points": points, "scores": scores, "idxs": idxs, "sizes": sizes})
    torch._check(points.dim() == 2 and points.shape[1] == 2)
    torch._check(scores.shape[0] == points.shape[0])
    torch._check(idxs.shape[0] == points.shape[0])
    torch._check(sizes.shape[0] == points.shape[0])
    kept = torch.library.get_ctx().new_dynamic_size()
    return points.new_empty((kept,), dtype=torch.int64)
