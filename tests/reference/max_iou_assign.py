"""The max-IoU assignment reference, dense as mmdetection 2.x writes it, and mmdetection's RetinaNet anchors.

``dense_max_iou_assign`` follows ``MaxIoUAssigner.assign`` / ``assign_wrt_overlaps`` (mmdetection 2.x) line
by line, with a GTs x boxes IoU matrix per image. The tests compare ``tinyfast.ops.max_iou_assign`` with it
exactly; the benchmark times it as the baseline.
"""

import math

import torch

from tests.reference.fcos_targets import TINY_PERSON_STRIDES


def bbox_overlaps(bboxes1, bboxes2, mode="iou", eps=1e-6):
    """mmdetection 2.x ``bbox_overlaps`` (``is_aligned=False``): [M, 4] x [N, 4] -> [M, N] IoU or IoF (over
    the area of ``bboxes1``), its operations in its order. The x and y sides are computed one after the other
    and in place rather than as [M, N, 2] tensors, which changes no value and saves memory."""
    area1 = (bboxes1[:, 2] - bboxes1[:, 0]) * (bboxes1[:, 3] - bboxes1[:, 1])
    area2 = (bboxes2[:, 2] - bboxes2[:, 0]) * (bboxes2[:, 3] - bboxes2[:, 1])

    def side(lo, hi):  # (rb - lt).clamp(min=0) along one axis
        rb = torch.min(bboxes1[:, None, hi], bboxes2[None, :, hi])
        return rb.sub_(torch.max(bboxes1[:, None, lo], bboxes2[None, :, lo])).clamp_(min=0)

    overlap = side(0, 2).mul_(side(1, 3))
    if mode == "iou":
        union = (area1[:, None] + area2[None, :]).sub_(overlap)
    else:
        union = area1[:, None]
    union = union.clamp(min=eps)  # torch.max(union, union.new_tensor([eps]))
    return overlap.div_(union)


def dense_max_iou_assign(
    boxes,
    box_counts,
    gt_boxes,
    gt_counts,
    pos_iou,
    neg_iou,
    min_pos_iou=0.0,
    low_quality=True,
    gt_max_assign_all=True,
    ignore_boxes=None,
    ignore_counts=None,
    ignore_iof=0.5,
):
    """mmdetection 2.x max-IoU assignment for a batch, with the contract of ``tinyfast.ops.max_iou_assign``.

    Beyond mmdetection: indices are global rows of ``gt_boxes`` (-1 negative, -2 ignored) rather than
    1-based per image; ``max_iou`` of a box in an ignore region is its IoU, not -1; and in low-quality
    matching a GT whose max IoU is 0 gets no positive.
    """
    sets = [boxes, gt_boxes] + ([] if ignore_boxes is None else [ignore_boxes])
    dtype = torch.float64 if any(s.dtype == torch.float64 for s in sets) else torch.float32
    if ignore_boxes is None:
        ignore_boxes, ignore_counts = boxes.new_empty((0, 4)), torch.zeros_like(box_counts)
    assigned_list, max_iou_list = [], []
    gt_offset = 0
    per_image = zip(
        boxes.to(dtype).split(box_counts.tolist()),
        gt_boxes.to(dtype).split(gt_counts.tolist()),
        ignore_boxes.to(dtype).split(ignore_counts.tolist()),
        strict=True,
    )
    for image_boxes, image_gts, image_ignores in per_image:
        gt_inds, max_iou = _assign(
            image_boxes, image_gts, image_ignores, pos_iou, neg_iou, min_pos_iou, low_quality,
            gt_max_assign_all, ignore_iof,
        )  # fmt: skip
        # mmdetection's 1-based index, 0 negative, -1 ignored -> global row, -1 negative, -2 ignored.
        assigned_list.append(
            torch.where(gt_inds > 0, gt_inds - 1 + gt_offset, torch.where(gt_inds == 0, -1, -2))
        )
        max_iou_list.append(max_iou)
        gt_offset += len(image_gts)
    if not assigned_list:
        return boxes.new_empty((0,), dtype=torch.int64), boxes.new_empty((0,))
    return torch.cat(assigned_list), torch.cat(max_iou_list).to(boxes.dtype)


