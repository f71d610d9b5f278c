"""Image decoding, flip, normalisation, padding and batching for the detectors."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image
from torchvision.io import ImageReadMode, decode_image
from torchvision.transforms.v2.functional import InterpolationMode, resize

from tinyfast.data.errors import DataError

# A 100-megapixel photo still decodes; a PNG claiming more is a decompression bomb (or no photo).
MAX_IMAGE_PIXELS = 100_000_000
TORCHVISION_FORMATS = ("PNG", "JPEG", "WEBP", "GIF")


@dataclass(frozen=True)
class Normalization:
    """(pixel - mean) / std on the 0-255 scale, in RGB or (caffe) BGR channel order."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    bgr: bool


NORMALIZATIONS: dict[str, Normalization] = {
    # torchvision/ImageNet RGB statistics on the 0-255 scale (mmdetection's default img_norm_cfg).
    "torchvision": Normalization((123.675, 116.28, 103.53), (58.395, 57.12, 57.375), bgr=False),
    # caffe-style ResNet (Adap FCOS): BGR mean, std 1.
    "caffe": Normalization((103.53, 116.28, 123.675), (1.0, 1.0, 1.0), bgr=True),
}


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) from the file's header, without decoding the pixels; DataError naming the file when
    it is not an image or has more than MAX_IMAGE_PIXELS pixels (a decompression bomb)."""
    return _open_header(path)[0]


def _open_header(path: str | Path) -> tuple[tuple[int, int], str]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit decides below
            with Image.open(path) as image:
                size, file_format = image.size, image.format
    except Image.DecompressionBombError:
        raise DataError(f"{path}: image has too many pixels (more than {MAX_IMAGE_PIXELS})") from None
    # PIL raises SyntaxError for some broken headers; ImportError comes from an image plugin that another
    # library loads on an unidentified file (ultralytics patches Image.open to import pi_heif then).
    except (OSError, ValueError, SyntaxError, ImportError) as e:
        raise DataError(f"{path}: cannot decode image ({' '.join(str(e).split())})") from None
    if size[0] * size[1] > MAX_IMAGE_PIXELS:
        raise DataError(
            f"{path}: image has {size[0]}x{size[1]} pixels, more than {MAX_IMAGE_PIXELS} "
            "(a decompression bomb or not a photo)"
        )
    return size, file_format


def to_uint8(image: torch.Tensor) -> torch.Tensor:
    """16-bit samples (0-65535) rounded to the 8-bit range that the normalisations assume (uint8 as it is)."""
    if image.dtype == torch.uint8:
        return image
    return ((image.to(torch.int32) * 255 + 32767) // 65535).to(torch.uint8)


def read_image(path: str | Path) -> torch.Tensor:
    """Decode a file to uint8 RGB CHW (16-bit images scaled to 0-255); torchvision decodes PNG, JPEG,
    WebP and GIF, PIL the other formats (BMP, TIFF). An unreadable file is a DataError naming it."""
    _, file_format = _open_header(path)
    try:
        if file_format in TORCHVISION_FORMATS:
            return to_uint8(decode_image(str(path), mode=ImageReadMode.RGB))
        with Image.open(path) as image:
            if image.mode.startswith("I;16"):
                grey = torch.from_numpy(np.asarray(image, dtype=np.uint16).astype(np.int32))
                return to_uint8(grey.expand(3, *grey.shape))
            pixels = np.asarray(image.convert("RGB"))
        return torch.from_numpy(pixels.copy()).permute(2, 0, 1).contiguous()
    except (RuntimeError, OSError, ValueError) as e:
        raise DataError(f"{path}: cannot decode image ({' '.join(str(e).split())})") from None


def axis_scales(scale: float | tuple[float, float] | list[float]) -> tuple[float, float]:
    """(x, y) resize factors of a scale given as one number or as an (x, y) pair; ValueError unless they
    are positive and finite."""
    pair = tuple(scale) if isinstance(scale, (tuple, list)) else (scale, scale)
    finite = all(isinstance(s, (int, float)) and not isinstance(s, bool) and 0 < s < math.inf for s in pair)
    if len(pair) != 2 or not finite:
        raise ValueError(f"a scale must be a positive number or an (x, y) pair of them, got {scale!r}")
    return float(pair[0]), float(pair[1])


def resized_size(width: int, height: int, scale: tuple[float, float]) -> tuple[int, int]:
    """(width, height) of an image resized by (x, y) factors, rounded, at least 1 pixel."""
    return max(1, round(width * scale[0])), max(1, round(height * scale[1]))


def normalize(image: torch.Tensor, style: str | Normalization) -> torch.Tensor:
    """uint8 (or 0-255 float) RGB CHW (or a NCHW batch) -> float32 normalised, in the style's channel
    order, on the image's device."""
    norm = NORMALIZATIONS[style] if isinstance(style, str) else style
    image = image.float()
    if norm.bgr:
        image = image.flip(-3)
    mean = torch.tensor(norm.mean, device=image.device).view(3, 1, 1)
    std = torch.tensor(norm.std, device=image.device).view(3, 1, 1)
    return (image - mean) / std


def hflip_boxes(boxes: torch.Tensor, width: int) -> torch.Tensor:
    """Mirror x1y1x2y2 boxes in an image `width` pixels wide."""
    flipped = boxes.clone()
    flipped[:, 0] = width - boxes[:, 2]
    flipped[:, 2] = width - boxes[:, 0]
    return flipped


