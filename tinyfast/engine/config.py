"""Configs: TOML files that may name a `base` file to extend, plus `key.sub=value` overrides.

A value given on the command line is read as a TOML value (`train.lr=0.02`, `model.pretrained=false`,
`train.steps=[8,11]`), or as a string when it is not one (`data.root=runs/x`). Overriding a key that the
config does not have is an error, so that a typo never goes unnoticed.
"""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
DEFAULT_CONFIG = CONFIG_DIR / "fcos_synthetic.toml"


def _merge(base: dict, update: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _read(path: Path) -> dict:
    if not path.is_file():
        raise ValueError(f"config file {path} does not exist")
    try:
        with path.open("rb") as file:
            data = tomllib.load(file)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"config file {path} is not valid TOML: {error}") from None
    base = data.pop("base", None)
    return _merge(_read(path.parent / base), data) if base else data


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
    config = _read(Path(path) if path is not None else DEFAULT_CONFIG)
    for override in overrides:
        apply_override(config, override)
    return config
