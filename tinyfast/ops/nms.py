"""Tile-aware batched NMS: a drop-in for ``torchvision.ops.batched_nms``."""

from __future__ import annotations

import math
import numbers

import torch

from tinyfast.ops import _library  # noqa: F401  (registers torch.ops.tinyfast)

_INTEGER_DTYPES = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8)


def batched_nms(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    idxs: torch.Tensor,
    iou_threshold: float,
    max_per_group: int | None = None,
) -> torch.Tensor:
    """Greedy NMS within each group of ``idxs``; returns int64 indices of kept boxes by decreasing score.

    Same contract as ``torchvision.ops.batched_nms``: ``boxes`` is ``[N, 4]`` (x1, y1, x2, y2), ``scores``
    ``[N]``, ``idxs`` ``[N]`` integer group ids (for example image * num_classes + class); a box is suppressed
    by a higher-scored kept box of its group when their IoU is > ``iou_threshold``.

    Beyond torchvision:

    - ties in score are ordered deterministically: the lower index first, both for suppression and output;
    - ``max_per_group`` keeps at most that many boxes per group (the first ones after suppression);
    - the work is proportional to the pairs of boxes that overlap, not to N^2: on the CPU each group is
      ranked by a radix sort of its scores and a box is compared only with the kept boxes of the grid cells
      it covers; on the GPU boxes are swept by x1 and only boxes whose x ranges meet are compared.

    Boxes with ``x2 <= x1`` or ``y2 <= y1`` have zero (or, as torchvision computes it, negative) area:
    they never suppress and are never suppressed. float16 and bfloat16 boxes are computed in float32,
    float64 in float64.
    Non-finite boxes or scores, and a threshold that is NaN or negative, raise ``ValueError``.
    """
    _check(boxes, scores, idxs, iou_threshold, max_per_group)
    if idxs.dtype != torch.int64:
        idxs = idxs.to(torch.int64)
    cap = -1 if max_per_group is None else int(max_per_group)
    # The kernels check finiteness where the data lives (on the GPU without an extra sync): ValueError too.
    return torch.ops.tinyfast.batched_nms(boxes, scores, idxs, float(iou_threshold), cap)


def _check(boxes, scores, idxs, iou_threshold, max_per_group) -> None:
    for name, value in (("boxes", boxes), ("scores", scores), ("idxs", idxs)):
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"batched_nms: {name} must be a torch.Tensor, got {type(value).__name__}")
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(f"batched_nms: boxes must have shape [N, 4], got {list(boxes.shape)}")
    if not boxes.is_floating_point():
        raise ValueError(f"batched_nms: boxes must be a floating tensor, got {boxes.dtype}")
    if scores.dim() != 1 or scores.shape[0] != boxes.shape[0]:
        raise ValueError(
            f"batched_nms: scores must have shape [N] with N = {boxes.shape[0]} (boxes), "
            f"got {list(scores.shape)}"
        )
    if not scores.is_floating_point():
        raise ValueError(f"batched_nms: scores must be a floating tensor, got {scores.dtype}")
    if idxs.dim() != 1 or idxs.shape[0] != boxes.shape[0]:
        raise ValueError(
            f"batched_nms: idxs must have shape [N] with N = {boxes.shape[0]} (boxes), got {list(idxs.shape)}"
        )
    if idxs.dtype not in _INTEGER_DTYPES:
        raise ValueError(f"batched_nms: idxs must be an integer tensor, got {idxs.dtype}")
    if not (boxes.device == scores.device == idxs.device):
        raise ValueError(
            "batched_nms: boxes, scores and idxs must be on one device, got "
            f"{boxes.device}, {scores.device} and {idxs.device}"
        )
    if isinstance(iou_threshold, torch.Tensor) and iou_threshold.numel() == 1:
        iou_threshold = iou_threshold.item()
    if not isinstance(iou_threshold, numbers.Real) or math.isnan(iou_threshold) or iou_threshold < 0:
        raise ValueError(f"batched_nms: iou_threshold must be a number >= 0, got {iou_threshold!r}")
    if max_per_group is not None and (isinstance(max_per_group, bool) or int(max_per_group) < 0):
        raise ValueError(f"batched_nms: max_per_group must be None or an int >= 0, got {max_per_group!r}")


@torch.library.register_fake("tinyfast::batched_nms")
def _batched_nms_fake(boxes, scores, idxs, iou_threshold, max_per_group):
    torch._check(boxes.dim() == 2 and boxes.shape[1] == 4)
    torch._check(scores.shape[0] == boxes.shape[0])
    torch._check(idxs.shape[0] == boxes.shape[0])
    kept = torch.library.get_ctx().new_dynamic_size()
    return boxes.new_empty((kept,), dtype=torch.int64)
