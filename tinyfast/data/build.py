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

from tinyfast.data.annotations import TASKS
from tinyfast.data.dataset import TinyPersonDataset
from tinyfast.data.synthetic import PRESETS, generate
from tinyfast.data.transforms import NORMALIZATIONS
from tinyfast.utils.schema import Flag, Integer, OneOf, ScaleFactor, Section, Sequence, Text, setting


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


DATASET_PATHS = ("train_annotations", "test_annotations", "train_images", "test_images")


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


def train_dataset(data: DataConfig) -> TinyPersonDataset:
    return TinyPersonDataset(
        data.train_annotations,
        data.train_images,
        task=data.task,
        train=True,
        erase=data.erase,
        skip_dense=data.skip_dense,
        min_objects=data.min_objects_per_cut,
        sub_size=data.sub_size,
        normalization=data.normalization,
        image_scale=data.image_scale,
    )
