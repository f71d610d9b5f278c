"""Fault suite, command lines: every `python -m tinyfast.*` entry point x malformed arguments and inputs
ends with exactly one line on stderr and a non-zero exit code, never a traceback (that is behind
`--debug`); flags and `key=value` overrides go in any order."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from faulty_files import write_png_bomb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from tinyfast.engine.checkpoint import save_checkpoint
from tinyfast.engine.config import DEFAULT_CONFIG, load_config
from tinyfast.modeling.build import build_model
from tinyfast.utils import cli

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
ENVIRONMENT = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join([str(REPOSITORY_ROOT), os.environ.get("PYTHONPATH", "")]),
}
CLI_MODULES = [
    "tinyfast.data.convert",
    "tinyfast.data.synthetic",
    "tinyfast.evaluate",
    "tinyfast.test",
    "tinyfast.train",
]


def entry_points() -> list[str]:
    """Every module of the package that runs as `python -m`."""
    package = REPOSITORY_ROOT / "tinyfast"
    return sorted(
        ".".join(path.relative_to(REPOSITORY_ROOT).with_suffix("").parts).removesuffix(".__main__")
        for path in package.rglob("*.py")
        if 'if __name__ == "__main__":' in path.read_text()
    )


def test_the_suite_knows_every_entry_point():
    assert set(CLI_MODULES) <= set(entry_points())


def run_main(module: str, argv: list[str], capsys) -> tuple[int, str, str]:
    code = importlib.import_module(module).main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_error_line(code: int, err: str, expected_code: int | None = None) -> str:
    assert code != 0 and "Traceback" not in err, err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    if expected_code is not None:
        assert code == expected_code, err
    return err


@pytest.mark.parametrize("module", entry_points())
def test_every_entry_point_refuses_an_unknown_flag_in_one_line_and_has_help(module, capsys):
    code, _, err = run_main(module, ["--definitely-not-a-flag", "x"], capsys)
    assert_one_error_line(code, err, 2)
    code, out, err = run_main(module, ["--help"], capsys)
    assert code == 0 and "usage:" in out and "--debug" in out and not err


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    """Good and bad files for the command lines."""
    root = tmp_path_factory.mktemp("cli_inputs")
    gt = {
        "images": [{"id": 0, "file_name": "a.png", "width": 100, "height": 80}],
        "categories": [{"id": 1, "name": "sea_person"}, {"id": 2, "name": "earth_person"}],
        "annotations": [{"id": 1, "image_id": 0, "category_id": 1, "bbox": [10, 10, 8, 8], "area": 64}],
    }
    paths = {name: root / name for name in ("gt.json", "results.json", "garbage.json", "text.txt", "folder")}
    paths["gt.json"].write_text(json.dumps(gt))
    paths["results.json"].write_text(
        json.dumps([{"image_id": 0, "category_id": 1, "bbox": [10, 10, 8, 8], "score": 1}])
    )
    paths["garbage.json"].write_bytes(b"\x00\xff{ not json")
    paths["text.txt"].write_text("a text file\n")
    paths["folder"].mkdir()
    yolo = root / "yolo"
    (yolo / "images").mkdir(parents=True)
    (yolo / "labels").mkdir()
    Image.new("RGB", (100, 50)).save(yolo / "images" / "a.png")
    (yolo / "labels" / "a.txt").write_text(
        "0 0.5 0.5 0.1 0.2\n0 nan 0.5 0.1 0.2\nnan 0.5 0.5 0.1 0.2\n0 0.5 0.5 inf 0.2\n"
    )
    paths["yolo"] = yolo
    unnamed = root / "yolo_unnamed"
    (unnamed / "images").mkdir(parents=True)
    (unnamed / "labels").mkdir()
    Image.new("RGB", (100, 50)).save(unnamed / "images" / "a.png")
    (unnamed / "labels" / "a.txt").write_text("3 0.5 0.5 0.1 0.2\n")
    paths["yolo_unnamed"] = unnamed
    bomb = root / "yolo_bomb"
    (bomb / "images").mkdir(parents=True)
    write_png_bomb(bomb / "images" / "b.png")
    paths["yolo_bomb"] = bomb
    undecodable = root / "yolo_bmp"
    (undecodable / "images").mkdir(parents=True)
    (undecodable / "images" / "c.bmp").write_bytes(b"BM this is no bitmap")
    paths["yolo_bmp"] = undecodable
    return paths


# module -> [(argv with {name} placeholders for `inputs`, a part of the message)]
BAD_ARGUMENTS = {
    "tinyfast.train": [
        (["train.no_such_key=1"], "unknown key 'train.no_such_key'"),
        (["{missing}"], "does not exist"),
        (["{garbage.json}"], "is not valid TOML"),
        (["{config}", "no_equals_sign"], "is not of the form key.sub=value"),
        (["{config}", "train.epochs=1", "--resume-from"], "argument --resume-from: expected one argument"),
        (
            ["--resume", "--resume-from", "x.pth"],
            "argument --resume-from: not allowed with argument --resume",
        ),
        (["{config}", "--no-progress", "train.nope=3"], "unknown key 'train.nope'"),
    ],
    "tinyfast.test": [
        ([], "the following arguments are required: model"),
        (["{config}", "{missing}"], "does not exist"),
        (["{config}", "{text.txt}"], "is not a tinyfast checkpoint"),
        (["{config}", "x.pth", "--policy", "sideways"], "argument --policy: invalid choice: 'sideways'"),
        (["{config}", "x.pth", "--out", "{text.txt}"], "--out {text.txt} is a file, not a folder"),
        (["{config}", "x.pth", "--policy", "after", "train.nope=1"], "unknown key 'train.nope'"),
    ],
    "tinyfast.evaluate": [
        ([], "the following arguments are required: gt, results"),
        (["{missing}", "{results.json}"], "No such file or directory"),
        (
            ["{gt.json}", "{results.json}", "--max-dets", "0"],
            "argument --max-dets: '0' is not an integer >= 1",
        ),
        (["{garbage.json}", "{results.json}"], "ground truth {garbage.json} is not valid json"),
        (["{gt.json}", "{text.txt}"], "results {text.txt} is not valid json"),
        (["{gt.json}", "{gt.json}"], "results must be a list"),
        (["{folder}", "{results.json}"], "Is a directory"),
        (["{gt.json}", "{results.json}", "--mr", "extra"], "unrecognized arguments: extra"),
        (["{gt.json}", "{results.json}", "--points", "--max-dets", "0"], "argument --max-dets: '0' is not"),
        (["{gt.json}", "{results.json}", "--points", "--match-thresholds", "nan"], "match_thresholds must"),
    ],
    "tinyfast.data.convert": [
        ([], "the following arguments are required: command"),
        (["yolo"], "the following arguments are required: dir, --out"),
        (["yolo", "{folder}", "--out", "{folder}/a.json"], "no images/ folder"),
        (["yolo", "{yolo}", "--out", "{folder}"], "--out {folder} is a folder"),
        (
            ["yolo", "{yolo}", "--out", "x.json", "--max-wide-aspect", "nan"],
            "--max-wide-aspect: 'nan' is not a",
        ),
        (
            ["yolo", "{yolo}", "--out", "x.json", "--max-wide-aspect", "-1"],
            "--max-wide-aspect: '-1' is not a",
        ),
        (["yolo", "{yolo_unnamed}", "--out", "x.json"], "a.txt:1: class 3 has no name"),
        (["yolo", "{yolo_bomb}", "--out", "x.json"], "b.png: image has 12000x12000 pixels"),
        (["yolo", "{yolo_bmp}", "--out", "x.json"], "c.bmp: cannot decode image"),
        (["corners", "{gt.json}", "--out", "x.json", "--overlap", "700", "700"], "--overlap 700 700 must be"),
        (["corners", "{gt.json}", "--out", "x.json", "--overlap", "50", "512"], "--overlap 50 512 must be"),
        (["corners", "{gt.json}", "--out", "x.json", "--overlap", "-1", "5"], "--overlap: '-1' is not an"),
        (
            ["corners", "{gt.json}", "--out", "x.json", "--overlap", "7"],
            "argument --overlap: expected 2 arguments",
        ),
        (["corners", "{missing}", "--out", "x.json"], "annotation file not found"),
        (["corners", "{garbage.json}", "--out", "x.json"], "malformed JSON"),
        (["corners", "{gt.json}", "--out", "{folder}"], "--out {folder} is a folder"),
    ],
    "tinyfast.data.synthetic": [
        ([], "the following arguments are required: --out"),
        (["--out", "x", "--seed", "-1"], "argument --seed: '-1' is not an integer >= 0"),
        (["--out", "x", "--preset", "huge"], "argument --preset: invalid choice: 'huge'"),
        (["--out", "{text.txt}"], "--out {text.txt} is a file, not a folder"),
    ],
}
CASES = [(module, argv, message) for module, cases in BAD_ARGUMENTS.items() for argv, message in cases]


def fill(text: str, inputs: dict[str, Path], tmp_path: Path) -> str:
    names = {**{name: str(path) for name, path in inputs.items()}}
    names.update(missing=str(tmp_path / "missing.file"), config=str(DEFAULT_CONFIG))
    for name, value in names.items():
        text = text.replace(f"{{{name}}}", value)
    return text


@pytest.mark.parametrize(
    ("module", "argv", "message"), CASES, ids=[f"{m}:{' '.join(a)}" for m, a, _ in CASES]
)
def test_every_cli_x_a_malformed_argument_or_input_is_one_line_and_exit_code_2(
    module, argv, message, inputs, tmp_path, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_main(module, [fill(a, inputs, tmp_path) for a in argv], capsys)
    assert_one_error_line(code, err, 2)
    assert fill(message, inputs, tmp_path) in err
    assert sorted(os.listdir(tmp_path)) == []  # nothing written


def test_the_converter_skips_nan_rows_naming_file_and_line_and_writes_strict_json(inputs, tmp_path, capsys):
    out = tmp_path / "a.json"
    code, printed, err = run_main(
        "tinyfast.data.convert", ["yolo", str(inputs["yolo"]), "--out", str(out)], capsys
    )
    assert code == 0 and not err
    assert "rejected 3 rows: {'malformed': 3}" in printed and "a.txt:2; a.txt:3; a.txt:4" in printed

    def no_constants(name):
        raise AssertionError(f"{name} in the json")

    coco = json.loads(out.read_text(), parse_constant=no_constants)
    assert len(coco["annotations"]) == 1


@pytest.fixture
def untrained_checkpoint(smoke_overrides, tmp_path) -> Path:
    config = load_config(DEFAULT_CONFIG, smoke_overrides)
    save_checkpoint({"model": build_model(config["model"]).state_dict()}, tmp_path / "model", "epoch_1", 1)
    return tmp_path / "model" / "epoch_1.pth"


def test_tinyfast_test_names_a_missing_test_image_or_a_malformed_test_json(
    untrained_checkpoint, smoke_overrides, tiny_synthetic_set, tmp_path, capsys
):
    coco = json.loads((tiny_synthetic_set / "annotations" / "test.json").read_text())
    coco["images"][0]["file_name"] = "not_there.jpg"
    missing_image = tmp_path / "missing_image.json"
    missing_image.write_text(json.dumps(coco))
    # The order of the command's own docstring: flags, then overrides.
    argv = [str(DEFAULT_CONFIG), str(untrained_checkpoint), "--policy", "after", *smoke_overrides]
    code, _, err = run_main(
        "tinyfast.test", [*argv, f"data.test_annotations={missing_image}", "--no-progress"], capsys
    )
    assert "not_there.jpg: cannot decode image" in assert_one_error_line(code, err, 2)
    malformed = tmp_path / "malformed.json"
    malformed.write_text('{"images": [')
    code, _, err = run_main("tinyfast.test", [*argv, f"data.test_annotations={malformed}"], capsys)
    assert f"{malformed}: malformed JSON" in assert_one_error_line(code, err, 2)
    malformed.write_text('{"images": [1], "annotations": []}')
    code, _, err = run_main("tinyfast.test", [*argv, f"data.test_annotations={malformed}"], capsys)
    assert f"{malformed}: images[0] is not an object" in assert_one_error_line(code, err, 2)


def test_flags_and_overrides_parse_in_any_order():
    from tinyfast.train import parse_args

    for argv in (
        [str(DEFAULT_CONFIG), "--no-progress", "train.epochs=1", "--resume", "train.lr=0.1"],
        ["--no-progress", str(DEFAULT_CONFIG), "train.epochs=1", "train.lr=0.1", "--resume"],
    ):
        args = parse_args(argv)
        assert args.config == str(DEFAULT_CONFIG) and args.overrides == ["train.epochs=1", "train.lr=0.1"]
        assert args.no_progress and args.resume
    args = parse_args(["train.epochs=1", "--no-progress", "train.lr=0.1"])  # only overrides
    assert args.overrides == ["train.epochs=1", "train.lr=0.1"]


def test_the_wrapper_exit_codes_and_debug(capsys, monkeypatch):
    def fails(error):
        def main(argv):
            raise error

        return main

    assert cli.run(fails(KeyboardInterrupt()), []) == 130
    assert capsys.readouterr().err == "error: interrupted\n"
    assert cli.run(fails(RuntimeError("a\nb")), []) == 1
    assert (
        capsys.readouterr().err
        == "error: unexpected RuntimeError: a b (rerun with --debug for the traceback)\n"
    )
    assert cli.run(fails(OSError(28, "No space left on device")), []) == 1
    assert capsys.readouterr().err == "error: [Errno 28] No space left on device\n"
    assert cli.run(fails(FileNotFoundError(2, "No such file or directory", "x")), []) == 2
    assert cli.run(fails(FloatingPointError("non-finite loss")), []) == 1
    assert capsys.readouterr().err.count("\n") == 2
    with pytest.raises(RuntimeError, match="kept"):
        cli.run(fails(RuntimeError("kept")), ["--debug"])
    monkeypatch.setenv("RANK", "1")  # under torchrun only rank 0 prints
    assert cli.run(fails(ValueError("bad")), []) == 2
    assert capsys.readouterr().err == ""


def test_the_real_processes_print_one_line_and_debug_shows_the_traceback(inputs, tmp_path):
    def python(*argv):
        return subprocess.run(
            [sys.executable, *argv],
            env=ENVIRONMENT,
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=300,
        )

    ran = python(
        "-m",
        "tinyfast.data.convert",
        "corners",
        str(inputs["gt.json"]),
        "--out",
        "x",
        "--overlap",
        "700",
        "700",
    )
    assert ran.returncode == 2 and ran.stderr.count("\n") == 1 and "--overlap 700 700" in ran.stderr
    ran = python("-m", "tinyfast.evaluate", str(inputs["gt.json"]), str(inputs["text.txt"]))
    assert ran.returncode == 2 and ran.stderr.count("\n") == 1 and "Traceback" not in ran.stderr
    ran = python("-m", "tinyfast.evaluate", str(inputs["gt.json"]), str(inputs["text.txt"]), "--debug")
    assert ran.returncode == 1 and "Traceback" in ran.stderr and "is not valid json" in ran.stderr


TOKENS = st.sampled_from(
    [
        "--max-dets", "--mr", "--out", "--names", "--overlap", "--erase", "--keep-dense", "--max-wide-aspect",
        "yolo", "corners", "0", "-1", "700", "nan", "1e309", "abc", "", "=", "x=1", "--", "-", "--out=",
        "gt.json", "results.json", "garbage.json", "text.txt", "folder", "yolo_dir", "out.json",
    ]
)  # fmt: skip


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    module=st.sampled_from(["tinyfast.evaluate", "tinyfast.data.convert"]), argv=st.lists(TOKENS, max_size=7)
)
def test_fuzz_random_command_lines_never_end_in_a_traceback(
    module, argv, inputs, tmp_path, capsys, monkeypatch
):
    monkeypatch.chdir(inputs["folder"].parent)
    argv = [str(inputs["yolo"]) if token == "yolo_dir" else token for token in argv]
    code, _, err = run_main(module, argv, capsys)
    assert code in (0, 1, 2)
    if code:
        assert_one_error_line(code, err)
    for written in (
        "out.json",
        "0",
        "-1",
        "700",
        "abc",
        "x=1",
        "nan",
        "1e309",
    ):  # the next example starts clean
        path = inputs["folder"].parent / written
        if path.is_file():
            path.unlink()
