"""`train.ema_decay`: an exponential moving average of a model's weights over the iterations of a run, the
weights the run evaluates and the checkpoints serve (ultralytics' and mmdetection's model EMA). As
ultralytics', the decay ramps up from 0, so that the random initial weights leave no trace."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


class WeightAverage:
    """After every optimiser step, `update(model)`: each floating-point tensor of `model.state_dict()`
    (parameters and BatchNorm statistics) moves into the average by `1 - decay_at(updates)`; the others
    (BatchNorm's batch counts) are copied."""

    def __init__(self, model: nn.Module, decay: float, ramp_iters: float):
        self.decay, self.ramp_iters, self.updates = decay, ramp_iters, 0
        self.weights = {name: value.detach().clone() for name, value in model.state_dict().items()}

    def decay_at(self, updates: int) -> float:
        """The decay of update number `updates` (from 1): `decay x (1 - exp(-(updates - 1) / ramp_iters))`,
        0 at the first (the average starts as the weights after the first step), or `decay` throughout
        when `ramp_iters` is 0."""
        if self.ramp_iters == 0:
            return self.decay
        return self.decay * (1.0 - math.exp(-(updates - 1) / self.ramp_iters))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        weight = 1.0 - self.decay_at(self.updates)
        current = model.state_dict()
        averaged, values, copied = [], [], []
        for name, mean in self.weights.items():
            if mean.is_floating_point():
                averaged.append(mean)
                values.append(current[name].detach())
            else:
                copied.append((mean, current[name]))
        if averaged:
            torch._foreach_lerp_(averaged, values, weight)
        for mean, value in copied:
            mean.copy_(value)

    def averaged_model(self, model: nn.Module) -> nn.Module:
        """A copy of `model` holding the average (`model` is left as it is)."""
        clone = copy.deepcopy(model)
        clone.load_state_dict(self.weights)
        return clone

    def restore(self, weights: dict[str, torch.Tensor], updates: int) -> None:
        """The average as a checkpoint saved it: its `weights` after `updates` updates."""
        differing = set(self.weights) ^ set(weights)
        if differing:
            raise KeyError(f"the averaged weights and the model differ in tensor {sorted(differing)[0]}")
        for name, mean in self.weights.items():
            mean.copy_(weights[name])
        self.updates = int(updates)
