"""`train.budget_s`: the probe's decision and the schedule mapping without timing, then a tiny budgeted run
that trains, stops at its planned iteration with its learning rate dropped where the plan says, and resumes
to the same end."""

import json
import re
import time
import types

import pytest
import torch

import tinyfast.engine.trainer
from tinyfast.engine.budget import OVERRUN, PROBE_SHARE, TrainingBudget, budgeted_steps
from tinyfast.engine.config import DEFAULT_CONFIG, load_config
from tinyfast.engine.optim import StepSchedule, sgd
from tinyfast.engine.trainer import train


def test_steps_become_the_same_fractions_of_the_budgeted_iterations():
    assert budgeted_steps([8, 11], 12, 1200) == [800, 1100]
    assert budgeted_steps([8, 11], 12, 100) == [67, 92]  # rounded to the nearest iteration
    assert budgeted_steps([16, 22], 24, 30) == [20, 28]
    assert budgeted_steps([], 12, 500) == []
    assert budgeted_steps([8, 11], 12, 0) == [0, 0]
    assert budgeted_steps([12], 12, 90) == [90]  # a step at the run's end, as in an epoch run, never applies
    with pytest.raises(ValueError, match="epochs must be an int >= 1"):
        budgeted_steps([8], 0, 100)


def observe_all(budget, durations, start_iteration=0, start_s=0.0):
    """Feeds iterations of the given durations; returns (plan, iteration it came at)."""
    elapsed = start_s
    for iteration, duration in enumerate(durations, start_iteration + 1):
        elapsed += duration
        plan = budget.observe(iteration, elapsed)
        if plan is not None:
            return plan, iteration
    return None, None


def test_the_probe_times_iterations_after_the_warm_ones_and_plans_what_fits():
    budget = TrainingBudget(100.0, warm_iterations=5, probe_iterations=20)
    plan, at = observe_all(budget, [1.0] * 5 + [0.125] * 30)  # slow warm-up iterations are not timed
    assert at == 25 and plan.decided_at == 25 and plan.timed_iterations == 20
    assert plan.seconds_per_iteration == 0.125
    assert plan.iterations == 25 + 740  # 7.5 s spent: 92.5 s left at 0.125 s
    assert budget.planned_iterations == plan.iterations
    assert budget.observe(26, 7.625) is None  # planned once
    assert not budget.exhausted(plan.iterations - 1, 99.0)
    assert budget.exhausted(plan.iterations, 99.0)
    assert budget.exhausted(30, OVERRUN * 100 + 0.01)  # far slower than planned: stops anyway
    assert not budget.exhausted(30, OVERRUN * 100)


def test_the_probe_ends_at_its_share_of_a_small_budget():
    budget = TrainingBudget(20.0, warm_iterations=5, probe_iterations=20)
    plan, at = observe_all(budget, [0.5] * 5 + [1.0] * 30)  # 2.5 s warm, then 1 s each: 5 s is the share
    assert 2.5 + (at - 5) * 1.0 >= PROBE_SHARE * 20 and at == 8
    assert plan.timed_iterations == 3 and plan.seconds_per_iteration == pytest.approx(1.0)
    assert plan.iterations == 8 + 14  # 5.5 s spent, 14.5 s left


def test_a_budget_smaller_than_the_warm_iterations_times_all_of_them_and_may_stop_at_once():
    budget = TrainingBudget(1.0, warm_iterations=5, probe_iterations=20)
    plan, at = observe_all(budget, [0.25] * 10)  # the probe's share is spent after the first iteration
    assert at == 1 and plan.timed_iterations == 1 and plan.iterations == 4  # 0.75 s left: three more
    budget = TrainingBudget(1.0, warm_iterations=5, probe_iterations=20)
    plan, at = observe_all(budget, [3.0])
    assert plan.iterations == 1 and budget.exhausted(1, 3.0)  # over the budget after the first iteration


