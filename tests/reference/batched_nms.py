"""The batched NMS reference: greedy NMS as ``tinyfast.ops.batched_nms`` documents it, in plain PyTorch."""

import torch


def reference_batched_nms(boxes, scores, idxs, iou_threshold, max_per_group=None):
    """Greedy NMS as the contract states it, in plain PyTorch (O(N^2) memory: small inputs only).

    Boxes are visited by decreasing score, ties by lower index (a stable sort); the IoU is computed with the
    operations of torchvision's CPU kernel, in float32 for half inputs, and compared to the threshold in
    float64. ``max_per_group`` truncates each group's kept boxes after the whole suppression.
    """
    if boxes.dtype in (torch.float16, torch.bfloat16):
        boxes = boxes.float()
    boxes, scores, idxs = boxes.cpu(), scores.cpu().double(), idxs.cpu().long()
    x1, y1, x2, y2 = boxes.unbind(1)
    areas = (x2 - x1) * (y2 - y1)
    width = (torch.minimum(x2[:, None], x2) - torch.maximum(x1[:, None], x1)).clamp(min=0)
    height = (torch.minimum(y2[:, None], y2) - torch.maximum(y1[:, None], y1)).clamp(min=0)
    inter = width * height
    iou = inter / (areas[:, None] + areas[None, :] - inter)
    suppresses = (iou.double() > iou_threshold) & (idxs[:, None] == idxs[None, :])

    suppressed = torch.zeros(len(boxes), dtype=torch.bool)
    kept_per_group = {}
    keep = []
    for i in torch.sort(scores, descending=True, stable=True).indices.tolist():
        if suppressed[i]:
            continue
        suppressed |= suppresses[i]
        group = int(idxs[i])
        kept_per_group[group] = kept_per_group.get(group, 0) + 1
        if max_per_group is None or kept_per_group[group] <= max_per_group:
            keep.append(i)
    return torch.tensor(keep, dtype=torch.int64)
