"""SGD with the reference's parameter groups and learning-rate schedule (mmdetection 2.x semantics)."""

from __future__ import annotations

from torch import nn, optim

WARMUPS = ("linear", "constant", "none")


def linear_scaled_lr(lr: float, reference_batch: int, world_size: int, batch_size: int) -> float:
    """The linear scaling rule: `lr` is the learning rate for a total batch of `reference_batch` images
    (the reference's GPUs x images per GPU); a run with `world_size` processes of `batch_size` images uses
    lr x world_size x batch_size / reference_batch."""
    if not isinstance(reference_batch, int) or isinstance(reference_batch, bool) or reference_batch < 1:
        raise ValueError(f"train.reference_batch must be an int >= 1, got {reference_batch!r}")
    return lr * world_size * batch_size / reference_batch


def sgd(
    model: nn.Module,
    lr: float,
    momentum: float,
    weight_decay: float,
    bias_lr_mult: float = 1.0,
    bias_decay_mult: float = 1.0,
) -> optim.SGD:
    """Biases get `lr * bias_lr_mult` and `weight_decay * bias_decay_mult` (FCOS: 2 and 0)."""
    weights, biases = [], []
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            (biases if name.endswith(".bias") else weights).append(parameter)
    return optim.SGD(
        [
            {"params": weights, "lr": lr, "weight_decay": weight_decay},
            {"params": biases, "lr": lr * bias_lr_mult, "weight_decay": weight_decay * bias_decay_mult},
        ],
        lr=lr,
        momentum=momentum,
    )


class StepSchedule:
    """Warm-up over the first `warmup_iters` iterations (linear from `warmup_ratio`, or constant at it),
    then the learning rate times 0.1 at each epoch in `steps`; after `decay_at_iterations(...)`, at each of
    those iterations instead (a run sized by a time budget: `tinyfast.engine.budget`)."""

    def __init__(
        self,
        optimizer: optim.Optimizer,
        steps: list[int],
        warmup: str,
        warmup_iters: int,
        warmup_ratio: float,
        gamma: float = 0.1,
    ):
        if warmup not in WARMUPS:
            raise ValueError(f"warmup must be 'linear', 'constant' or 'none', got {warmup!r}")
        self.optimizer = optimizer
        self.base_lrs = [group["lr"] for group in optimizer.param_groups]
        self.steps, self.warmup, self.warmup_iters = sorted(steps), warmup, warmup_iters
        self.warmup_ratio, self.gamma = warmup_ratio, gamma
        self.steps_in_iterations = False

    def decay_at_iterations(self, iterations: list[int]) -> None:
        """From now on the learning rate drops at these iterations (not epochs)."""
        self.steps, self.steps_in_iterations = sorted(iterations), True

    def factor(self, epoch: int, iteration: int) -> float:
        now = iteration if self.steps_in_iterations else epoch
        decay = self.gamma ** sum(now >= step for step in self.steps)
        if self.warmup == "none" or iteration >= self.warmup_iters:
            return decay
        if self.warmup == "constant":
            return decay * self.warmup_ratio
        return decay * (1 - (1 - iteration / self.warmup_iters) * (1 - self.warmup_ratio))

    def set(self, epoch: int, iteration: int) -> float:
        factor = self.factor(epoch, iteration)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = base * factor
        return self.base_lrs[0] * factor
