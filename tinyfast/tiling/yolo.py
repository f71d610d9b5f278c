"""An ultralytics YOLO model (v8-style detection head) as a ``TileDetector``."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tinyfast.ops import batched_nms
from tinyfast.tiling.detector import TileSettings


class UltralyticsDetector:
    """Adapts an ultralytics detection model (``ultralytics.YOLO(...)`` or its ``DetectionModel``) to
    ``TileDetector``; ultralytics itself is not imported here.

    Tiles are RGB on the 0-255 scale (the images as ``tinyfast.data.transforms.read_image`` decodes them,
    not normalised): they are divided by 255 and padded at the bottom and right to a multiple of the model's
    largest stride, as YOLO expects. The head's output (``[B, 4 + classes, anchors]``: centre, size, class
    probabilities) becomes one candidate per anchor with its best class, then the policy's settings apply:
    ``score_threshold`` (score > it), the best ``nms_pre`` per tile (all levels together: YOLO's head has
    no per-level ranking), with ``per_tile_nms`` class-aware NMS at ``iou_threshold`` (``tinyfast.ops``),
    and ``max_per_tile``. ``label_offset`` is subtracted from the class indices (0 for a COCO-trained model
    whose class 0 is ``person``).
    """

    def __init__(self, model: torch.nn.Module, iou_threshold: float = 0.7, label_offset: int = 0):
        wrapped = getattr(model, "model", None)  # a YOLO holds its DetectionModel in .model
        self.network = wrapped if isinstance(getattr(wrapped, "stride", None), torch.Tensor) else model
        if not isinstance(getattr(self.network, "stride", None), torch.Tensor):  # its levels' strides
            raise ValueError("UltralyticsDetector: model must be an ultralytics YOLO or DetectionModel")
        self.iou_threshold = iou_threshold
        self.label_offset = label_offset

    def __call__(self, tiles: torch.Tensor, settings: TileSettings) -> list[dict[str, torch.Tensor]]:
        divisor = int(max(self.network.stride))
        height, width = tiles.shape[-2:]
        padding = (0, -width % divisor, 0, -height % divisor)
        batch = F.pad(tiles.float() / 255.0, padding)
        self.network.eval()
        with torch.no_grad():
            output = self.network(batch)
        predictions = output[0] if isinstance(output, tuple | list) else output
        return [self._tile_detections(p.float().T, settings) for p in predictions]

    def _tile_detections(self, prediction: torch.Tensor, settings: TileSettings) -> dict[str, torch.Tensor]:
        centre, size = prediction[:, :2], prediction[:, 2:4]
        boxes = torch.cat([centre - size / 2, centre + size / 2], dim=1)
        scores, labels = prediction[:, 4:].max(dim=1)
        if settings.score_threshold is not None:
            keep = scores > settings.score_threshold
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        if settings.nms_pre is not None and len(scores) > settings.nms_pre:
            top = scores.topk(settings.nms_pre).indices
            boxes, scores, labels = boxes[top], scores[top], labels[top]
        if settings.per_tile_nms:
            keep = batched_nms(boxes, scores, labels, self.iou_threshold)
        else:
            keep = scores.argsort(descending=True, stable=True)
        if settings.max_per_tile is not None:
            keep = keep[: settings.max_per_tile]
        return {"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep] - self.label_offset}
