"""Tile-aware batched NMS: a drop-in for ``torchvision.ops.batched_nms``."""

from __future__ import annotations

import torch

from tinyfast.ops import _arguments, _library  # noqa: F401  (_library registers torch.ops.tinyfast)

_OP = "batched_nms"


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
      it covers (the grid stays bounded for any finite boxes: a few huge ones go to a list of their own);
      on the GPU boxes are swept by x1 and only boxes whose x ranges meet are compared.

    Boxes with ``x2 <= x1`` or ``y2 <= y1`` have zero (or, as torchvision computes it, negative) area:
    they never suppress and are never suppressed. float16 and bfloat16 boxes are computed in float32,
    float64 in float64.
    Non-finite boxes or scores, and a threshold that is NaN or negative, raise ``ValueError``.
    """
    return torch.ops.tinyfast.batched_nms(
        _arguments.tensor(_OP, "boxes", boxes),
        _arguments.tensor(_OP, "scores", scores),
        _arguments.integer_tensor(_OP, "idxs", idxs),
        _arguments.real(_OP, "iou_threshold", iou_threshold),
        _arguments.optional_integer(_OP, "max_per_group", max_per_group),
    )


@torch.library.register_fake("tinyfast::batched_nms")
def _batched_nms_fake(boxes, scores, idxs, iou_threshold, max_per_group):
    _arguments.check_one_device(_OP, {"boxes": boxes, "scores": scores, "idxs": idxs})
    torch._check(boxes.dim() == 2 and boxes.shape[1] == 4)
    torch._check(scores.shape[0] == boxes.shape[0])
    torch._check(idxs.shape[0] == boxes.shape[0])
    kept = torch.library.get_ctx().new_dynamic_size()
    return boxes.new_empty((kept,), dtype=torch.int64)
