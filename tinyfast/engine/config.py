"""Configs: TOML files that may name a `base` file to extend, plus `key.sub=value` overrides.

A value given on the command line is read as a TOML value (`train.lr=0.02`, `model.pretrained=false`,
`train.steps=[8,11]`), or as a string when it is not one (`data.root=runs/x`). Overriding a key that the
config does not have is an error, so that a typo never goes unnoticed.

Every key of every section has a type and an allowed range (`TrainConfig`, `TestConfig`,
`tinyfast.data.build.DataConfig`, the detector configs of `tinyfast.modeling`), checked by `load_config`
before any data or model is built: a bad value is a ValueError naming the key and the value.
"""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from tinyfast.data.build import DataConfig, resolve_dataset_paths
from tinyfast.engine.distributed import DEVICES
from tinyfast.engine.optim import WARMUPS
from tinyfast.modeling.build import model_settings
from tinyfast.utils.schema import (
    FRACTION,
    POSITIVE,
    Flag,
    Integer,
    OneOf,
    Real,
    Section,
    Sequence,
    Text,
    setting,
)

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
DEFAULT_CONFIG = CONFIG_DIR / "fcos_synthetic.toml"
AMP_DTYPES = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}
NON_NEGATIVE = Real(0)


@dataclass(frozen=True)
class TrainConfig(Section):
    """The `[train]` section (its defaults and their meaning: `configs/base.toml`)."""

    section: ClassVar[str] = "train"

    device: str = setting(OneOf(DEVICES))
    epochs: int = setting(Integer(1))
    steps: tuple[int, ...] = setting(Sequence(Integer(1)))
    batch_size: int = setting(Integer(1))
    workers: int = setting(Integer(0))
    seed: int = setting(Integer(0, 2**32 - 1))  # numpy's seeds are 32-bit
    deterministic: bool = setting(Flag())
    lr: float = setting(POSITIVE)
    reference_batch: int = setting(Integer(1))
    amp: str = setting(OneOf(tuple(AMP_DTYPES)))
    momentum: float = setting(FRACTION)
    weight_decay: float = setting(NON_NEGATIVE)
    bias_lr_mult: float = setting(NON_NEGATIVE)
    bias_decay_mult: float = setting(NON_NEGATIVE)
    warmup: str = setting(OneOf(WARMUPS))
    warmup_iters: int = setting(Integer(0))
    warmup_ratio: float = setting(FRACTION)
    grad_clip: float = setting(NON_NEGATIVE)
    keep_checkpoints: int = setting(Integer(0))
    checkpoint_interval: int = setting(Integer(0))
    auto_resume: bool = setting(Flag())
    skip_bad_batches: int = setting(Integer(0))
    max_iters_per_epoch: int = setting(Integer(0))


@dataclass(frozen=True)
class TestConfig(Section):
    """The `[test]` section (its defaults and their meaning: `configs/base.toml`)."""

    section: ClassVar[str] = "test"
    __test__: ClassVar[bool] = False  # not a pytest class

    policy: str = setting(OneOf(("during", "after")))
    eval_interval: int = setting(Integer(-1))
    images_per_batch: int = setting(Integer(1))


@dataclass(frozen=True)
class RunConfig:
    """A whole config, every section checked: `RunConfig.from_config(load_config(...))`."""

    run_dir: str
    data: DataConfig
    train: TrainConfig
    test: TestConfig
    model: Any  # the config dataclass of the detector `model.name` names

    @classmethod
    def from_config(cls, config: Any) -> RunConfig:
        if not isinstance(config, Mapping):
            raise ValueError(f"a config must be a table of sections, got {config!r}")
        known = ("run_dir", "data", "train", "test", "model")
        unknown = sorted(set(config) - set(known))
        if unknown:
            raise ValueError(f"{unknown[0]} is not a section or key of a config (known: {', '.join(known)})")
        missing = [key for key in known if key not in config]
        if missing:
            raise ValueError(
                f"the config has no {missing[0]} (a config has a [model] and extends configs/base.toml)"
            )
        return cls(
            Text().validate(config["run_dir"], "run_dir"),
            DataConfig.from_config(config["data"]),
            TrainConfig.from_config(config["train"]),
            TestConfig.from_config(config["test"]),
            model_settings(config["model"]),
        )


def check_config(config: Any, *, partial: bool = False) -> None:
    """Raises a ValueError naming the first key whose value is of the wrong type or out of range;
    `partial`: a config that other configs extend (no [model] needed), its present sections checked."""
    if partial and isinstance(config, Mapping) and "model" not in config:
        sections = {"data": DataConfig, "train": TrainConfig, "test": TestConfig}
        for name, values in config.items():
            if name in sections:
                sections[name].from_config(values)
            elif name == "run_dir":
                Text().validate(values, "run_dir")
            else:
                raise ValueError(f"{name} is not a section or key of a config")
        return
    RunConfig.from_config(config)


def _merge(base: dict, update: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _read(path: Path, extending: tuple[Path, ...] = ()) -> dict:
    if not path.is_file():
        raise ValueError(f"config file {path} does not exist")
    if path.resolve() in extending:
        chain = " -> ".join(str(p) for p in (*extending, path.resolve()))
        raise ValueError(f"config file {path}: its base names itself ({chain})")
    try:
        with path.open("rb") as file:
            data = tomllib.load(file)
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"config file {path} is not valid TOML: {error}") from None
    base = data.pop("base", None)
    if base is not None and not isinstance(base, str):
        raise ValueError(f"config file {path}: base must be a file name, got {base!r}")
    return _merge(_read(path.parent / base, (*extending, path.resolve())), data) if base else data


def _parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text


def apply_override(config: dict, override: str) -> None:
    key, separator, text = override.partition("=")
    if not separator or not key:
        raise ValueError(f"override {override!r} is not of the form key.sub=value")
    *parents, leaf = key.split(".")
    node = config
    for part in parents:
        if not isinstance(node.get(part), dict):
            raise ValueError(f"override {override!r}: the config has no section {part!r}")
        node = node[part]
    if leaf not in node:
        known = ", ".join(sorted(node))
        raise ValueError(f"override {override!r}: unknown key {key!r} (known here: {known})")
    node[leaf] = _parse_value(text)


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> dict:
    """The config file (default: `DEFAULT_CONFIG`) with its bases and the overrides, every key checked
    (`check_config`; a config without [model], such as base.toml, is checked section by section), and the
    dataset paths resolved against `data.root` (`tinyfast.data.build.resolve_dataset_paths`)."""
    config = _read(Path(path) if path is not None else DEFAULT_CONFIG)
    for override in overrides:
        apply_override(config, override)
    check_config(config, partial=True)
    if "data" in config:
        config["data"] = resolve_dataset_paths(config["data"])
    return config
