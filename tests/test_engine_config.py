"""The config schema: every key of every section with its type and range, checked when the config loads.
The wrong-type and out-of-range cases are generated from the schema, so that a new key is covered."""

import dataclasses
import math
import re

import pytest

from tinyfast import test as test_cli
from tinyfast import train as train_cli
from tinyfast.data.build import DataConfig
from tinyfast.engine.config import (
    CONFIG_DIR,
    DEFAULT_CONFIG,
    TestConfig,
    TrainConfig,
    check_config,
    load_config,
)
from tinyfast.modeling.build import DETECTORS, model_settings
from tinyfast.utils.schema import Check, Flag, Integer, OneOf, Real, ScaleFactor, Sequence, Text, checks


def wrong_types(check: Check) -> list:
    """Values of another type than `check` accepts (a bool is never a number, a string never a box)."""
    if isinstance(check, (Integer, Real)):
        return ["abc", True, None, [1]] + ([1.5] if isinstance(check, Integer) else [])
    if isinstance(check, Flag):
        return ["yes", 1, 0.0]
    if isinstance(check, (Text, OneOf)):
        return [5, True, ["a"]]
    if isinstance(check, Sequence):
        return [5, "1234", {"a": 1}]
    if isinstance(check, ScaleFactor):
        return ["abc", True, None, {"x": 1}, [1.0, "2"]]
    raise AssertionError(f"no wrong-type values for {check}")


def out_of_range(check: Check) -> list:
    """Values of the right type outside what `check` allows (none for strings and flags)."""
    if isinstance(check, Integer):
        return [v for v in (check.low - 1 if check.low is not None else None,
                            check.high + 1 if check.high is not None else None) if v is not None]  # fmt: skip
    if isinstance(check, Real):
        values = [math.nan] + ([] if check.allow_inf else [math.inf, -math.inf])
        if check.low is not None:
            values.append(check.low if check.low_open else check.low - 0.5)
        if check.high is not None:
            values.append(check.high if check.high_open else check.high + 0.5)
        return values
    if isinstance(check, OneOf):
        return ["not-a-choice"]
    if isinstance(check, ScaleFactor):
        return [0, -1.5, math.inf, math.nan, [1.0], [1.0, 2.0, 3.0], [2.0, 0.0]]
    if isinstance(check, Sequence):
        item = valid_item(check.item)
        counts = [check.length - 1, check.length + 1] if check.length is not None else []
        counts += [check.min_length - 1] if check.min_length > 0 else []
        values = [[item] * count for count in counts]
        return values + [
            [bad] * max(1, check.min_length, check.length or 0) for bad in out_of_range(check.item)
        ]
    return []


def valid_item(check: Check):
    if isinstance(check, Integer):
        return max(1, check.low if check.low is not None else 1)
    if isinstance(check, Real):
        return 0.5 if check.high is None or check.high >= 0.5 else check.high
    if isinstance(check, Sequence):
        return [valid_item(check.item)] * (check.length or max(1, check.min_length))
    if isinstance(check, Text):
        return "person"
    if isinstance(check, ScaleFactor):
        return [2.0, 1.5]
    raise AssertionError(check)


def sections():
    """(section name, model name or None, the checks) of every section of a config."""
    found = [("data", None, checks(DataConfig)), ("train", None, checks(TrainConfig)),
             ("test", None, checks(TestConfig))]  # fmt: skip
    found += [("model", name, checks(config_class)) for name, (_, config_class) in DETECTORS.items()]
    return found


CASES = [
    pytest.param(section, model, key, value, id=f"{model or section}.{key}={value!r}")
    for section, model, section_checks in sections()
    for key, check in section_checks.items()
    for value in wrong_types(check) + out_of_range(check)
]


def config_with(section: str, model: str | None, key: str, value) -> dict:
    config = load_config(DEFAULT_CONFIG)
    if model is not None:
        config["model"] = {"name": model}
    config[section][key] = value
    return config


@pytest.mark.parametrize(("section", "model", "key", "value"), CASES)
def test_every_key_rejects_a_wrong_type_and_an_out_of_range_value_naming_both(section, model, key, value):
    config = config_with(section, model, key, value)
    with pytest.raises(ValueError) as error:
        check_config(config)
    found = re.fullmatch(rf"{section}\.{key}(\[\d+\])* must be .+, got (.+)", str(error.value))
    assert found, str(error.value)
    assert found.group(2) in nested_reprs(value)


def nested_reprs(value) -> set[str]:
    """The value and, for an array, its items at every depth (the message names the bad item)."""
    reprs = {repr(value)}
    if isinstance(value, list):
        for item in value:
            reprs |= nested_reprs(item)
    return reprs


