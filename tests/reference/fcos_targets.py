"""The FCOS target reference, dense as mmdetection 2.x writes it, and mmdetection's points.

``dense_fcos_targets`` follows ``FCOSHead.get_targets`` / ``_get_target_single`` (mmdetection 2.x) line by
line: points x GTs x 4 tensors per image. The tests compare ``tinyfast.ops.fcos_targets`` with it exactly;
the benchmark times it as the baseline.
"""

import torch

INF = 1e8  # mmdetection's INF: the area of non-candidates
TINY_PERSON_STRIDES = (4, 8, 16, 32, 64)
TINY_PERSON_RANGES = ((-1, 16), (16, 32), (32, 64), (64, 128), (128, float("inf")))


def fcos_points(height, width, strides=TINY_PERSON_STRIDES, dtype=torch.float32, device="cpu"):
    """The points of every level, as mmdetection 2.x ``_get_points_single``; returns (points, level sizes)."""
    levels = []
    for stride in strides:
        xs = torch.arange(0, -(-width // stride) * stride, stride, dtype=dtype, device=device)
        ys = torch.arange(0, -(-height // stride) * stride, stride, dtype=dtype, device=device)
        y, x = torch.meshgrid(ys, xs, indexing="ij")
        levels.append(torch.stack((x.reshape(-1), y.reshape(-1)), dim=-1) + stride // 2)
    return torch.cat(levels), [len(level) for level in levels]


def dense_fcos_targets(
    points,
    level_sizes,
    strides,
    regress_ranges,
    gt_boxes,
    gt_labels,
    gt_counts,
    num_classes,
    center_sampling_radius=1.5,
    norm_on_bbox=True,
):
    """mmdetection 2.x FCOS targets for a batch, with the contract of ``tinyfast.ops.fcos_targets``.

    Beyond mmdetection: background targets are set to 0 and the result is [B, P] / [B, P, 4] rather than
    per level; a radius <= 0 or None means no center sampling.
    """
    dtype = torch.float64 if torch.float64 in (points.dtype, gt_boxes.dtype) else torch.float32
    points, gt_boxes = points.to(dtype), gt_boxes.to(dtype)
    concat_regress_ranges = torch.cat(
        [
            points.new_tensor(pair)[None].expand(size, 2)
            for pair, size in zip(regress_ranges, level_sizes, strict=True)
        ]
    )
    center_sampling = center_sampling_radius is not None and center_sampling_radius > 0
    counts = gt_counts.tolist()
    labels_list, targets_list = [], []
    for boxes, labels in zip(gt_boxes.split(counts), gt_labels.split(counts), strict=True):
        image_labels, image_targets = _get_target_single(
            boxes, labels, points, concat_regress_ranges, level_sizes, strides, num_classes,
            center_sampling, center_sampling_radius,
        )  # fmt: skip
        if norm_on_bbox:
            image_targets = torch.cat(
                [
                    level / stride
                    for level, stride in zip(image_targets.split(level_sizes), strides, strict=True)
                ]
            )
        image_targets[image_labels == num_classes] = 0
        labels_list.append(image_labels)
        targets_list.append(image_targets)
    if not labels_list:
        return points.new_empty((0, len(points)), dtype=torch.int64), points.new_empty((0, len(points), 4))
    return torch.stack(labels_list), torch.stack(targets_list)


def _get_target_single(
    gt_bboxes, gt_labels, points, regress_ranges, num_points_per_lvl, strides, background_label,
    center_sampling, radius,
):  # fmt: skip
    num_points = points.size(0)
    num_gts = gt_labels.size(0)
    if num_gts == 0:
        return gt_labels.new_full((num_points,), background_label), gt_bboxes.new_zeros((num_points, 4))

    areas = (gt_bboxes[:, 2] - gt_bboxes[:, 0]) * (gt_bboxes[:, 3] - gt_bboxes[:, 1])
    areas = areas[None].repeat(num_points, 1)
    regress_ranges = regress_ranges[:, None, :].expand(num_points, num_gts, 2)
    gt_bboxes = gt_bboxes[None].expand(num_points, num_gts, 4)
    xs, ys = points[:, 0], points[:, 1]
    xs = xs[:, None].expand(num_points, num_gts)
    ys = ys[:, None].expand(num_points, num_gts)

    left = xs - gt_bboxes[..., 0]
    right = gt_bboxes[..., 2] - xs
    top = ys - gt_bboxes[..., 1]
    bottom = gt_bboxes[..., 3] - ys
    bbox_targets = torch.stack((left, top, right, bottom), -1)

    if center_sampling:
        center_xs = (gt_bboxes[..., 0] + gt_bboxes[..., 2]) / 2
        center_ys = (gt_bboxes[..., 1] + gt_bboxes[..., 3]) / 2
        center_gts = torch.zeros_like(gt_bboxes)
        stride = center_xs.new_zeros(center_xs.shape)
        lvl_begin = 0
        for lvl_idx, num_points_lvl in enumerate(num_points_per_lvl):
            lvl_end = lvl_begin + num_points_lvl
            stride[lvl_begin:lvl_end] = strides[lvl_idx] * radius
            lvl_begin = lvl_end
        x_mins = center_xs - stride
        y_mins = center_ys - stride
        x_maxs = center_xs + stride
        y_maxs = center_ys + stride
        center_gts[..., 0] = torch.where(x_mins > gt_bboxes[..., 0], x_mins, gt_bboxes[..., 0])
        center_gts[..., 1] = torch.where(y_mins > gt_bboxes[..., 1], y_mins, gt_bboxes[..., 1])
        center_gts[..., 2] = torch.where(x_maxs > gt_bboxes[..., 2], gt_bboxes[..., 2], x_maxs)
        center_gts[..., 3] = torch.where(y_maxs > gt_bboxes[..., 3], gt_bboxes[..., 3], y_maxs)
        cb_dist_left = xs - center_gts[..., 0]
        cb_dist_right = center_gts[..., 2] - xs
        cb_dist_top = ys - center_gts[..., 1]
        cb_dist_bottom = center_gts[..., 3] - ys
        center_bbox = torch.stack((cb_dist_left, cb_dist_top, cb_dist_right, cb_dist_bottom), -1)
        inside_gt_bbox_mask = center_bbox.min(-1)[0] > 0
    else:
        inside_gt_bbox_mask = bbox_targets.min(-1)[0] > 0

    max_regress_distance = bbox_targets.max(-1)[0]
    inside_regress_range = (max_regress_distance >= regress_ranges[..., 0]) & (
        max_regress_distance <= regress_ranges[..., 1]
    )

    areas[inside_gt_bbox_mask == 0] = INF
    areas[inside_regress_range == 0] = INF
    min_area, min_area_inds = areas.min(dim=1)

    labels = gt_labels[min_area_inds]
    labels[min_area == INF] = background_label
    bbox_targets = bbox_targets[range(num_points), min_area_inds]
    return labels, bbox_targets