def resized_crop(image: torch.Tensor, size: tuple[int, int], box: tuple[int, int, int, int]) -> torch.Tensor:
    """The pixels `box` (x1, y1, x2, y2) of `image` (uint8 CHW) resized to `size` (width, height), as
    torchvision's bilinear antialiased resize of the whole image gives them (within one grey level), computing
    only the box's: a 320x256 cut of an image resized to 1920x1080 reads a few hundred source pixels a row.
    Shrinking (either axis smaller) resizes the whole image, as the antialias filter needs."""
    x1, y1, x2, y2 = box
    width, height = size
    _, source_h, source_w = image.shape
    if (width, height) == (source_w, source_h):
        return image[:, y1:y2, x1:x2]
    if x2 <= x1 or y2 <= y1:
        return image.new_zeros((image.shape[0], max(0, y2 - y1), max(0, x2 - x1)))
    if width < source_w or height < source_h:
        resized = resize(image, [height, width], interpolation=InterpolationMode.BILINEAR, antialias=True)
        return resized[:, y1:y2, x1:x2]
    rows = _bilinear_taps(y1, y2, source_h, height)
    columns = _bilinear_taps(x1, x2, source_w, width)
    pixels = image[:, rows[0][0] : rows[1][-1] + 1, columns[0][0] : columns[1][-1] + 1].float()
    for dim, (low, high, weight) in ((1, rows), (2, columns)):
        low, high = low - low[0], high - low[0]  # into the sliced block
        weight = weight.view([-1 if d == dim else 1 for d in range(3)])
        pixels = torch.lerp(pixels.index_select(dim, low), pixels.index_select(dim, high), weight)
    return pixels.round_().clamp_(0, 255).to(image.dtype)


def _bilinear_taps(start: int, stop: int, source: int, target: int) -> tuple[torch.Tensor, ...]:
    """For output pixels start..stop-1 of an axis stretched from `source` to `target` pixels: the two source
    pixels each one blends and the weight of the second, by torch's half-pixel mapping (output pixel i samples
    the source at (i + 0.5) * source / target - 0.5, clamped to the image)."""
    position = ((torch.arange(start, stop, dtype=torch.float64) + 0.5) * (source / target) - 0.5).clamp(min=0)
    low = position.floor().long().clamp(max=source - 1)
    return low, (low + 1).clamp(max=source - 1), (position - low).float()


def region_means(image: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
    """[R,C] mean colour (rounded) of each x1y1x2y2 region of a CHW image, over its pixels inside the image
    (zeros for a region with none)."""
    _, height, width = image.shape
    means = torch.zeros(len(regions), image.shape[0])
    for index, (xa, ya, xb, yb) in enumerate(_pixel_spans(regions, width, height)):
        if xb > xa and yb > ya:
            means[index] = image[:, ya:yb, xa:xb].float().mean(dim=(1, 2)).round()
    return means


def paint_mean(image: torch.Tensor, regions: torch.Tensor, means: torch.Tensor | None = None) -> torch.Tensor:
    """The reference's "erase": fill each x1y1x2y2 region with its own mean colour (`means` [R,C], by default
    `region_means` of the image, all taken before any region is painted)."""
    _, height, width = image.shape
    means = region_means(image, regions) if means is None else means
    out = image.clone()
    for (xa, ya, xb, yb), mean in zip(_pixel_spans(regions, width, height), means, strict=True):
        if xb > xa and yb > ya:
            out[:, ya:yb, xa:xb] = mean.to(image.dtype).view(-1, 1, 1)
    return out


def _pixel_spans(regions: torch.Tensor, width: int, height: int) -> list[tuple[int, int, int, int]]:
    """The pixels a region touches, clipped to the image: (x_start, y_start, x_stop, y_stop)."""
    return [
        (
            max(0, math.floor(x1)),
            max(0, math.floor(y1)),
            min(width, math.ceil(x2)),
            min(height, math.ceil(y2)),
        )
        for x1, y1, x2, y2 in regions.reshape(-1, 4).tolist()
    ]


def pad_to_multiple(images: list[torch.Tensor], divisor: int = 32, value: float = 0.0) -> torch.Tensor:
    """Stack CHW images into one NCHW batch, padded at the bottom/right to a common multiple of `divisor`."""
    height = max(img.shape[1] for img in images)
    width = max(img.shape[2] for img in images)
    height, width = -(-height // divisor) * divisor, -(-width // divisor) * divisor
    batch = images[0].new_full((len(images), images[0].shape[0], height, width), value)
    for i, img in enumerate(images):
        batch[i, :, : img.shape[1], : img.shape[2]] = img
    return batch


class Batch(NamedTuple):
    images: torch.Tensor  # N x 3 x H x W, H and W multiples of the divisor
    targets: list[dict]
    image_sizes: list[tuple[int, int]]  # (h, w) of each image before padding


def collate(items: list[tuple[torch.Tensor, dict]], size_divisor: int = 32) -> Batch:
    """DataLoader collate_fn: pad variable-size images (value 0, i.e. after normalisation) into one batch."""
    images = [img for img, _ in items]
    return Batch(
        images=pad_to_multiple(images, size_divisor),
        targets=[target for _, target in items],
        image_sizes=[(img.shape[1], img.shape[2]) for img in images],
    )
