"""The contract between tiled inference and a detector: a batch of tiles in, raw detections per tile out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch


@dataclass(frozen=True)
class TileSettings:
    """What a merge policy asks of the detector for every tile (docs/protocol.md §3.5).

    - ``nms_pre``: dense heads keep at most this many candidates per tile and FPN level (None: the
      detector's own default);
    - ``per_tile_nms``: run the detector's NMS within the tile (False for dense heads under "during": the
      only NMS is the one on the full image);
    - ``max_per_tile``: at most this many detections per tile (None: no cap);
    - ``score_threshold``: drop detections scoring at most this (None: keep all).
    """

    nms_pre: int | None = 1000
    per_tile_nms: bool = True
    max_per_tile: int | None = None
    score_threshold: float | None = None


class TileDetector(Protocol):
    """A detector tiled inference can run: any callable with this signature.

    ``tiles`` is a float ``[B, 3, H, W]`` batch of same-size tiles, already normalised as the detector
    expects. It returns one dict per tile with ``boxes`` ``[K, 4]`` (x1y1x2y2 in that tile's pixels),
    ``scores`` ``[K]`` and ``labels`` ``[K]`` (int64, 0-based), honouring ``settings``.
    """

    def __call__(self, tiles: torch.Tensor, settings: TileSettings) -> list[dict[str, torch.Tensor]]: ...


class TorchvisionDetector:
    """Adapts a torchvision detection model (Faster R-CNN, RetinaNet, FCOS, ...) to ``TileDetector``.

    The settings are written into the model's post-processing attributes before each call: dense heads
    (``topk_candidates``, ``nms_thresh``, ``detections_per_img``, ``score_thresh``), two-stage models the
    same attributes of ``roi_heads``. Without per-tile NMS the NMS threshold becomes 1.0 (IoU is never
    above 1, so nothing is suppressed). torchvision's two-stage models count the background as class 0, so
    their labels start at 1: ``label_offset`` (default: 1 for a model with ``roi_heads``, else 0) is
    subtracted from the labels returned, which makes them 0-based.
    """

    def __init__(self, model: torch.nn.Module, label_offset: int | None = None):
        self.model = model
        self.label_offset = (
            (1 if hasattr(model, "roi_heads") else 0) if label_offset is None else label_offset
        )
        self._head = getattr(model, "roi_heads", model)
        self._nms_threshold = self._head.nms_thresh

    def __call__(self, tiles: torch.Tensor, settings: TileSettings) -> list[dict[str, torch.Tensor]]:
        head = self._head
        if settings.nms_pre is not None and hasattr(self.model, "topk_candidates"):
            self.model.topk_candidates = settings.nms_pre
        head.nms_thresh = self._nms_threshold if settings.per_tile_nms else 1.0
        head.detections_per_img = settings.max_per_tile if settings.max_per_tile is not None else 1 << 30
        head.score_thresh = settings.score_threshold if settings.score_threshold is not None else 0.0
        self.model.eval()
        with torch.no_grad():
            outputs = self.model(list(tiles))
        offset = self.label_offset
        return [{"boxes": o["boxes"], "scores": o["scores"], "labels": o["labels"] - offset} for o in outputs]
