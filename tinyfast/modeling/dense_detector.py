"""What Adap FCOS and Adap RetinaNet share: backbone -> head -> per-level priors, then the losses in
training, or the candidates of each image (top `nms_pre` per level) at inference and, for tiled inference,
`detect_tiles` with the tile settings and the per-tile NMS. A subclass gives the head-specific parts."""

from __future__ import annotations

import abc

import torch
from torch import Tensor, nn

from tinyfast.modeling.inference import run_network
from tinyfast.modeling.postprocess import tile_nms, with_tile_settings
from tinyfast.tiling.detector import TileSettings


class DenseDetector(nn.Module, abc.ABC):
    """`model(images, targets)` returns the losses in training; `model(images)` the candidate detections of
    each image (boxes in the image's pixels, scores, labels), before NMS.

    Subclasses set `self.config`, `self.backbone` (images -> FPN levels) and `self.head` (levels -> a tuple of
    per-level outputs), and define `priors` (the points or anchors of each level), `level_candidates` (one
    level of one image) and `losses(*outputs, priors, targets)`."""

    dense_head = True  # the merge policies treat it as a dense head (tinyfast.tiling.merge_policy)
    kind = "detector"  # boxes: tinyfast.modeling.build.model_kind
    inference_dtype: torch.dtype | None = None  # the network's autocast dtype in detect_tiles

    def priors(self, outputs: tuple[list[Tensor], ...], device: torch.device) -> list[Tensor]:
        raise NotImplementedError

    def losses(self, *outputs_priors_targets) -> dict[str, Tensor]:
        raise NotImplementedError

    def level_candidates(
        self,
        outputs: tuple[list[Tensor], ...],
        priors: list[Tensor],
        image: int,
        level: int,
        image_size,
        config,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Boxes (image pixels), scores and labels of the candidates of `level` in image `image`."""
        raise NotImplementedError

    def forward(self, images: Tensor, targets: list[dict[str, Tensor]] | None = None):
        outputs = self.head(self.backbone(images))
        priors = self.priors(outputs, images.device)
        if self.training:
            if targets is None:
                raise ValueError(f"{type(self).__name__} in training mode needs targets")
            return self.losses(*outputs, priors, targets)
        return self.candidates(outputs, priors, images.shape[-2:])

    @torch.no_grad()
    def detect_tiles(self, tiles: Tensor, settings: TileSettings) -> list[dict[str, Tensor]]:
        """The `TileDetector` contract of tiled inference (`settings.score_threshold` is the reference's
        `score_thr`, applied to the raw class score)."""
        config = with_tile_settings(self.config, settings)
        self.eval()
        outputs = run_network(self.inference_dtype, lambda images: self.head(self.backbone(images)), tiles)
        found = self.candidates(outputs, self.priors(outputs, tiles.device), tiles.shape[-2:], config)
        return tile_nms(found, settings, config.nms_iou)

    @torch.no_grad()
    def candidates(self, outputs, priors, image_size, config=None) -> list[dict[str, Tensor]]:
        config = self.config if config is None else config
        results = []
        for image in range(outputs[0][0].shape[0]):
            boxes, scores, labels = zip(
                *(
                    self.level_candidates(outputs, priors, image, level, image_size, config)
                    for level in range(len(priors))
                ),
                strict=True,
            )
            results.append(
                {"boxes": torch.cat(boxes), "scores": torch.cat(scores), "labels": torch.cat(labels)}
            )
        return results
