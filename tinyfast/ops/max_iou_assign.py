"""Max-IoU assignment (mmdetection 2.x ``MaxIoUAssigner``) without a boxes x GTs IoU matrix."""

from __future__ import annotations

import torch

from tinyfast.ops import _arguments, _library  # noqa: F401  (_library registers torch.ops.tinyfast)

_OP = "max_iou_assign"


def max_iou_assign(
    boxes: torch.Tensor,
    box_counts: torch.Tensor,
    gt_boxes: torch.Tensor,
    gt_counts: torch.Tensor,
    pos_iou: float,
    neg_iou: float,
    min_pos_iou: float = 0.0,
    low_quality: bool = True,
    gt_max_assign_all: bool = True,
    ignore_boxes: torch.Tensor | None = None,
    ignore_counts: torch.Tensor | None = None,
    ignore_iof: float = 0.5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The GT of every box (anchor or proposal) of a batch, as mmdetection 2.x ``MaxIoUAssigner.assign``.

    ``boxes`` ``[N, 4]`` (x1, y1, x2, y2) are all images' boxes concatenated, ``box_counts`` ``[B]`` how many
    each image has; ``gt_boxes`` ``[G, 4]`` / ``gt_counts`` ``[B]`` and ``ignore_boxes`` ``[I, 4]`` /
    ``ignore_counts`` ``[B]`` (optional, together) likewise. A box is only compared with its image's GTs and
    ignore regions.

    Returns ``assigned_gt`` ``[N]`` int64: the row of ``gt_boxes`` of the box's GT (a global index), -1 for a
    negative, -2 for an ignored box; and ``max_iou`` ``[N]`` (dtype of ``boxes``): the box's max IoU with its
    image's GTs, 0 when the image has none (a box in an ignore region keeps its IoU; mmdetection reports -1).

    The rules are mmdetection's, with its arithmetic (``bbox_overlaps``: no +1, union clamped below by 1e-6)
    and its thresholds compared in the boxes' precision, so that results equal a dense PyTorch assigner's:

    - a box whose IoF (intersection over the box's area) with an ignore region of its image is
      > ``ignore_iof`` is ignored (only when ``ignore_iof`` > 0, as mmdetection);
    - otherwise max IoU >= ``pos_iou``: positive, assigned its best GT (ties: the GT that comes first);
      0 <= max IoU < ``neg_iou``: negative; in between: ignored;
    - ``low_quality`` (mmdetection's ``match_low_quality``): then, GT by GT in order (a later GT overrides an
      earlier one), each GT whose max IoU over the boxes not ignored is >= ``min_pos_iou`` makes its best
      box positive: all boxes at its max IoU with ``gt_max_assign_all``, else the first of them. One
      deliberate deviation: a GT whose max IoU is 0 (it overlaps no box, a zero-area GT for example) gets no
      positive, where mmdetection would make every box of the image its positive;
    - every box of an image without GTs is negative (also in ignore regions, as mmdetection).

    Memory is proportional to boxes + GTs: each image's GTs and ignore regions are bucketed on a uniform grid
    and a box reads only those listed in the cells it covers. float16/bfloat16 boxes are computed in float32;
    float64 (any of the three box sets) in float64. Bad input, non-finite boxes and boxes whose area
    overflows included, raises ``ValueError`` naming the argument.
    """
    if (ignore_boxes is None) != (ignore_counts is None):
        _arguments.fail(_OP, "ignore_boxes and ignore_counts must be given together")
    boxes = _arguments.tensor(_OP, "boxes", boxes)
    box_counts = _arguments.integer_tensor(_OP, "box_counts", box_counts)
    if ignore_boxes is None:
        ignore_boxes = boxes.new_empty((0, 4))
        ignore_counts = torch.zeros_like(box_counts, dtype=torch.int64)
    return torch.ops.tinyfast.max_iou_assign(
        boxes,
        box_counts,
        _arguments.tensor(_OP, "gt_boxes", gt_boxes),
        _arguments.integer_tensor(_OP, "gt_counts", gt_counts),
        _arguments.tensor(_OP, "ignore_boxes", ignore_boxes),
        _arguments.integer_tensor(_OP, "ignore_counts", ignore_counts),
        _arguments.real(_OP, "pos_iou", pos_iou),
        _arguments.real(_OP, "neg_iou", neg_iou),
        _arguments.real(_OP, "min_pos_iou", min_pos_iou),
        _arguments.boolean(_OP, "low_quality", low_quality),
        _arguments.boolean(_OP, "gt_max_assign_all", gt_max_assign_all),
        _arguments.real(_OP, "ignore_iof", ignore_iof),
    )


@torch.library.register_fake("tinyfast::max_iou_assign")
def _max_iou_assign_fake(boxes, box_counts, gt_boxes, gt_counts, ignore_boxes, ignore_counts, *_):
    tensors = {"boxes": boxes, "box_counts": box_counts, "gt_boxes": gt_boxes, "gt_counts": gt_counts,
               "ignore_boxes": ignore_boxes, "ignore_counts": ignore_counts}  # fmt: skip
    _arguments.check_one_device(_OP, tensors)
    torch._check(boxes.dim() == 2 and boxes.shape[1] == 4)
    torch._check(gt_boxes.dim() == 2 and gt_boxes.shape[1] == 4)
    num_boxes = boxes.shape[0]
    return boxes.new_empty((num_boxes,), dtype=torch.int64), boxes.new_empty((num_boxes,))
