"""What Adap FCOS and Adap RetinaNet share: backbone -> head -> per-level priors, then the losses in
training, or the candidates of each image (top `nms_pre` per level) at inference and, for tiled inference,
`detect_tiles` with the tile settings and the per-tile NMS, each step batched over the images (no loop per
image or tile). A subclass gives the head-specific parts."""

from __future__ import annotations

import abc

import torch
from torch import Tensor, nn

from tinyfast.modeling.inference import run_network
from tinyfast.modeling.postprocess import TileDetections, tile_nms, with_tile_settings
from tinyfast.tiling.detector import TileSettings


class DenseDetector(nn.Module, abc.ABC):
    """`model(images, targets)` returns the losses in training; `model(images)` the candidate detections of
    each image (boxes in the image's pixels, scores, labels), before NMS.

    Subclasses set `self.config`, `self.backbone` (images -> FPN levels) and `self.head` (levels -> a tuple of
    per-level outputs), and define `priors` (the points or anchors of each level), `level_candidates` (one
    level of all images) and `losses(*outputs, priors, targets)`."""

    dense_head = True  # the merge policies treat it as a dense head (tinyfast.tiling.merge_policy)
    kind = "detector"  # boxes: tinyfast.modeling.build.model_kind
    inference_dtype: torch.dtype | None = None  # the network's autocast dtype in detect_tiles
    tile_networks = ("backbone", "head")  # what test.compile compiles (tinyfast.modeling.inference)
    cuda_graphs = False  # whether they were compiled into CUDA graphs

    def priors(self, outputs: tuple[list[Tensor], ...], device: torch.device) -> list[Tensor]:
        raise NotImplementedError

    def losses(self, *outputs_priors_targets) -> dict[str, Tensor]:
        raise NotImplementedError

    def level_candidates(
        self, outputs: tuple[list[Tensor], ...], priors: list[Tensor], level: int, image_size, config
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Images, boxes (image pixels), scores and labels of the candidates of `level` in every image,
        grouped by image (`tinyfast.modeling.postprocess.select_level_candidates`)."""
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
        return self.decode_tiles(self.tile_outputs(tiles), tiles, settings)

    @torch.no_grad()
    def tile_outputs(self, tiles: Tensor) -> tuple[list[Tensor], ...]:
        """The network's per-level outputs for a batch of tiles, in float32. They do not depend on the tile
        settings: the merge-policy study (`tinyfast.study`) decodes one batch under several."""
        self.eval()
        if self.cuda_graphs:  # a new batch: the graphs may overwrite the outputs of the previous one
            torch.compiler.cudagraph_mark_step_begin()
        return run_network(self.inference_dtype, lambda images: self.head(self.backbone(images)), tiles)

    @torch.no_grad()
    def decode_tiles(
        self, outputs: tuple[list[Tensor], ...], tiles: Tensor, settings: TileSettings
    ) -> list[dict[str, Tensor]]:
        """The detections of each tile from `tile_outputs(tiles)`: candidates, then the per-tile NMS."""
        config = with_tile_settings(self.config, settings)
        found = self.batch_candidates(outputs, self.priors(outputs, tiles.device), tiles.shape[-2:], config)
        return tile_nms(found, settings, config.nms_iou, config.num_classes).per_tile()

    @torch.no_grad()
    def candidates(self, outputs, priors, image_size, config=None) -> list[dict[str, Tensor]]:
        """The candidates of each image: level after level, in a level as `level_candidates` gives them."""
        return self.batch_candidates(outputs, priors, image_size, config).per_tile()

    @torch.no_grad()
    def batch_candidates(self, outputs, priors, image_size, config=None) -> TileDetections:
        config = self.config if config is None else config
        parts = [
            self.level_candidates(outputs, priors, level, image_size, config) for level in range(len(priors))
        ]
        return TileDetections.from_parts(parts, outputs[0][0].shape[0])
