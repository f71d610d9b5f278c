"""`model.init_from`: a run starts from the tensors of a pre-trained model that match, says what did not
load, and is not re-initialised when it resumes."""

import logging
import re

import pytest
import torch

from tinyfast.engine import distributed
from tinyfast.engine.checkpoint import load_checkpoint, save_atomically
from tinyfast.engine.config import DEFAULT_CONFIG, load_config
from tinyfast.engine.trainer import Trainer, train
from tinyfast.modeling.build import build_model, load_matching


@pytest.fixture(scope="module")
def pretrained(tiny_synthetic_set, tmp_path_factory):
    """A run of 2 iterations of the tiny FCOS, one class."""
    from conftest import tiny_run_overrides

    run = tmp_path_factory.mktemp("pretrained") / "run"
    overrides = [*tiny_run_overrides(tiny_synthetic_set, run), "train.max_iters_per_epoch=2",
                 "test.eval_interval=-1"]  # fmt: skip
    train(load_config(DEFAULT_CONFIG, overrides), run, progress=False)
    return run


def fine_tune_config(smoke_overrides, *overrides):
    return load_config(DEFAULT_CONFIG, [*smoke_overrides, "train.max_iters_per_epoch=2",
                                        "test.eval_interval=-1", *overrides])  # fmt: skip


def test_a_head_of_another_class_count_loads_all_but_its_classifier_and_says_so(
    pretrained, smoke_overrides, tmp_path
):
    config = fine_tune_config(smoke_overrides, f"model.init_from={pretrained}", "model.num_classes=3")
    with distributed.launch("cpu") as processes:
        trainer = Trainer(config, tmp_path / "run", processes, progress=False)
    given = load_checkpoint(pretrained / "latest.pth")["model"]
    here = trainer.model.state_dict()
    differing = {"head.cls_logits.weight", "head.cls_logits.bias"}
    assert set(given) == set(here)
    for name, tensor in here.items():
        if name in differing:
            assert tensor.shape[0] == 3 and given[name].shape[0] == 1
        else:
            assert torch.equal(tensor, given[name]), name
    fresh = build_model(config["model"]).state_dict()
    assert not torch.equal(fresh["head.cls_tower.0.weight"], here["head.cls_tower.0.weight"])


def test_the_run_logs_one_line_of_what_did_not_load_and_a_resumed_run_keeps_its_own_weights(
    pretrained, smoke_overrides, tmp_path, caplog
):
    run = tmp_path / "run"
    config = fine_tune_config(smoke_overrides, f"model.init_from={pretrained}", "model.num_classes=2")
    train(config, run, progress=False)
    log = (run / "train.log").read_text()
    lines = [line for line in log.splitlines() if "model.init_from" in line]
    assert len(lines) == 1
    total = len(build_model(config["model"]).state_dict())
    assert re.search(
        rf"model.init_from {re.escape(str(pretrained / 'latest.pth'))}: loaded {total - 2} of the model's "
        rf"{total} tensors; not loaded: 2 of another shape \(head.cls_logits.weight \[1, 16, 3, 3\] there, "
        r"\[2, 16, 3, 3\] here, head.cls_logits.bias \[1\] there, \[2\] here\)$",
        lines[0],
    ), lines[0]
    trained = load_checkpoint(run / "latest.pth")["model"]

    resumed = fine_tune_config(smoke_overrides, f"model.init_from={pretrained}", "model.num_classes=2",
                               "train.epochs=2")  # fmt: skip
    with caplog.at_level(logging.INFO, logger="tinyfast.train"), distributed.launch("cpu") as processes:
        trainer = Trainer(resumed, run, processes, progress=False, resume="auto")
    assert all(torch.equal(trainer.model.state_dict()[k], v) for k, v in trained.items())
    assert (
        f"model.init_from = {str(pretrained)!r} not applied: the run resumes from {run / 'latest.pth'}"
        in (caplog.text)
    )


def test_load_matching_reports_missing_unexpected_and_mismatched_tensors():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    state = {"0.weight": torch.ones(4, 3), "1.weight": torch.ones(5, 4), "2.weight": torch.ones(1)}
    report = load_matching(model, state)
    assert report.loaded == ("0.weight",) and torch.equal(model[0].weight, torch.ones(4, 3))
    assert report.mismatched == (("1.weight", (5, 4), (2, 4)),)
    assert report.missing == ("0.bias", "1.bias") and report.unexpected == ("2.weight",)
    assert report.not_loaded == ("1.weight", "0.bias", "1.bias")
    assert report.summary() == (
        "loaded 1 of the model's 4 tensors; not loaded: 1 of another shape (1.weight [5, 4] there, [2, 4] "
        "here); 2 not in the checkpoint (0.bias, 1.bias); 1 of the checkpoint not in this model (2.weight)"
    )
    assert load_matching(model, {}).summary(shown=1).endswith("(0.weight, ... 3 more)")


def test_bad_init_from_is_one_error_naming_the_key(pretrained, smoke_overrides, tmp_path):
    def start(*overrides):
        with distributed.launch("cpu") as processes:
            Trainer(
                fine_tune_config(smoke_overrides, *overrides), tmp_path / "run", processes, progress=False
            )

    with pytest.raises(
        ValueError, match=r"^model.init_from .*nowhere is neither a run folder nor a checkpoint"
    ):
        start(f"model.init_from={tmp_path / 'nowhere'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"^model.init_from .*empty is a folder without latest.pth"):
        start(f"model.init_from={tmp_path / 'empty'}")
    save_atomically({"model": {"classifier.weight": torch.ones(2)}}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match=r"other.pth: no tensor of it matches this config's model"):
        start(f"model.init_from={tmp_path / 'other.pth'}")
    save_atomically({"weights": 1}, tmp_path / "bare.pth")
    with pytest.raises(ValueError, match=r"bare.pth: the checkpoint holds no model"):
        start(f"model.init_from={tmp_path / 'bare.pth'}")
    with pytest.raises(
        ValueError, match=r"tensor\(s\) of the backbone did not load .*would keep them untrained"
    ):
        start(f"model.init_from={pretrained}", "model.backbone=resnet34", 'model.backbone_norm="frozen"',
              "model.frozen_stages=1")  # fmt: skip
    with pytest.raises(ValueError, match=r"^model.init_from must be a string, got 5$"):
        fine_tune_config(smoke_overrides, "model.init_from=5")