def test_a_resumed_run_probes_from_where_it_resumed_or_keeps_its_plan():
    budget = TrainingBudget(100.0, start_iteration=40, start_s=30.0, warm_iterations=2, probe_iterations=4)
    plan, at = observe_all(budget, [1.0] * 2 + [0.5] * 10, start_iteration=40, start_s=30.0)
    assert at == 46 and plan.timed_iterations == 4 and plan.seconds_per_iteration == pytest.approx(0.5)
    assert plan.iterations == 46 + int((100 - 34.0) // 0.5)
    kept = TrainingBudget(100.0, start_iteration=40, start_s=30.0, planned_iterations=77)
    assert observe_all(kept, [0.5] * 50, start_iteration=40, start_s=30.0) == (None, None)
    assert kept.exhausted(77, 60.0) and not kept.exhausted(76, 60.0)


@pytest.mark.parametrize("seconds", [0, -1.0, float("inf"), float("nan"), "80"])
def test_a_budget_must_be_a_positive_finite_number(seconds):
    with pytest.raises(ValueError, match="train.budget_s must be a finite number > 0"):
        TrainingBudget(seconds)


def test_the_schedule_drops_at_iterations_once_told():
    optimizer = sgd(torch.nn.Linear(2, 2), lr=0.01, momentum=0.9, weight_decay=0)
    schedule = StepSchedule(optimizer, steps=[8, 11], warmup="linear", warmup_iters=10, warmup_ratio=0.5)
    assert schedule.factor(9, 100) == pytest.approx(0.1)  # epoch steps
    schedule.decay_at_iterations([])
    assert schedule.factor(9, 100) == 1 and schedule.factor(0, 5) == pytest.approx(0.75)  # warm-up kept
    schedule.decay_at_iterations([120, 60])
    assert schedule.factor(0, 59) == 1
    assert schedule.factor(0, 60) == pytest.approx(0.1)
    assert schedule.factor(0, 120) == pytest.approx(0.01)


def test_config_budget_is_checked():
    assert load_config(DEFAULT_CONFIG)["train"]["budget_s"] == 0
    assert load_config(DEFAULT_CONFIG, ["train.budget_s=80"])["train"]["budget_s"] == 80
    with pytest.raises(ValueError, match="train.budget_s"):
        load_config(DEFAULT_CONFIG, ["train.budget_s=-5"])


PLANNED = re.compile(r"after (\d+) iterations, .* the run trains (\d+) iterations .* at iterations \[(.*?)\]")


class TickingClock:
    """A training clock that advances `tick` seconds per reading, whatever the machine's load."""

    def __init__(self, tick: float):
        self.now, self.tick = 0.0, tick

    def perf_counter(self) -> float:
        self.now += self.tick
        return self.now


def test_a_tiny_budget_trains_stops_at_its_plan_and_resumes_to_the_same_end(
    smoke_overrides, tmp_path, monkeypatch
):
    # The trainer reads its clock at the start and once per iteration: a reading of 1 s each spends the
    # probe's quarter of the 4 s budget in the first iteration, and the plan is 3 more.
    clock = types.SimpleNamespace(perf_counter=TickingClock(1.0).perf_counter, time=time.time)
    monkeypatch.setattr(tinyfast.engine.trainer, "time", clock)
    run = tmp_path / "run"
    overrides = [
        *smoke_overrides,
        "train.budget_s=4",
        "train.epochs=12",
        "train.steps=[6, 9]",
        "train.warmup=none",
        "train.max_iters_per_epoch=0",
    ]
    config = load_config(DEFAULT_CONFIG, overrides)
    _, metrics = train(config, run, progress=False)
    assert 0 <= metrics["AP50_tiny"] <= 1
    text = (run / "train.log").read_text()
    assert PLANNED.search(text).groups() == ("1", "4", "2, 3")
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    trained = [r for r in records if "lr" in r]
    assert [r["iteration"] for r in trained] == [1, 2, 3, 4]
    base = trained[0]["lr"]
    assert [r["lr"] for r in trained] == pytest.approx([base, base, 0.1 * base, 0.01 * base])
    assert "AP50_tiny" in records[-1] and "ran out" not in text
    timing = json.loads((run / "timing.json").read_text())
    # Training time: the 4 iterations, the last checkpoint and the final reading; the evaluation: 1 s.
    assert timing == {
        "iterations": 4,
        "training_s": 6.0,
        "images_per_s": 1.333,
        "evaluation_s": 1.0,
        "budget_s": 4.0,
    }
    assert (
        "training: 4 iterations in 6.0 s (train.budget_s = 4), 1.333 training images/s; evaluation: 1.0 s"
        in text
    )

    # The plan is in the checkpoint: nothing left to train, no new probe.
    train(
        load_config(DEFAULT_CONFIG, [*overrides, "test.eval_interval=-1"]), run, progress=False, resume="auto"
    )
    again = (run / "train.log").read_text()
    assert len(PLANNED.findall(again)) == 1 and "training: 4 iterations in" in again[len(text) :]
    resumed = json.loads((run / "timing.json").read_text())
    assert resumed["iterations"] == 4 and resumed["images_per_s"] is None


def test_a_run_slower_than_its_probe_stops_at_the_overrun(smoke_overrides, tmp_path, monkeypatch):
    clock = TickingClock(1.0)
    monkeypatch.setattr(
        tinyfast.engine.trainer,
        "time",
        types.SimpleNamespace(perf_counter=clock.perf_counter, time=time.time),
    )
    overrides = [*smoke_overrides, "train.budget_s=4", "train.max_iters_per_epoch=0", "test.eval_interval=-1"]
    trainer_budget = tinyfast.engine.trainer.TrainingBudget

    def slower_after_the_plan(*args, **kwargs):
        budget = trainer_budget(*args, **kwargs)
        observe = budget.observe

        def observe_then_slow_down(iteration, elapsed_s):
            plan = observe(iteration, elapsed_s)
            if plan is not None:
                clock.tick = 2.0
            return plan

        budget.observe = observe_then_slow_down
        return budget

    monkeypatch.setattr(tinyfast.engine.trainer, "TrainingBudget", slower_after_the_plan)
    train(load_config(DEFAULT_CONFIG, overrides), tmp_path / "run", progress=False)
    text = (tmp_path / "run" / "train.log").read_text()
    # Planned 4 at 1 s each; then 2 s each: 3 s after iteration 2, 5 s (over 1.1 x 4) after iteration 3.
    assert "the time budget ran out at iteration 3 of the 4 planned (5.0 s of training" in text
    assert json.loads((tmp_path / "run" / "timing.json").read_text())["iterations"] == 3
