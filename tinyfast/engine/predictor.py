"""A trained model as a detector of full images: `load_detector(run folder or checkpoint)`, then
`Detector.predict` (tiled inference with the model's test settings: boxes, or points for a point
localiser) and `Detector.draw`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import nn
from torchvision.utils import draw_bounding_boxes, draw_keypoints

from tinyfast.data.transforms import read_image, to_uint8
from tinyfast.engine.checkpoint import load_checkpoint, model_checkpoint
from tinyfast.engine.config import apply_override, check_config, load_run_config, with_defaults
from tinyfast.engine.evaluation import tiled_inference, tiled_location
from tinyfast.modeling.build import load_model, model_kind
from tinyfast.modeling.inference import prepare_for_inference
from tinyfast.utils.prefetch import prefetch_to_device

RUN_CONFIG = "config.toml"
ImageLike = str | Path | torch.Tensor


def resolve_model(source: str | Path, overrides: Sequence[str] = ()) -> tuple[dict, Path, dict]:
    """The config (with `overrides` applied, every key checked), the checkpoint path and the checkpoint's
    state of a model given as a run folder (its `config.toml` and `latest.pth`) or as a checkpoint file (the
    resolved config it was trained with travels inside it)."""
    path = Path(source)
    checkpoint = model_checkpoint(path)
    state = load_checkpoint(checkpoint)
    if path.is_dir() and (path / RUN_CONFIG).is_file():
        config = load_run_config(path / RUN_CONFIG)
    else:
        config = state.get("config")
        if not isinstance(config, dict):
            raise ValueError(
                f"{checkpoint} carries no config (it was written before checkpoints held one): give the "
                "config it was trained with, python -m tinyfast.test CONFIG CHECKPOINT"
            )
    config = with_defaults(config)
    for override in overrides:
        apply_override(config, override)
    check_config(config)
    return config, checkpoint, state


def as_rgb_uint8(image: ImageLike) -> torch.Tensor:
    """A path (decoded by `read_image`) or a CHW tensor (RGB or 1-channel grey; uint8, uint16 as 16-bit PNGs
    decode, or 0-255 float) as a uint8 RGB CHW tensor."""
    if isinstance(image, str | Path):
        image = read_image(str(image))
    if not isinstance(image, torch.Tensor) or image.dim() != 3 or image.shape[0] not in (1, 3):
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ValueError(f"an image must be a file path or a [3, H, W] / [1, H, W] tensor, got {shape}")
    if image.dtype == torch.uint16:
        image = to_uint8(image)
    if image.dtype != torch.uint8:
        image = image.float().round().clamp(0, 255).to(torch.uint8)
    return image.expand(3, -1, -1) if image.shape[0] == 1 else image


def count_found(found: dict[str, torch.Tensor], threshold: float) -> int:
    """The detections of one image scoring at least `threshold`."""
    return int((found["scores"] >= threshold).sum())


class Detector:
    """A trained tinyfast model with the tiled inference of its config's `[test]` section.

    ```python
    detector = tinyfast.load_detector("runs/fcos_synthetic")     # run folder or checkpoint; device=...
    found = detector.predict(["a.jpg", image_tensor])            # list of {"boxes", "scores", "labels"}
    picture = detector.draw("a.jpg", found[0], threshold=0.3)    # uint8 [3, H, W]
    ```

    A point localiser (`model.name = "p2pnet"`, `kind` "localiser") finds points instead: each image's dict
    holds `points` [K, 2] (x, y), `scores`, `labels` and `sizes` (each point's size estimate, pixels), its
    tiles merged by `tinyfast.tiling.locate_images`. CPR refines annotated points and finds nothing by
    itself: it is refused (ValueError).
    """

    def __init__(self, model: nn.Module, config: dict, device: torch.device | str | None = None):
        self.kind = model_kind(config["model"])
        if self.kind == "refiner":
            raise ValueError(
                f"model.name = {config['model']['name']!r} refines the annotated points of a training set "
                "(python -m tinyfast.refine); it does not find persons by itself: predict with the "
                "localiser trained on its points"
            )
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        test = config["test"]
        compile_networks = test["compile"] and self.kind == "detector"  # point models run uncompiled
        self.model = prepare_for_inference(model, test["precision"], self.device, compile_networks)
        self.config = config
        self.inference = tiled_inference(config) if self.kind == "detector" else tiled_location(config)
        self.images_per_batch = config["test"]["images_per_batch"]

    @torch.no_grad()
    def predict(
        self, images: Sequence[ImageLike], batch_size: int | None = None
    ) -> list[dict[str, torch.Tensor]]:
        """Detections per image, on the CPU: `boxes` [K, 4] x1y1x2y2 in the image's pixels, `scores` [K],
        `labels` [K] (0-based; 0 is `person`); a point localiser's have `points` [K, 2] and `sizes` [K]
        instead of `boxes`. Images are file paths or CHW tensors (see `as_rgb_uint8`),
        of any size; `batch_size` images (default `test.images_per_batch`) go through tiled inference
        together. A file that cannot be read raises `DataError` naming it."""
        if isinstance(images, str | Path | torch.Tensor):
            raise ValueError("predict takes a list of images (paths or tensors), not a single one")
        batch_size = batch_size or self.images_per_batch
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        decoded = (
            (start, [as_rgb_uint8(image) for image in images[start : start + batch_size]])
            for start in range(0, len(images), batch_size)
        )
        found = []
        for _, batch in prefetch_to_device(decoded, self.device):  # the next batch decoded meanwhile
            found.extend(self.predict_loaded(batch))
        return found

    @torch.no_grad()
    def predict_loaded(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        """`predict` for uint8 RGB CHW tensors already on `self.device`, all in one batch."""
        model = self.model if self.kind == "localiser" else self.model.detect_tiles
        detections = self.inference(model, images)
        return [{key: value.cpu() for key, value in d.items()} for d in detections]

    def draw(
        self,
        image: ImageLike,
        found: dict[str, torch.Tensor],
        threshold: float = 0.3,
        color: str = "red",
        width: int | None = None,
    ) -> torch.Tensor:
        """`image` (uint8 RGB [3, H, W]) with the boxes (or points) of `found` scoring at least `threshold`
        (`torchvision.utils.draw_bounding_boxes`, `draw_keypoints`) and their count written in the top-left
        corner."""
        return draw_detections(as_rgb_uint8(image).cpu(), found, threshold, color, width)


def draw_detections(
    image: torch.Tensor,
    found: dict[str, torch.Tensor],
    threshold: float = 0.3,
    color: str = "red",
    width: int | None = None,
) -> torch.Tensor:
    """See `Detector.draw`; `image` is uint8 RGB CHW."""
    shown = found["scores"] >= threshold
    side = max(image.shape[-2:])
    width = width or max(1, round(side / 640))
    count = int(shown.sum())
    if not count:
        drawn = image
    elif "points" in found:
        points = found["points"][shown].float().unsqueeze(1)  # [K, 1, 2]: one keypoint per person
        drawn = draw_keypoints(image, points, colors=color, radius=width + 1, width=width)
    else:
        drawn = draw_bounding_boxes(image, found["boxes"][shown].float(), colors=color, width=width)
    text = f"{count} person{'' if count == 1 else 's'} (score >= {threshold:g})"
    size = max(10, round(side / 40))
    try:
        font = ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        font = ImageFont.load_default()
    picture = Image.fromarray(drawn.permute(1, 2, 0).numpy())
    pen = ImageDraw.Draw(picture)
    left, top, right, bottom = pen.textbbox((size // 2, size // 2), text, font=font)
    pen.rectangle((left - 3, top - 3, right + 3, bottom + 3), fill=(0, 0, 0))
    pen.text((size // 2, size // 2), text, fill=(255, 255, 255), font=font)
    return torch.from_numpy(np.asarray(picture).copy()).permute(2, 0, 1).contiguous()


def load_detector(
    source: str | Path, device: torch.device | str | None = None, overrides: Sequence[str] = ()
) -> Detector:
    """The trained model of a run folder (`config.toml` and `latest.pth`) or of a checkpoint file (which
    carries its config) as a `Detector` on `device` (default: the GPU when there is one, else the CPU).
    `overrides` change the config (`key.sub=value`), e.g. `["test.policy=after", "test.flips=true"]`."""
    config, checkpoint, state = resolve_model(source, overrides)
    return Detector(load_model(config["model"], state, str(checkpoint)), config, device)
