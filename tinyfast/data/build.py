"""The `[data]` section of a config, checked, and the datasets it describes.

`data.root` is the one place a dataset lives: a relative path in one of `DATASET_PATHS` is read inside it
(`train_annotations = "annotations/tiny_set_train.json"` with `root = "/data/tiny_set"` is
`/data/tiny_set/annotations/tiny_set_train.json`), so that `data.root=DIR` moves a whole dataset. A path
that starts with `./` or `../` is relative to the working folder instead (as `root` itself), an absolute
path is taken as it is, and an empty root leaves every path relative to the working folder.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from torch.utils.data import ConcatDataset, Dataset

from tinyfast.data.annotations import TASKS, AnnotationSet, load_annotations
from tinyfast.data.dataset import TinyPersonDataset
from tinyfast.data.points import POINT_SOURCES, training_points
from tinyfast.data.scale_match import (
    OUT_SCALE_DEALS,
    GaussianScaleMatch,
    MonotonicityScaleMatch,
    ScaleMatch,
    ScaleMatchedDataset,
    ScaleMatchResize,
    SizeMatcher,
)
from tinyfast.data.synthetic import PRESETS, generate
from tinyfast.data.transforms import NORMALIZATIONS, axis_scales
from tinyfast.utils.schema import (
    POSITIVE,
    Flag,
    Integer,
    OneOf,
    Real,
    ScaleFactor,
    Section,
    Sequence,
    Text,
    setting,
)

SCALE_MATCHES = ("none", "sm", "msm", "gaussian")


@dataclass(frozen=True)
class DataConfig(Section):
    """The `[data]` section (its defaults and their meaning: `configs/base.toml`)."""

    section: ClassVar[str] = "data"

    root: str = setting(Text())
    train_annotations: str = setting(Text())
    test_annotations: str = setting(Text())
    train_images: str = setting(Text())
    test_images: str = setting(Text())
    synthetic_preset: str = setting(OneOf(("", *PRESETS)))
    synthetic_seed: int = setting(Integer(0))
    task: str = setting(OneOf(TASKS))
    erase: bool = setting(Flag())
    skip_dense: bool = setting(Flag())
    min_objects_per_cut: int = setting(Integer(1))
    sub_size: tuple[int, int] = setting(Sequence(Integer(1), length=2))
    normalization: str = setting(OneOf(tuple(NORMALIZATIONS)))
    skip_bad_images: bool = setting(Flag())
    image_scale: float | tuple[float, float] = setting(ScaleFactor())
    image_scale_multiples: tuple[float, ...] = setting(Sequence(POSITIVE, min_length=1))
    points: str = setting(OneOf(("", *POINT_SOURCES)))
    points_seed: int = setting(Integer(0, 2**32 - 1))
    train_categories: tuple[str, ...] = setting(Sequence(Text()))
    skip_bad_annotations: bool = setting(Flag())
    scale_match: str = setting(OneOf(SCALE_MATCHES))
    scale_match_target: str = setting(Text())
    scale_match_bins: int = setting(Integer(3))
    scale_match_except_rate: float = setting(Real(high=1, high_open=True))
    scale_match_range: tuple[float, float] = setting(Sequence(POSITIVE, length=2))
    scale_match_default_scale: float = setting(POSITIVE)
    scale_match_out_scale_deal: str = setting(OneOf(OUT_SCALE_DEALS))
    scale_match_max_sample_try: int = setting(Integer(1))
    scale_match_log_bins: bool = setting(Flag())
    scale_match_gaussian: tuple[float, ...] = setting(Sequence(Real()))

    def __post_init__(self):
        """The checks across keys (each key's own are its setting's)."""
        low, high = self.scale_match_range
        if not low < high:
            raise ValueError(
                "data.scale_match_range must be [low, high] with low < high, got "
                f"{list(self.scale_match_range)}"
            )
        gaussian = self.scale_match_gaussian
        if len(gaussian) not in (0, 2) or (gaussian and gaussian[1] <= 0):
            raise ValueError(
                "data.scale_match_gaussian must be [] (fitted to data.scale_match_target) or [mean, std] of "
                f"the log sizes with std > 0, got {list(gaussian)}"
            )
        needs_target = self.scale_match in ("sm", "msm") or (self.scale_match == "gaussian" and not gaussian)
        if needs_target and not self.scale_match_target:
            raise ValueError(
                f"data.scale_match = {self.scale_match!r} needs data.scale_match_target, the annotations "
                "json of the target set (TinyPerson's training json)"
                + (" or data.scale_match_gaussian = [mean, std]" if self.scale_match == "gaussian" else "")
            )
        if len(self.image_scale_multiples) > 1 and self.scale_match != "none":
            raise ValueError(
                f"data.image_scale_multiples = {list(self.image_scale_multiples)} and data.scale_match = "
                f"{self.scale_match!r} do not go together: Scale Match draws each image's scale itself"
            )
        if self.points and self.scale_match != "none":
            raise ValueError(
                f"data.points = {self.points!r} and data.scale_match = {self.scale_match!r} do not go "
                "together: Scale Match resizes box-annotated images (leave one of them unset)"
            )


DATASET_PATHS = ("train_annotations", "test_annotations", "train_images", "test_images", "scale_match_target")


def resolve_dataset_paths(data: Mapping) -> dict:
    """The `[data]` table with its dataset paths resolved against `data.root` (see the module's docstring),
    made absolute so that resolving again changes nothing (a run folder's saved config loads as it ran)."""
    resolved = dict(data)
    root = data.get("root")
    if not isinstance(root, str) or not root:
        return resolved
    for key in DATASET_PATHS:
        path = data.get(key)
        if isinstance(path, str) and path and not path.startswith(("./", "../")):
            resolved[key] = os.path.abspath(os.path.join(root, path))
    return resolved


def prepare_data(data: DataConfig) -> None:
    """Writes the synthetic set on first use when the config names a preset and its folder is empty."""
    if data.synthetic_preset and not Path(data.train_annotations).is_file():
        generate(data.root, data.synthetic_preset, data.synthetic_seed)


def train_dataset(data: DataConfig, seed: int = 0) -> Dataset:
    """The training items: the cuts of the training images resized by `data.image_scale` times each of
    `data.image_scale_multiples` (with several, the cuts at every scale, one set after the other), or with
    `data.scale_match` the whole images resized by Scale Match (a new scale per image, epoch and `seed`, the
    run's `train.seed`) and cropped to `data.sub_size` where larger. With `data.points` set, each item
    carries the points of its objects (`target["points"]`, from `tinyfast.data.points.training_points`)."""
    matched = data.scale_match != "none"
    annotations = (
        training_points(data.train_annotations, data.points, data.points_seed)
        if data.points
        else data.train_annotations
    )
    x, y = axis_scales(data.image_scale)
    datasets = [
        TinyPersonDataset(
            annotations,
            data.train_images,
            task=data.task,
            train=True,
            cut=False if matched else None,
            erase=data.erase,
            skip_dense=data.skip_dense,
            min_objects=data.min_objects_per_cut,
            sub_size=data.sub_size,
            normalization=data.normalization,
            on_error="skip" if data.skip_bad_annotations else "raise",
            categories=data.train_categories or None,
            image_scale=(x * multiple, y * multiple),
        )
        for multiple in data.image_scale_multiples
    ]
    if not matched:
        return datasets[0] if len(datasets) == 1 else ConcatDataset(datasets)
    dataset = datasets[0]
    resize = ScaleMatchResize(scale_matcher(data, dataset.annotations))
    return ScaleMatchedDataset(dataset, resize, seed, data.sub_size)


def scale_matcher(data: DataConfig, source: AnnotationSet) -> SizeMatcher:
    """The matcher `data.scale_match` names with its options; `source` is the training set (MSM and the
    Gaussian map its size distribution)."""
    common = {
        "bins": data.scale_match_bins,
        "except_rate": data.scale_match_except_rate,
        "scale_range": data.scale_match_range,
        "default_scale": data.scale_match_default_scale,
        "out_scale_deal": data.scale_match_out_scale_deal,
    }
    target = load_annotations(data.scale_match_target) if data.scale_match_target else None
    if data.scale_match == "sm":
        return ScaleMatch(
            target,
            **common,
            max_sample_try=data.scale_match_max_sample_try,
            use_log_bins=data.scale_match_log_bins,
        )
    if data.scale_match == "msm":
        return MonotonicityScaleMatch(source, target, **common, use_log_bins=data.scale_match_log_bins)
    if data.scale_match == "gaussian":
        mean, std = data.scale_match_gaussian or (None, None)
        return GaussianScaleMatch(source, target, mean, std, **common)
    raise ValueError(f"data.scale_match = {data.scale_match!r} names no matcher (one of {SCALE_MATCHES[1:]})")
