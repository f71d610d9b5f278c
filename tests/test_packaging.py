"""An installed package that stands on its own: the configs ship inside it, the `tinyfast` console command
dispatches to every subcommand, and the configs' TOML round-trips."""

import math
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinyfast
from tinyfast import cli
from tinyfast.engine.config import CONFIG_DIR, config_path, load_config, shipped_configs, to_toml

ROOT = Path(__file__).resolve().parents[1]


def _run(command: list[str], cwd: Path, pythonpath: Path) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(pythonpath), "HOME": str(cwd)}
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def built_package(tmp_path_factory) -> Path:
    """What a wheel's build puts into it: setuptools' build_py (packages and package data, as declared in
    pyproject.toml) run on a copy of the repository's tracked files, plus the compiled extension that
    build_ext would add. Returns the build folder."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs the git checkout to list the files a build starts from")
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    source = tmp_path_factory.mktemp("source")
    for name in listed:
        if (ROOT / name).is_file() and not name.startswith(("csrc/", "docs/", "tests/", "bench/")):
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(ROOT / name, source / name)
    build = tmp_path_factory.mktemp("build")
    done = _run([sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(build)], source, source)
    assert done.returncode == 0, done.stderr
    done = _run([sys.executable, "setup.py", "-q", "egg_info", "--egg-base", str(build)], source, source)
    assert done.returncode == 0, done.stderr
    for extension in Path(tinyfast.__file__).parent.glob("_C*.so"):
        shutil.copy(extension, build / "tinyfast")
    return build


def test_the_built_package_holds_the_configs_and_the_console_command(built_package, tmp_path):
    shipped = sorted(p.name for p in (built_package / "tinyfast" / "configs").glob("*.toml"))
    assert shipped == sorted(p.name for p in CONFIG_DIR.glob("*.toml"))
    assert "base.toml" in shipped and "fcos_synthetic.toml" in shipped
    (entry_points,) = built_package.glob("*.egg-info/entry_points.txt")
    assert "tinyfast = tinyfast.cli:main" in entry_points.read_text()

    elsewhere = tmp_path / "elsewhere"  # any folder: nothing there, not the repository
    elsewhere.mkdir()
    check = (
        "import tinyfast.engine.config as c, pathlib; "
        f"assert pathlib.Path(c.__file__).is_relative_to(pathlib.Path({str(built_package)!r})); "
        "print(c.load_config('fcos_rpi640')['run_dir'], c.load_config()['run_dir'])"
    )
    done = _run([sys.executable, "-c", check], elsewhere, built_package)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["runs/fcos_rpi640", "runs/fcos_synthetic"]
    done = _run([sys.executable, "-m", "tinyfast.cli", "train", "--help"], elsewhere, built_package)
    assert done.returncode == 0 and "python -m tinyfast.train" in done.stdout, done.stderr


def test_load_config_takes_a_shipped_name_or_a_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert config_path("fcos_rpi640") == config_path("fcos_rpi640.toml") == CONFIG_DIR / "fcos_rpi640.toml"
    assert load_config("fcos_rpi640") == load_config(CONFIG_DIR / "fcos_rpi640.toml")
    assert "fcos_synthetic" in shipped_configs()
    with pytest.raises(ValueError, match="not the name of a shipped config .*fcos_rpi640"):
        load_config("fcos_rpi641")
    local = tmp_path / "fcos_rpi640.toml"  # a file of that name here wins over the shipped one
    local.write_text('run_dir = "mine"\n')
    assert load_config("fcos_rpi640.toml")["run_dir"] == "mine"


@pytest.mark.parametrize("name", shipped_configs())
def test_every_shipped_config_round_trips_through_toml(name):
    config = load_config(name)
    assert tomllib.loads(to_toml(config)) == config


_keys = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=8)
_scalars = (
    st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
)
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3), max_leaves=6)
_tables = st.recursive(
    st.dictionaries(_keys, _values, max_size=4),
    lambda inner: st.dictionaries(_keys, _values | inner, max_size=4),
    max_leaves=12,
)


@given(_tables)
def test_to_toml_round_trips_any_config_of_toml_types(config):
    assert tomllib.loads(to_toml(config)) == config


def test_to_toml_names_a_value_without_toml_form():
    assert tomllib.loads(to_toml({"a": {"x": math.nan}}))["a"]["x"] != 0  # nan stays nan
    with pytest.raises(ValueError, match=r"config value test.max = None has no TOML form"):
        to_toml({"test": {"max": None}})


def test_console_command_dispatches_to_each_subcommand(capsys, monkeypatch):
    for name in ("train", "test", "predict", "evaluate", "convert", "plot", "synthetic", "study"):
        assert cli.main([name, "--help"]) == 0
        assert f"python -m {cli.COMMANDS[name][0]}" in capsys.readouterr().out
    assert cli.main([]) == 2 and "usage: tinyfast SUBCOMMAND" in capsys.readouterr().err
    assert cli.main(["--help"]) == 0 and "predict" in capsys.readouterr().out
    assert cli.main(["fly"]) == 2 and "unknown subcommand 'fly'" in capsys.readouterr().err
    assert set(cli.COMMANDS) >= {"train", "test", "predict", "evaluate", "convert", "study", "plot"}
    assert cli.COMMANDS["study"][0] == "tinyfast.study"
    monkeypatch.setitem(cli.COMMANDS, "study", ("tinyfast.not_installed_here", "x"))
    assert cli.main(["study"]) == 2 and "not part of this installation" in capsys.readouterr().err
