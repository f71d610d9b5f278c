"""Scale Match (Yu et al., "Scale Match for Tiny Person Detection", WACV 2020): resize the images of a
pre-training set so that its objects' sizes follow the size distribution of a target set (TinyPerson).

The size of an object is sqrt(w * h); the size of an image is the geometric mean of its boxes' sizes, and
every image is resized as a whole by `scale = target size / image size`. Three ways to choose the target
size, after the reference's `huicv` `scale_match.py` (ucas-vg/TinyBenchmark):

- `ScaleMatch`: drawn at random from a histogram of the target set's object sizes.
- `MonotonicityScaleMatch`: the source size distribution mapped onto the target's quantile to quantile, no
  sampling: a larger image size always gets a larger target size.
- `GaussianScaleMatch`: as the monotone one, onto a Gaussian of log sizes (given, or fitted to a target set).

`ScaleMatchResize` applies a matcher to one image and its boxes. Randomness: `scale_for` and the resize
take a `torch.Generator`; `scale_match_generator(seed, epoch, index)` gives one that depends only on the
run's seed, the epoch and the item, as the rest of the data order does (`tinyfast.data.sampling`). Without
one they draw from torch's global RNG, which `SeededItems` seeds per item, so they are deterministic there
too.

Where this follows the reference and where not is said at each class; deviations on purpose:
- The head and tail bins hold `floor(N * except_rate / 2)` sizes each (the reference's tail count can
  differ from its head count by one, and its histogram breaks when the middle part is empty).
- With `use_log_bins` a size is drawn uniformly in log size inside its bin and MSM interpolates in log
  size, as the bins are equal there (the reference draws and interpolates in linear size).
- A drawn scale is accepted inside the closed `scale_range` (the reference: the open interval), boxes are
  kept when both sides are at least 2 px after resizing (the reference: `x2 - x1 + 1 >= 2`), and the
  default-scale fallback drops tiny boxes by the same rule (the reference keeps them).
- Not here: the reference's `mu_sigma` option of SM/MSM (the target sizes standardised to a given mean and
  std; `GaussianScaleMatch` targets a given distribution) and its `ReAspect` transform.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist
from typing import Literal, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from tinyfast.data.annotations import AnnotationSet, annotations_from_coco, load_annotations
from tinyfast.data.corners import KEEP_RATIO, crop_boxes
from tinyfast.data.dataset import TinyPersonDataset
from tinyfast.data.errors import DataError
from tinyfast.data.sampling import EpochDataset, derived_seed

AnnotationsLike = AnnotationSet | dict | str | Path
OutScaleDeal = Literal["clip", "use_default_scale"]
SizeSource = Literal["objects", "images"]
OUT_SCALE_DEALS: tuple[str, ...] = ("clip", "use_default_scale")
SIZE_SOURCES: tuple[str, ...] = ("objects", "images")
MIN_BOX_SIDE = 2.0
# Mixed into the item's seed so that the scale draws are independent of the item's other draws (flip).
SCALE_MATCH_STREAM = 0x5CA1E


def scale_match_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """The generator of item `index` in `epoch` of a run seeded by `seed` (all non-negative ints)."""
    return torch.Generator().manual_seed(derived_seed(seed, epoch, index, SCALE_MATCH_STREAM))


def _read_annotations(annotations: AnnotationsLike, argument: str) -> AnnotationSet:
    """An AnnotationSet as it is, a COCO dict or a json path read with validation."""
    if isinstance(annotations, AnnotationSet):
        return annotations
    if isinstance(annotations, dict):
        return annotations_from_coco(annotations)
    if isinstance(annotations, (str, Path)):
        return load_annotations(annotations)
    raise TypeError(
        f"{argument} must be an AnnotationSet, a COCO dict or a json path, got {type(annotations)}"
    )


def _counted(annotations: AnnotationSet, image_id: int) -> np.ndarray:
    """The boxes of one image whose size counts: crowd and ignore boxes left out (as the reference)."""
    anns = annotations.annotations_of(image_id)
    return anns.boxes[~(anns.iscrowd | anns.ignore)]


def _box_sizes(boxes: np.ndarray) -> np.ndarray:
    return np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))


def object_sizes(annotations: AnnotationSet) -> np.ndarray:
    """sqrt(w * h) of every box of the set but crowd and ignore ones."""
    sizes = [_box_sizes(_counted(annotations, info.id)) for info in annotations.images]
    return np.concatenate(sizes) if sizes else np.zeros(0)


def mean_object_sizes(annotations: AnnotationSet) -> np.ndarray:
    """The size of each image with counted boxes: the geometric mean of their sizes (see
    `mean_object_size`)."""
    sizes = [_box_sizes(_counted(annotations, info.id)) for info in annotations.images]
    return np.array([math.exp(np.log(s).mean()) for s in sizes if len(s)])


def _sizes_or_raise(annotations: AnnotationSet, argument: str, source: str) -> np.ndarray:
    sizes = object_sizes(annotations) if source == "objects" else mean_object_sizes(annotations)
    if len(sizes) == 0:
        raise DataError(
            f"{argument} ({annotations.path}): no object boxes (crowd and ignore boxes left out) to take "
            "a size distribution from"
        )
    return sizes


def mean_object_size(boxes: torch.Tensor | np.ndarray) -> float | None:
    """The size of one image: the geometric mean of its boxes' sqrt(w * h); None without boxes.

    Boxes are `[N, 4]` x1y1x2y2; non-finite or zero-size ones raise ValueError."""
    array = np.asarray(boxes.detach().cpu() if isinstance(boxes, torch.Tensor) else boxes, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 4:
        if array.size == 0:
            return None
        raise ValueError(f"boxes must be [N, 4] x1y1x2y2, got shape {tuple(array.shape)}")
    if len(array) == 0:
        return None
    if not np.isfinite(array).all():
        raise ValueError("boxes must be finite")
    widths, heights = array[:, 2] - array[:, 0], array[:, 3] - array[:, 1]
    if (widths <= 0).any() or (heights <= 0).any():
        bad = int(np.flatnonzero((widths <= 0) | (heights <= 0))[0])
        raise ValueError(f"boxes must have positive sizes; box {bad} is {array[bad].tolist()}")
    return float(np.exp(0.5 * (np.log(widths) + np.log(heights)).mean()))


@dataclass(frozen=True, eq=False)
class SizeDistribution:
    """A piecewise-uniform distribution of object sizes: `probs[i]` of the mass lies uniformly on
    `[edges[i], edges[i + 1]]`, uniform in log size when `log` (the bins are equal there)."""

    edges: np.ndarray  # [bins + 1], non-decreasing, sizes in px
    probs: np.ndarray  # [bins], sums to 1
    log: bool = False

    @staticmethod
    def histogram(sizes: np.ndarray, bins: int, except_rate: float, log: bool = False) -> SizeDistribution:
        """The reference's target histogram: the smallest and the largest `floor(N * except_rate / 2)`
        sizes make one head and one tail bin, the rest `bins - 2` equal bins between them (`bins` equal
        bins when `except_rate` is 0)."""
        axis = np.sort(np.log(sizes) if log else np.asarray(sizes, dtype=np.float64))
        n = len(axis)
        outer = math.floor(n * except_rate / 2) if except_rate > 0 else 0
        middle = axis[outer : n - outer]  # not empty: except_rate < 1
        inner_bins = bins - 2 if except_rate > 0 else bins
        inner_edges = np.linspace(middle[0], middle[-1], inner_bins + 1)
        # Bins are closed on the left, the last one on both sides (np.histogram's rule; it cannot take
        # equal edges, which all-equal sizes give).
        index = np.searchsorted(inner_edges, middle, side="right") - 1
        counts = np.bincount(np.clip(index, 0, inner_bins - 1), minlength=inner_bins).astype(np.float64)
        if except_rate > 0:
            inner_edges = np.concatenate([[axis[0]], inner_edges, [axis[-1]]])
            counts = np.concatenate([[outer], counts, [outer]])
        edges = np.exp(inner_edges) if log else inner_edges
        return SizeDistribution(edges, counts / n, log)

    @staticmethod
    def log_normal(mean: float, std: float, bins: int, except_rate: float) -> SizeDistribution:
        """A Gaussian of log sizes cut to its `except_rate / 2` and `1 - except_rate / 2` quantiles, in
        `bins` bins of equal probability (the reference's equal-area bins)."""
        levels = np.linspace(except_rate / 2, 1 - except_rate / 2, bins + 1)
        normal = NormalDist(mean, std)
        edges = np.exp([normal.inv_cdf(float(q)) for q in levels])
        return SizeDistribution(edges, np.full(bins, 1 / bins), log=True)

    @property
    def cumulative(self) -> np.ndarray:
        """P(size <= edges[i + 1]) for each bin."""
        return np.cumsum(self.probs)

    def sample(self, generator: torch.Generator | None = None) -> float:
        """One size: a bin drawn by its probability, then a uniform position inside it."""
        index = int(torch.multinomial(torch.from_numpy(self.probs), 1, generator=generator))
        position = float(torch.rand((), dtype=torch.float64, generator=generator))
        low, high = self.edges[index], self.edges[index + 1]
        if self.log:
            return float(np.exp(np.log(low) + position * (np.log(high) - np.log(low))))
        return float(low + position * (high - low))


class SizeMatcher(abc.ABC):
    """What the three matchers share: the options of an out-of-range scale and `scale_for`."""

    def __init__(
        self,
        scale_range: Sequence[float],
        default_scale: float,
        out_scale_deal: OutScaleDeal,
    ):
        try:
            low, high = (float(v) for v in scale_range)
        except (TypeError, ValueError):
            raise ValueError(f"scale_range must be two numbers (low, high), got {scale_range!r}") from None
        if not (math.isfinite(low) and math.isfinite(high) and 0 < low < high):
            raise ValueError(f"scale_range must satisfy 0 < low < high (finite), got {scale_range!r}")
        if not _positive_finite(default_scale):
            raise ValueError(f"default_scale must be a finite number > 0, got {default_scale!r}")
        if out_scale_deal not in OUT_SCALE_DEALS:
            raise ValueError(f"out_scale_deal must be one of {OUT_SCALE_DEALS}, got {out_scale_deal!r}")
        self.scale_range = (low, high)
        self.default_scale = float(default_scale)
        self.out_scale_deal = out_scale_deal

    def scale_for(self, boxes: torch.Tensor | np.ndarray, generator: torch.Generator | None = None) -> float:
        """The resize factor of an image with these boxes (`[N, 4]` x1y1x2y2); `default_scale` without
        boxes. `generator` feeds `ScaleMatch`'s draws (the monotone matchers draw nothing)."""
        size = mean_object_size(boxes)
        return self.default_scale if size is None else self._scale_for_size(size, generator)

    @abc.abstractmethod
    def _scale_for_size(self, size: float, generator: torch.Generator | None) -> float:
        """The scale of an image of this size (> 0)."""

    def _in_range(self, scale: float) -> bool:
        return self.scale_range[0] <= scale <= self.scale_range[1]

    def _out_of_range(self, scale: float) -> float:
        if self.out_scale_deal == "clip":
            return min(max(scale, self.scale_range[0]), self.scale_range[1])
        return self.default_scale


def _positive_finite(value: object) -> bool:
    return (
        isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    )


def _check_bins(bins: object, except_rate: object) -> float:
    """The except rate to use (`2 / bins` when negative)."""
    if not isinstance(bins, int) or isinstance(bins, bool) or bins < 3:
        raise ValueError(f"bins must be an int >= 3, got {bins!r}")
    if not isinstance(except_rate, (int, float)) or isinstance(except_rate, bool) or not except_rate < 1:
        raise ValueError(f"except_rate must be a number < 1 (negative: 2 / bins), got {except_rate!r}")
    return 2 / bins if except_rate < 0 else float(except_rate)


class ScaleMatch(SizeMatcher):
    """Scale Match (SM): the target size of an image is drawn from the target set's size histogram.

    As the reference: the histogram of `target_annotations`' object sizes (`SizeDistribution.histogram`,
    crowd and ignore boxes left out); a bin drawn by its probability and a size uniform inside it; the
    scale `target / image size` redrawn up to `max_sample_try` times while outside `scale_range`, after
    which the last draw is clipped into the range (`"clip"`) or `default_scale` is used
    (`"use_default_scale"`). `use_log_bins` makes the bins equal in log size.
    """

    def __init__(
        self,
        target_annotations: AnnotationsLike,
        bins: int = 100,
        except_rate: float = -1,
        scale_range: Sequence[float] = (0.1, 1.0),
        default_scale: float = 0.25,
        out_scale_deal: OutScaleDeal = "clip",
        max_sample_try: int = 5,
        use_log_bins: bool = False,
    ):
        super().__init__(scale_range, default_scale, out_scale_deal)
        except_rate = _check_bins(bins, except_rate)
        if not isinstance(max_sample_try, int) or isinstance(max_sample_try, bool) or max_sample_try < 1:
            raise ValueError(f"max_sample_try must be an int >= 1, got {max_sample_try!r}")
        target = _read_annotations(target_annotations, "target_annotations")
        sizes = _sizes_or_raise(target, "target_annotations", "objects")
        self.target = SizeDistribution.histogram(sizes, bins, except_rate, bool(use_log_bins))
        self.max_sample_try = max_sample_try

    def _scale_for_size(self, size: float, generator: torch.Generator | None) -> float:
        for _ in range(self.max_sample_try):
            scale = self.target.sample(generator) / size
            if self._in_range(scale):
                return scale
        return self._out_of_range(scale)


class _MonotoneMatch(SizeMatcher):
    """Maps an image's size through the quantiles of a source size distribution onto `target`."""

    target: SizeDistribution
    source_edges: np.ndarray  # [bins + 1] the source sizes at the target's edges' cumulative probabilities

    def _fit(self, source_annotations: AnnotationsLike, target: SizeDistribution, source_sizes: str) -> None:
        if source_sizes not in SIZE_SOURCES:
            raise ValueError(f"source_sizes must be one of {SIZE_SOURCES}, got {source_sizes!r}")
        source = _read_annotations(source_annotations, "source_annotations")
        sizes = np.sort(_sizes_or_raise(source, "source_annotations", source_sizes))
        n = len(sizes)
        # min(): the cumulative sum can exceed 1 by rounding.
        at = np.minimum(np.floor(target.cumulative * n).astype(np.int64), n - 1)
        edges = np.concatenate([[sizes[0]], sizes[at]])
        edges[-1] = sizes[-1]
        self.target = target
        self.source_edges = edges

    def map_sizes(self, sizes: np.ndarray) -> np.ndarray:
        """The target size of each image size: monotone, piecewise linear inside the bins."""
        log = self.target.log
        source = np.log(self.source_edges) if log else self.source_edges
        target = np.log(self.target.edges) if log else self.target.edges
        x = np.clip(np.log(sizes) if log else np.asarray(sizes, dtype=np.float64), source[0], source[-1])
        # The first bin whose upper edge reaches x; empty source bins (equal edges) are passed over.
        index = np.clip(np.searchsorted(source[1:], x, side="left"), 0, len(source) - 2)
        low, high = source[index], source[index + 1]
        width = high - low
        position = np.divide(x - low, width, out=np.zeros_like(x), where=width > 0)
        mapped = target[index] + position * (target[index + 1] - target[index])
        return np.exp(mapped) if log else mapped

    def _scale_for_size(self, size: float, generator: torch.Generator | None) -> float:
        scale = float(self.map_sizes(np.array([size]))[0]) / size
        return scale if self._in_range(scale) else self._out_of_range(scale)


class MonotonicityScaleMatch(_MonotoneMatch):
    """Monotonicity Scale Match (MSM): the source size distribution mapped onto the target one, quantile
    to quantile; no sampling, so the order of the image sizes is kept.

    As the reference: the target is `ScaleMatch`'s histogram; the source edges are the source sizes at the
    target's cumulative probabilities (`sizes[floor(P * N)]`, the first one the smallest size, the last
    one the largest); a size is mapped linearly from its source bin onto the same target bin (in log size
    with `use_log_bins`) and sizes outside the source range onto the ends. `source_sizes` says which sizes
    make the source distribution: each object's (`"objects"`, the reference's MSM) or each image's
    (`"images"`, the geometric means that `scale_for` maps). Out-of-range scales are clipped or replaced by
    `default_scale` as in `ScaleMatch`.
    """

    def __init__(
        self,
        source_annotations: AnnotationsLike,
        target_annotations: AnnotationsLike,
        bins: int = 100,
        except_rate: float = -1,
        scale_range: Sequence[float] = (0.1, 1.0),
        default_scale: float = 0.25,
        out_scale_deal: OutScaleDeal = "clip",
        use_log_bins: bool = False,
        source_sizes: SizeSource = "objects",
    ):
        super().__init__(scale_range, default_scale, out_scale_deal)
        except_rate = _check_bins(bins, except_rate)
        target = _read_annotations(target_annotations, "target_annotations")
        distribution = SizeDistribution.histogram(
            _sizes_or_raise(target, "target_annotations", "objects"), bins, except_rate, bool(use_log_bins)
        )
        self._fit(source_annotations, distribution, source_sizes)


class GaussianScaleMatch(_MonotoneMatch):
    """MSM onto a Gaussian of log sizes: `mean` and `std` of log(sqrt(w * h)) as given, or those of the
    target set's object sizes for what is not given.

    As the reference's GaussianScaleMatch: equal-probability bins and log-size interpolation; by default
    the source distribution is that of the image sizes. Unlike it, the Gaussian's quantiles are computed
    (the reference reads them from a file of standard normal samples), cut at the `except_rate / 2` and
    `1 - except_rate / 2` quantiles (default `2 / bins`: the first and the last percentile for 100 bins).
    """

    def __init__(
        self,
        source_annotations: AnnotationsLike,
        target_annotations: AnnotationsLike | None = None,
        mean: float | None = None,
        std: float | None = None,
        bins: int = 100,
        except_rate: float = -1,
        scale_range: Sequence[float] = (0.1, 1.0),
        default_scale: float = 0.25,
        out_scale_deal: OutScaleDeal = "clip",
        source_sizes: SizeSource = "images",
    ):
        super().__init__(scale_range, default_scale, out_scale_deal)
        except_rate = _check_bins(bins, except_rate)
        if except_rate == 0:
            raise ValueError("except_rate must not be 0 for a Gaussian (its tails are unbounded)")
        if mean is None or std is None:
            if target_annotations is None:
                raise ValueError("GaussianScaleMatch needs target_annotations or both mean and std")
            target = _read_annotations(target_annotations, "target_annotations")
            log_sizes = np.log(_sizes_or_raise(target, "target_annotations", "objects"))
            mean = float(log_sizes.mean()) if mean is None else mean
            std = float(log_sizes.std()) if std is None else std
        if not isinstance(mean, (int, float)) or isinstance(mean, bool) or not math.isfinite(mean):
            raise ValueError(f"mean must be a finite number (of log sizes), got {mean!r}")
        if not _positive_finite(std):
            raise ValueError(f"std must be a finite number > 0 (of log sizes), got {std!r}")
        self.mean, self.std = float(mean), float(std)
        self._fit(source_annotations, SizeDistribution.log_normal(mean, std, bins, except_rate), source_sizes)


class ScaleMatched(NamedTuple):
    image: torch.Tensor  # C x H' x W', the input's dtype
    boxes: torch.Tensor  # [K, 4] the kept boxes in the resized image
    keep: torch.Tensor  # [N] bool: which input boxes were kept (select their labels with it)
    ignore_boxes: torch.Tensor  # [M, 4] every ignore box, resized
    scale: float  # the factor applied (before rounding the image size)
    fell_back: bool  # every box was under MIN_BOX_SIDE at the matched scale: default_scale was used


class ScaleMatchResize:
    """Resizes an image and its boxes by the matcher's scale (bilinear, antialiased when shrinking) and
    drops the boxes with a side under `min_box_side` px after resizing. When that leaves an image that had
    boxes without any, the image is resized by `default_scale` instead (with the same rule for its boxes).
    Boxes are scaled by the rounded image size's factors on each axis.
    """

    def __init__(self, matcher: SizeMatcher, min_box_side: float = MIN_BOX_SIDE):
        if not isinstance(matcher, SizeMatcher):
            raise TypeError(
                f"matcher must be a ScaleMatch, MonotonicityScaleMatch or GaussianScaleMatch, got {matcher!r}"
            )
        if not _positive_finite(min_box_side):
            raise ValueError(f"min_box_side must be a finite number > 0, got {min_box_side!r}")
        self.matcher, self.min_box_side = matcher, float(min_box_side)

    def __call__(
        self,
        image: torch.Tensor,
        boxes: torch.Tensor,
        ignore_boxes: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> ScaleMatched:
        if image.ndim != 3 or min(image.shape[1:]) < 1:
            raise ValueError(f"image must be a non-empty C x H x W tensor, got shape {tuple(image.shape)}")
        boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
        ignore = (
            torch.zeros(0, 4) if ignore_boxes is None else torch.as_tensor(ignore_boxes, dtype=torch.float32)
        )
        ignore = ignore.reshape(-1, 4).to(boxes.device)
        scale = self.matcher.scale_for(boxes, generator)
        factors, size = _resize_factors(image, scale, boxes.device)
        resized = boxes * factors
        keep = self._large_enough(resized)
        fell_back = len(boxes) > 0 and not bool(keep.any())
        if fell_back:
            scale = self.matcher.default_scale
            factors, size = _resize_factors(image, scale, boxes.device)
            resized = boxes * factors
            keep = self._large_enough(resized)
        return ScaleMatched(
            _resize_image(image, size), resized[keep], keep, ignore * factors, scale, fell_back
        )

    def _large_enough(self, boxes: torch.Tensor) -> torch.Tensor:
        return ((boxes[:, 2:] - boxes[:, :2]) >= self.min_box_side).all(dim=1)


def _resize_factors(
    image: torch.Tensor, scale: float, device: torch.device
) -> tuple[torch.Tensor, tuple[int, int]]:
    """The box factors (x, y, x, y) of resizing `image` by `scale` to the rounded size (h, w)."""
    height, width = image.shape[1:]
    size = (max(1, round(scale * height)), max(1, round(scale * width)))
    return torch.tensor([size[1] / width, size[0] / height] * 2, device=device), size


def _resize_image(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(image.shape[1:]) == size:
        return image
    shrink = size[0] < image.shape[1] or size[1] < image.shape[2]
    resized = F.interpolate(
        image[None].float(), size=size, mode="bilinear", align_corners=False, antialias=shrink
    )[0]
    if image.dtype.is_floating_point:
        return resized.to(image.dtype)
    info = torch.iinfo(image.dtype)
    return resized.round_().clamp_(info.min, info.max).to(image.dtype)


class ScaleMatchedDataset(EpochDataset):
    """The training items of `dataset` (whole images, see `TinyPersonDataset(cut=False)`) resized by
    `resize` with the generator `scale_match_generator(seed, epoch, index)`: a new scale for every image
    every epoch, the same in any process and after a resume. Boxes that the dataset clipped to nothing
    (a box on the image's edge) are left out before the scale is chosen.

    An image larger than `crop_size` (width, height) after resizing is cropped to it at a position drawn
    from the same generator; boxes crossing the crop are kept as the training cuts keep them
    (`crop_boxes`, side ratio at least `KEEP_RATIO`), ignore boxes clipped to it. The target gets `scale`
    (the factor applied) and `crop_offset`, `size` in the resized image's pixels.
    """

    def __init__(
        self,
        dataset: TinyPersonDataset,
        resize: ScaleMatchResize,
        seed: int,
        crop_size: tuple[int, int] | None = None,
    ):
        if crop_size is not None and not (
            len(crop_size) == 2 and all(isinstance(v, int) and v > 0 for v in crop_size)
        ):
            raise ValueError(f"crop_size must be (width, height), two ints > 0, or None; got {crop_size!r}")
        self.dataset, self.resize, self.seed, self.crop_size = dataset, resize, seed, crop_size

    def __len__(self) -> int:
        return len(self.dataset)

    def get(self, index: int, epoch: int) -> tuple[torch.Tensor, dict]:
        image, target = self.dataset[index]
        generator = scale_match_generator(self.seed, epoch, index)
        boxes = target["boxes"]
        present = ((boxes[:, 2:] - boxes[:, :2]) > 0).all(dim=1)
        matched = self.resize(image, boxes[present], target["boxes_ignore"], generator)
        image, boxes, ignore = matched.image, matched.boxes, matched.ignore_boxes
        labels = target["labels"][present][matched.keep]
        offset = (0, 0)
        if self.crop_size is not None:
            image, boxes, labels, ignore, offset = _random_crop(
                image, boxes, labels, ignore, self.crop_size, generator
            )
        target = {
            **target,
            "boxes": boxes,
            "labels": labels,
            "boxes_ignore": ignore,
            "crop_offset": offset,
            "size": tuple(image.shape[1:]),
            "scale": matched.scale,
        }
        return image.contiguous(), target


def _random_crop(image, boxes, labels, ignore, crop_size, generator):
    """`image` cropped to at most `crop_size` (width, height) at a drawn position, with its boxes."""
    height, width = image.shape[1:]
    crop_w, crop_h = min(crop_size[0], width), min(crop_size[1], height)
    if (crop_w, crop_h) == (width, height):
        return image, boxes, labels, ignore, (0, 0)
    x = int(torch.randint(width - crop_w + 1, (), generator=generator))
    y = int(torch.randint(height - crop_h + 1, (), generator=generator))
    corner = (x, y, x + crop_w, y + crop_h)
    kept, index = crop_boxes(boxes.numpy().astype(np.float64), corner, KEEP_RATIO)
    clipped, _ = crop_boxes(ignore.numpy().astype(np.float64), corner, 0.0)
    sides = clipped[:, 2:] - clipped[:, :2]
    clipped = clipped[(sides > 0).all(axis=1)]
    return (
        image[:, y : y + crop_h, x : x + crop_w],
        torch.from_numpy(kept).float(),
        labels[torch.from_numpy(index)],
        torch.from_numpy(clipped).float(),
        (x, y),
    )