def test_the_schema_covers_every_key_of_every_shipped_config_and_their_values_pass():
    for path in sorted(CONFIG_DIR.glob("*.toml")):
        config = load_config(path)
        for section, section_checks in (("data", checks(DataConfig)), ("train", checks(TrainConfig)),
                                        ("test", checks(TestConfig))):  # fmt: skip
            assert set(config[section]) == set(section_checks), (path.name, section)
        if "model" in config:
            check_config(config)
    for name, (_, config_class) in DETECTORS.items():  # the dataclass defaults pass their own checks
        defaults = {field.name: field.default for field in dataclasses.fields(config_class)}
        assert dataclasses.asdict(model_settings({"name": name, **defaults})) == {
            key: value for key, value in defaults.items()
        }


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.epochs=-1", "train.epochs must be an int >= 1, got -1"),
        ("train.lr=nan", "train.lr must be a finite number > 0, got nan"),
        ("train.lr=inf", "train.lr must be a finite number > 0, got inf"),
        ("train.lr=abc", "train.lr must be a finite number > 0, got 'abc'"),
        ("train.epochs=ten", "train.epochs must be an int >= 1, got 'ten'"),
        ("data.sub_size=[160]", "data.sub_size must be an array of 2 item(s), each an int >= 1, got [160]"),
        ("data.sub_size=[0,0]", "data.sub_size[0] must be an int >= 1, got 0"),
        ("data.normalization=bgr", "data.normalization must be one of ['torchvision', 'caffe'], got 'bgr'"),
        ("train=5", "train must be a table of settings ([train]), got 5"),
        ("train.seed=-1", "train.seed must be an int in [0, 4294967295], got -1"),
        ("test.images_per_batch=0", "test.images_per_batch must be an int >= 1, got 0"),
        ("train.epochs=true", "train.epochs must be an int >= 1, got True"),
        ("train.lr=true", "train.lr must be a finite number > 0, got True"),
        ("model.nms_pre=false", "model.nms_pre must be an int >= 1, got False"),
        ("model.strides=[4,true]", "model.strides[1] must be an int >= 1, got True"),
    ],
)
def test_the_issue_cases_are_rejected_when_the_config_loads(override, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        load_config(DEFAULT_CONFIG, [override])


def test_unknown_keys_and_sections_are_errors():
    config = load_config(DEFAULT_CONFIG)
    with pytest.raises(ValueError, match=r"^model.regress_range is not a setting of adap_fcos"):
        check_config({**config, "model": {**config["model"], "regress_range": [[0, 1]]}})
    with pytest.raises(ValueError, match=r"^data.rooot is not a setting of \[data\]"):
        check_config({**config, "data": {**config["data"], "rooot": "x"}})
    with pytest.raises(ValueError, match="^extra is not a section or key of a config"):
        check_config({**config, "extra": 1})
    with pytest.raises(ValueError, match="^train.epochs is missing"):
        check_config({**config, "train": {k: v for k, v in config["train"].items() if k != "epochs"}})
    with pytest.raises(ValueError, match="^model.name 'yolo' is not a known detector"):
        check_config({**config, "model": {"name": "yolo"}})


def test_a_base_naming_itself_or_a_cycle_of_bases_is_an_error(tmp_path):
    (tmp_path / "self.toml").write_text('base = "self.toml"\n')
    with pytest.raises(ValueError, match=r"self.toml: its base names itself \(.*self.toml -> .*self.toml\)"):
        load_config(tmp_path / "self.toml")
    (tmp_path / "a.toml").write_text('base = "b.toml"\n')
    (tmp_path / "b.toml").write_text('base = "a.toml"\n')
    with pytest.raises(
        ValueError, match=r"a.toml: its base names itself \(.*a.toml -> .*b.toml -> .*a.toml\)"
    ):
        load_config(tmp_path / "a.toml")
    (tmp_path / "number.toml").write_text("base = 5\n")
    with pytest.raises(ValueError, match="base must be a file name, got 5"):
        load_config(tmp_path / "number.toml")


@pytest.mark.parametrize("override", ["train.epochs=-1", "train=5", "data.sub_size=[160]", "model.nms_pre=0"])
def test_the_command_lines_print_one_line_naming_the_key_before_building_anything(override, tmp_path, capsys):
    key = override.split("=")[0]
    assert train_cli.main([str(DEFAULT_CONFIG), override, f"run_dir={tmp_path / 'run'}"]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"error: {key}") and error.count("\n") == 1
    assert not (tmp_path / "run").exists()
    assert test_cli.main([str(DEFAULT_CONFIG), str(tmp_path / "missing.pth"), override]) == 2
    assert capsys.readouterr().err.startswith(f"error: {key}")