def _assign(bboxes, gt_bboxes, gt_bboxes_ignore, pos_iou_thr, neg_iou_thr, min_pos_iou, match_low_quality,
            gt_max_assign_all, ignore_iof_thr):  # fmt: skip
    num_gts, num_bboxes = gt_bboxes.size(0), bboxes.size(0)
    assigned_gt_inds = bboxes.new_full((num_bboxes,), -1, dtype=torch.long)
    if num_gts == 0 or num_bboxes == 0:
        if num_gts == 0:
            assigned_gt_inds[:] = 0
        return assigned_gt_inds, bboxes.new_zeros((num_bboxes,))

    overlaps = bbox_overlaps(gt_bboxes, bboxes)
    box_max_iou = overlaps.max(dim=0).values  # before ignore regions set their columns to -1
    if ignore_iof_thr > 0 and gt_bboxes_ignore.numel() > 0 and bboxes.numel() > 0:
        ignore_overlaps = bbox_overlaps(bboxes, gt_bboxes_ignore, mode="iof")
        ignore_max_overlaps, _ = ignore_overlaps.max(dim=1)
        overlaps[:, ignore_max_overlaps > ignore_iof_thr] = -1

    max_overlaps, argmax_overlaps = overlaps.max(dim=0)
    gt_max_overlaps, gt_argmax_overlaps = overlaps.max(dim=1)
    assigned_gt_inds[(max_overlaps >= 0) & (max_overlaps < neg_iou_thr)] = 0
    pos_inds = max_overlaps >= pos_iou_thr
    assigned_gt_inds[pos_inds] = argmax_overlaps[pos_inds] + 1
    if match_low_quality:
        for i in range(num_gts):
            # The deviation: `> 0` (mmdetection would give a GT overlapping no box every box at IoU 0).
            if gt_max_overlaps[i] >= min_pos_iou and gt_max_overlaps[i] > 0:
                if gt_max_assign_all:
                    max_iou_inds = overlaps[i, :] == gt_max_overlaps[i]
                    assigned_gt_inds[max_iou_inds] = i + 1
                else:
                    assigned_gt_inds[gt_argmax_overlaps[i]] = i + 1
    return assigned_gt_inds, box_max_iou


def retinanet_anchors(
    height, width, strides=TINY_PERSON_STRIDES, octave_base_scale=2, scales_per_octave=3,
    ratios=(0.5, 1.0, 2.0), dtype=torch.float32, device="cpu",
):  # fmt: skip
    """mmdetection 2.x ``AnchorGenerator`` anchors of a ``height`` x ``width`` image, level by level, each
    location's anchors together (ratio-major), centred on multiples of the stride."""
    octaves = torch.arange(scales_per_octave, dtype=torch.float64) / scales_per_octave
    octave_scales = octave_base_scale * 2**octaves
    h_ratios = torch.tensor(ratios, dtype=torch.float64).sqrt()
    w_ratios = 1 / h_ratios
    levels = []
    for stride in strides:
        ws = (stride * w_ratios[:, None] * octave_scales[None, :]).reshape(-1)
        hs = (stride * h_ratios[:, None] * octave_scales[None, :]).reshape(-1)
        base = torch.stack((-0.5 * ws, -0.5 * hs, 0.5 * ws, 0.5 * hs), dim=-1).to(dtype)
        shift_y, shift_x = torch.meshgrid(
            torch.arange(math.ceil(height / stride), dtype=dtype) * stride,
            torch.arange(math.ceil(width / stride), dtype=dtype) * stride,
            indexing="ij",
        )
        shifts = torch.stack((shift_x, shift_y, shift_x, shift_y), dim=-1).reshape(-1, 1, 4)
        levels.append((shifts + base[None]).reshape(-1, 4))
    return torch.cat(levels).to(device)
