"""Configs: TOML files that may name a `base` file to extend, plus `key.sub=value` overrides.

A config is a path or the name of one shipped in the package (`tinyfast/configs/`): `fcos_rpi640` or
`fcos_rpi640.toml`. `to_toml` writes a resolved config back as TOML (a run folder's `config.toml`).

A value given on the command line is read as a TOML value (`train.lr=0.02`, `model.pretrained=false`,
`train.steps=[8,11]`), or as a string when it is not one (`data.root=runs/x`). Overriding a key that the
config does not have is an error, so that a typo never goes unnoticed (a `[model]` key that the config
leaves at the detector's default, such as `model.init_from`, can be given).

Every key of every section has a type and an allowed range (`TrainConfig`, `TestConfig`,
`tinyfast.data.build.DataConfig`, the detector configs of `tinyfast.modeling`), checked by `load_config`
before any data or model is built: a bad value is a ValueError naming the key and the value.
"""

from __future__ import annotations

import copy
import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from tinyfast.data.build import DataConfig, resolve_dataset_paths
from tinyfast.engine.distributed import DEVICES
from tinyfast.engine.optim import WARMUPS
from tinyfast.modeling.build import model_keys, model_settings
from tinyfast.tiling.inference import TRUNCATED
from tinyfast.utils.precision import PRECISION_SETTINGS
from tinyfast.utils.schema import (
    FRACTION,
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

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
DEFAULT_CONFIG = CONFIG_DIR / "fcos_synthetic.toml"
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def shipped_configs() -> list[str]:
    """The names of the configs that ship with the package (`tinyfast/configs/*.toml`)."""
    return sorted(path.stem for path in CONFIG_DIR.glob("*.toml"))


def config_path(config: str | Path) -> Path:
    """`config` itself when it is a file, else the shipped config of that name (with or without `.toml`);
    ValueError naming it and the shipped names when it is neither."""
    path = Path(config)
    if path.is_file():
        return path
    if path.parent == Path(".") and (CONFIG_DIR / path.with_suffix(".toml").name).is_file():
        return CONFIG_DIR / path.with_suffix(".toml").name
    raise ValueError(
        f"config file {config} does not exist and is not the name of a shipped config "
        f"({', '.join(shipped_configs())})"
    )


NON_NEGATIVE = Real(0)


@dataclass(frozen=True)
class TrainConfig(Section):
    """The `[train]` section (its defaults and their meaning: `configs/base.toml`)."""

    section: ClassVar[str] = "train"

    device: str = setting(OneOf(DEVICES))
    epochs: int = setting(Integer(1))
    steps: tuple[int, ...] = setting(Sequence(Integer(1)))
    batch_size: int = setting(Integer(1))
    workers: int = setting(Integer(-1))  # -1: sized to the cores (tinyfast.data.sampling.loader_workers)
    seed: int = setting(Integer(0, 2**32 - 1))  # numpy's seeds are 32-bit
    deterministic: bool = setting(Flag())
    lr: float = setting(POSITIVE)
    reference_batch: int = setting(Integer(1))
    amp: str = setting(OneOf(PRECISION_SETTINGS))
    momentum: float = setting(FRACTION)
    weight_decay: float = setting(NON_NEGATIVE)
    bias_lr_mult: float = setting(NON_NEGATIVE)
    bias_decay_mult: float = setting(NON_NEGATIVE)
    warmup: str = setting(OneOf(WARMUPS))
    warmup_iters: int = setting(Integer(0))
    warmup_ratio: float = setting(FRACTION)
    grad_clip: float = setting(NON_NEGATIVE)
    ema_decay: float = setting(Real(0, 1, high_open=True))
    ema_ramp_iters: float = setting(NON_NEGATIVE)
    keep_checkpoints: int = setting(Integer(0))
    checkpoint_interval: int = setting(Integer(0))
    auto_resume: bool = setting(Flag())
    skip_bad_batches: int = setting(Integer(0))
    max_iters_per_epoch: int = setting(Integer(0))
    budget_s: float = setting(NON_NEGATIVE)


@dataclass(frozen=True)
class TestConfig(Section):
    """The `[test]` section (its defaults and their meaning: `configs/base.toml`)."""

    section: ClassVar[str] = "test"
    __test__: ClassVar[bool] = False  # not a pytest class

    policy: str = setting(OneOf(("during", "after")))
    eval_interval: int = setting(Integer(-1))
    images_per_batch: int = setting(Integer(1))
    tile: tuple[int, int] = setting(Sequence(Integer(1), length=2))
    overlap: tuple[int, int] = setting(Sequence(Integer(0), length=2))
    scales: tuple[float | tuple[float, float], ...] = setting(Sequence(ScaleFactor(), min_length=1))
    flips: bool = setting(Flag())
    truncated: str = setting(OneOf(TRUNCATED))
    max_per_img: int = setting(Integer(0))
    tile_batch_size: int = setting(Integer(1))
    precision: str = setting(OneOf(PRECISION_SETTINGS))
    point_merge_distance: float = setting(POSITIVE)
    compile: bool = setting(Flag())


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
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
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
    if leaf not in node and not (parents == ["model"] and leaf in _model_keys(node)):
        known = ", ".join(sorted(node))
        raise ValueError(f"override {override!r}: unknown key {key!r} (known here: {known})")
    node[leaf] = _parse_value(text)


def _model_keys(model: dict) -> tuple[str, ...]:
    """The keys of the `[model]` section's detector (a key it leaves at its default can be overridden)."""
    try:
        return model_keys(model)
    except ValueError:  # no known model.name: checked when the config loads
        return ()


def with_defaults(config: dict) -> dict:
    """`config` over the shipped `base.toml`: a config saved by an older version (a checkpoint's) gets the
    defaults of the keys added since."""
    return _merge(_read(CONFIG_DIR / "base.toml"), config)


def load_run_config(path: str | Path) -> dict:
    """A run folder's `config.toml` (the whole config as the run used it) with the defaults of the keys
    added since it was written (`with_defaults`), so that an older run folder still loads; not checked."""
    return with_defaults(_read(Path(path)))


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> dict:
    """The config at `path` (a file or a shipped config's name; default: the embedded default run's) with
    its bases and the overrides, every key checked (`check_config`; a config without [model], such as
    base.toml, is checked section by section), and the dataset paths resolved against `data.root`
    (`tinyfast.data.build.resolve_dataset_paths`)."""
    config = _read(config_path(path) if path is not None else DEFAULT_CONFIG)
    for override in overrides:
        apply_override(config, override)
    check_config(config, partial=True)
    if "data" in config:
        config["data"] = resolve_dataset_paths(config["data"])
    return config


def _toml_string(text: str) -> str:
    """A TOML basic string: backslash, quote and the control characters (U+0000-U+001F, U+007F) escaped."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + re.sub(r"[\x00-\x1f\x7f]", lambda m: f"\\u{ord(m.group()):04x}", escaped) + '"'


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _toml_string(key)


def _toml_value(value, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return repr(value)  # 1.0, 1e-05, inf, -inf: all TOML floats
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(item, f"{where}[{i}]") for i, item in enumerate(value)) + "]"
    raise ValueError(f"config value {where} = {value!r} has no TOML form ({type(value).__name__})")


def to_toml(config: dict) -> str:
    """`config` (str, int, float, bool, lists of them, nested dicts) as TOML that `tomllib` reads back
    equal: the top-level values first, then one table per dict."""
    lines: list[str] = []

    def table(node: dict, prefix: list[str]) -> None:
        values = [(k, v) for k, v in node.items() if not isinstance(v, dict)]
        tables = [(k, v) for k, v in node.items() if isinstance(v, dict)]
        if prefix and (values or not tables):
            lines.extend(["", "[" + ".".join(_toml_key(k) for k in prefix) + "]"])
        for key, value in values:
            lines.append(f"{_toml_key(key)} = {_toml_value(value, '.'.join([*prefix, key]))}")
        for key, value in tables:
            table(value, [*prefix, key])

    table(config, [])
    return "\n".join(lines).lstrip("\n") + "\n"
