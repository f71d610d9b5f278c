"""Typed config sections: dataclasses whose fields carry their type and allowed range, and one validator.

A section class declares each key with `setting(check, default)`; `from_section(cls, values, "train")` (or
`Cls.from_config(values)` for a `Section`) builds it from a config table, naming the key and the value of
the first problem in a ValueError (`train.epochs must be an int >= 1, got -1`). Unknown keys are errors
too, so that a typo never goes unnoticed. A bool is never a number, and TOML arrays become tuples.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

T = TypeVar("T")


class Check:
    """What one key accepts: `validate` returns the value to store, or raises naming the key."""

    def validate(self, value: Any, key: str) -> Any:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def _error(self, value: Any, key: str) -> ValueError:
        return ValueError(f"{key} must be {self.describe()}, got {value!r}")


def _number(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


def _bound_text(low, high, low_open: bool = False, high_open: bool = False) -> str:
    if low is not None and high is not None:
        return f" in {'(' if low_open else '['}{_number(low)}, {_number(high)}{')' if high_open else ']'}"
    if low is not None:
        return f" {'>' if low_open else '>='} {_number(low)}"
    return f" {'<' if high_open else '<='} {_number(high)}" if high is not None else ""


@dataclass(frozen=True)
class Integer(Check):
    low: int | None = None
    high: int | None = None

    def validate(self, value, key):
        if not isinstance(value, int) or isinstance(value, bool):
            raise self._error(value, key)
        if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
            raise self._error(value, key)
        return value

    def describe(self):
        return "an int" + _bound_text(self.low, self.high)


@dataclass(frozen=True)
class Real(Check):
    """A float (an int is accepted and stored as a float); finite unless `allow_inf`."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False  # the value must be > low (not >=)
    high_open: bool = False  # the value must be < high (not <=)
    allow_inf: bool = False

    def validate(self, value, key):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or math.isnan(value):
            raise self._error(value, key)
        if math.isinf(value) and not self.allow_inf:
            raise self._error(value, key)
        below = self.low is not None and (value <= self.low if self.low_open else value < self.low)
        above = self.high is not None and (value >= self.high if self.high_open else value > self.high)
        if below or above:
            raise self._error(value, key)
        return float(value)

    def describe(self):
        kind = "a number" if self.allow_inf else "a finite number"
        return kind + _bound_text(self.low, self.high, self.low_open, self.high_open)


@dataclass(frozen=True)
class Flag(Check):
    def validate(self, value, key):
        if not isinstance(value, bool):
            raise self._error(value, key)
        return value

    def describe(self):
        return "true or false"


@dataclass(frozen=True)
class Text(Check):
    def validate(self, value, key):
        if not isinstance(value, str):
            raise self._error(value, key)
        return value

    def describe(self):
        return "a string"


@dataclass(frozen=True)
class OneOf(Check):
    choices: tuple[str, ...]

    def validate(self, value, key):
        if not isinstance(value, str) or value not in self.choices:
            raise self._error(value, key)
        return value

    def describe(self):
        return f"one of {list(self.choices)}"


@dataclass(frozen=True)
class Sequence(Check):
    """An array of `item`s (a tuple once validated), of exactly `length` items or at least `min_length`."""

    item: Check
    length: int | None = None
    min_length: int = 0

    def validate(self, value, key):
        if not isinstance(value, (list, tuple)):
            raise self._error(value, key)
        if (self.length is not None and len(value) != self.length) or len(value) < self.min_length:
            raise self._error(value, key)
        return tuple(self.item.validate(item, f"{key}[{index}]") for index, item in enumerate(value))

    def describe(self):
        if self.length is not None:
            count = f"{self.length}"
        elif self.min_length:
            count = f"at least {self.min_length}"
        else:
            count = "any number of"
        return f"an array of {count} item(s), each {self.item.describe()}"


POSITIVE = Real(0, low_open=True)
FRACTION = Real(0, 1)


@dataclass(frozen=True)
class ScaleFactor(Check):
    """A resize factor: a number > 0 for both axes (stored as a float), or [x, y] (a tuple) for a resize
    that changes the aspect ratio."""

    def validate(self, value, key):
        if isinstance(value, (list, tuple)):
            if len(value) != 2:
                raise self._error(value, key)
            return tuple(POSITIVE.validate(item, f"{key}[{index}]") for index, item in enumerate(value))
        try:
            return POSITIVE.validate(value, key)
        except ValueError:
            raise self._error(value, key) from None

    def describe(self):
        return "a number > 0 or an array [x, y] of two"


def setting(check: Check, default: Any = dataclasses.MISSING) -> Any:
    """A dataclass field with its check; without a default the key must be in the config (the sections of
    `configs/base.toml` hold their defaults there, in one place)."""
    return dataclasses.field(default=default, metadata={"check": check})


def checks(cls) -> dict[str, Check]:
    """Every key of a section class with its check."""
    return {field.name: field.metadata["check"] for field in dataclasses.fields(cls)}


def from_section(
    cls: type[T], values: Any, section: str, *, ignore: tuple[str, ...] = (), owner: str | None = None
) -> T:
    """`cls` built from the config table `values` of `section`; keys in `ignore` are left to the caller
    (the model's `name`); `owner` names what the keys are settings of in the message of an unknown key
    (default: the section)."""
    if not isinstance(values, Mapping):
        raise ValueError(f"{section} must be a table of settings ([{section}]), got {values!r}")
    known = checks(cls)
    unknown = sorted(set(values) - set(known) - set(ignore))
    if unknown:
        raise ValueError(
            f"{section}.{unknown[0]} is not a setting of {owner or f'[{section}]'} "
            f"(known: {', '.join(sorted(known))})"
        )
    required = [f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING]
    missing = [key for key in required if key not in values]
    if missing:
        raise ValueError(f"{section}.{missing[0]} is missing (the config's [{section}] section)")
    return cls(
        **{
            key: check.validate(values[key], f"{section}.{key}")
            for key, check in known.items()
            if key in values
        }
    )


class Section:
    """A config section class: `Cls.from_config(table)` validates and builds it (`from_section`)."""

    section: ClassVar[str]

    @classmethod
    def from_config(cls, values: Any, *, ignore: tuple[str, ...] = (), owner: str | None = None):
        return from_section(cls, values, cls.section, ignore=ignore, owner=owner)
