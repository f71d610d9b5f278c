"""The Scale Match study (`python -m tinyfast.study scale-match`): its schedule arithmetic, and the whole
study end to end at its quick size."""

import json

import numpy as np
import pytest

from tinyfast import study as study_cli
from tinyfast.engine.config import load_config
from tinyfast.engine.scale_match_study import ARMS, FULL, schedule


@pytest.mark.parametrize(
    ("iterations", "batches", "epochs", "per_epoch", "steps"),
    [
        (320, 32, 10, 32, [7]),  # the default run's schedule
        (160, 32, 5, 32, [4]),
        (160, 12, 16, 10, [11]),
        (2, 3, 1, 2, []),
        (7, 3, 7, 1, [5]),
        (5, 100, 1, 5, []),
    ],
)
def test_a_stage_trains_exactly_its_iterations_in_epochs_that_fit_the_data(
    iterations, batches, epochs, per_epoch, steps
):
    assert schedule(iterations, batches) == [
        f"train.epochs={epochs}",
        f"train.max_iters_per_epoch={per_epoch}",
        f"train.steps={steps}",
    ]
    assert epochs * per_epoch == iterations and per_epoch <= batches


def test_the_full_study_is_the_default_run_and_three_halves():
    assert FULL.iterations == 320 and FULL.batch_size == 4 and FULL.target_preset == "default"
    assert [arm.scale_match for arm in ARMS] == [None, "none", "sm", "msm"]


def test_the_quick_study_runs_every_arm_end_to_end_and_writes_table_json_and_plot(tmp_path, capsys):
    out = tmp_path / "study"
    assert study_cli.main(["scale-match", "--quick", "--out", str(out)]) == 0
    table = (out / "scale_match.md").read_text()
    assert capsys.readouterr().out.startswith(table)
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) == 5 and rows[0].startswith("| arm | pre-training iterations")
    summary = json.loads((out / "scale_match.json").read_text())
    arms = {arm["arm"]: arm for arm in summary["arms"]}
    assert list(arms) == ["scratch", "plain", "sm", "msm"]
    assert [(a["pretrain_iterations"], a["finetune_iterations"]) for a in arms.values()] == [
        (0, 4),
        (2, 2),
        (2, 2),
        (2, 2),
    ]
    for arm in arms.values():
        assert set(arm["metrics"]) == {"AP50_tiny", "AP50_tiny1", "AP50_tiny2", "AP50_tiny3", "AP50_small"}
        assert all(-1 <= value <= 1 for value in arm["metrics"].values())
        finetune = load_config(out / arm["arm"] / "config.toml")
        assert finetune["data"]["train_annotations"].endswith("annotations/train.json")
        pretrained = "" if arm["arm"] == "scratch" else str(out / f"{arm['arm']}_pretrain")
        assert finetune["model"]["init_from"] == pretrained
        log = [json.loads(line) for line in (out / arm["arm"] / "log.jsonl").read_text().splitlines()]
        assert max(r["iteration"] for r in log) == arm["finetune_iterations"]
    for name, kind in (("plain", "none"), ("sm", "sm"), ("msm", "msm")):
        pretrain = load_config(out / f"{name}_pretrain" / "config.toml")
        assert pretrain["data"]["scale_match"] == kind and pretrain["test"]["eval_interval"] == -1
        assert pretrain["data"]["train_annotations"].endswith("annotations/source.json")
    sizes = summary["sizes"]
    assert list(sizes) == ["target", "source", "source after SM", "source after MSM"]
    def distance(name):  # to the target's median, in log size
        return abs(np.log(sizes[name]["median"] / sizes["target"]["median"]))

    for matched in ("source after SM", "source after MSM"):  # matching brings the source to the target
        assert distance(matched) < distance("source")
    png = (out / "scale_match_sizes.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000


def test_bad_study_arguments_are_one_line_and_exit_2(capsys):
    assert study_cli.main(["scale-match", "--iterations", "1"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert "--iterations must be at least 2 (half of them pre-training)" in error[-1] and len(error) == 1
    assert study_cli.main(["scale-match", "--quick", "--iterations", "8"]) == 2
    assert "not allowed with argument" in capsys.readouterr().err
