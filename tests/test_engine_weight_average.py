"""`train.ema_decay`: the weights' moving average against a plain reference, in a run and its resume."""

import math
import shutil

import pytest
import torch
from torch import nn

from tinyfast import test as test_cli
from tinyfast.engine.checkpoint import load_checkpoint
from tinyfast.engine.config import DEFAULT_CONFIG, load_config
from tinyfast.engine.trainer import train
from tinyfast.engine.weight_average import WeightAverage


def reference_average(snapshots: list[dict], decay: float, ramp_iters: float) -> dict:
    """The average of `snapshots[0]` (the weights before training) updated by each next one in turn, written
    out: m <- d m + (1 - d) w, d = decay (1 - e^(-(u - 1) / r)) at update u."""
    average = {name: value.double() for name, value in snapshots[0].items()}
    for u, weights in enumerate(snapshots[1:], start=1):
        d = decay * (1 - math.exp(-(u - 1) / ramp_iters)) if ramp_iters else decay
        for name, value in weights.items():
            if value.is_floating_point():
                average[name] = d * average[name] + (1 - d) * value.double()
            else:
                average[name] = value
    return average


def assert_close_to(average: dict, reference: dict) -> None:
    assert average.keys() == reference.keys()
    for name, value in average.items():
        if value.is_floating_point():
            torch.testing.assert_close(value.double(), reference[name], rtol=1e-5, atol=1e-6, msg=name)
        else:
            assert torch.equal(value, reference[name]), name


@pytest.mark.parametrize("ramp_iters", [0.0, 3.0])
def test_the_average_follows_the_formula_over_parameters_and_batchnorm_statistics(ramp_iters):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
    average = WeightAverage(model, decay=0.8, ramp_iters=ramp_iters)
    snapshots = [{k: v.clone() for k, v in model.state_dict().items()}]
    for _ in range(6):
        model(torch.randn(2, 3, 8, 8))  # moves the running statistics and the batch count
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.add_(torch.randn_like(parameter))
        average.update(model)
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
    assert_close_to(average.weights, reference_average(snapshots, 0.8, ramp_iters))
    assert average.weights["1.num_batches_tracked"] == 6
    copy = average.averaged_model(model)
    assert copy is not model and not torch.equal(copy[0].weight, model[0].weight)
    assert torch.equal(copy[0].weight, average.weights["0.weight"])


def test_the_first_update_with_a_ramp_takes_the_model_as_it_is():
    model = nn.Linear(2, 2)
    average = WeightAverage(model, decay=0.999, ramp_iters=2)
    with torch.no_grad():
        model.weight.fill_(5.0)
    average.update(model)
    assert torch.equal(average.weights["weight"], torch.full((2, 2), 5.0))
    assert average.decay_at(2) == pytest.approx(0.999 * (1 - math.exp(-0.5)))


def test_ema_decay_must_lie_below_one(smoke_overrides):
    for bad in ("1.0", "-0.1", "nan"):
        with pytest.raises(ValueError, match="train.ema_decay"):
            load_config(DEFAULT_CONFIG, [*smoke_overrides, f"train.ema_decay={bad}"])


def test_a_run_averages_its_weights_serves_the_average_and_resumes_with_it(smoke_overrides, tmp_path, capsys):
    overrides = [
        *smoke_overrides,
        "train.device=cpu",
        "train.deterministic=true",
        "train.epochs=2",
        "train.max_iters_per_epoch=2",
        "train.checkpoint_interval=1",
        "train.keep_checkpoints=10",
        "test.eval_interval=-1",
    ]
    plain = tmp_path / "plain"
    train(load_config(DEFAULT_CONFIG, [*overrides, f"run_dir={plain}"]), plain, progress=False)
    names = ("iter_1.pth", "epoch_1.pth", "iter_3.pth", "epoch_2.pth")  # after iterations 1 to 4
    snapshots = [load_checkpoint(plain / name)["model"] for name in names]

    averaged = tmp_path / "averaged"
    with_average = [*overrides, "train.ema_decay=0.5", "train.ema_ramp_iters=2", f"run_dir={averaged}"]
    served, _ = train(load_config(DEFAULT_CONFIG, with_average), averaged, progress=False)
    state = load_checkpoint(averaged / "latest.pth")
    for name, value in served.state_dict().items():
        assert torch.equal(value, state["model"][name]), name
    # The average leaves the training alone: the optimiser's weights are those of the plain run.
    for name, value in snapshots[-1].items():
        assert torch.equal(state["trained_model"][name], value), name
    # With a ramp the first update takes the weights after the first step as they are: what the
    # initialisation was (the plain run saves none) does not matter.
    expected = reference_average([snapshots[0], *snapshots], 0.5, 2.0)
    assert state["ema_updates"] == 4
    assert_close_to(state["model"], expected)

    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copy(averaged / "epoch_1.pth", resumed / "epoch_1.pth")
    config = load_config(DEFAULT_CONFIG, [*with_average[:-1], f"run_dir={resumed}"])
    train(config, resumed, progress=False, resume=resumed / "epoch_1.pth")
    again = load_checkpoint(resumed / "latest.pth")
    assert again["ema_updates"] == 4
    for key in ("model", "trained_model"):
        for name, value in state[key].items():
            assert torch.equal(again[key][name], value), (key, name)

    assert test_cli.main([str(plain), "--trained-weights", "--no-progress"]) == 2
    assert "holds no average (train.ema_decay was 0)" in capsys.readouterr().err
    out = tmp_path / "trained"
    assert test_cli.main([str(averaged), "--trained-weights", "--no-progress", "--out", str(out)]) == 0
    assert (out / "metrics_during.json").is_file()
