"""The training loop: data, model, SGD with the reference's schedule, checkpoints and logs in a run folder;
one process or a torchrun launch of many (DistributedDataParallel), resumable at any iteration."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import random
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from tinyfast.data import DataError
from tinyfast.data.build import prepare_data, train_dataset
from tinyfast.data.sampling import EpochBatchSampler, TrainingBatch, loader_workers, make_training_loader
from tinyfast.engine import distributed
from tinyfast.engine.budget import Plan, TrainingBudget, budgeted_steps
from tinyfast.engine.checkpoint import (
    LATEST,
    load_checkpoint,
    model_checkpoint,
    remove_partial_writes,
    restore_rng_states,
    resume_path,
    rng_states,
    save_checkpoint,
)
from tinyfast.engine.config import RunConfig, to_toml
from tinyfast.engine.curves import plot_curves, write_tensorboard
from tinyfast.engine.evaluation import evaluate_model
from tinyfast.engine.optim import StepSchedule, linear_scaled_lr, sgd
from tinyfast.engine.run_folder import main_process_lock
from tinyfast.engine.run_state import Position, RecordLog, resume_position, truncate_log
from tinyfast.engine.weight_average import WeightAverage
from tinyfast.modeling.backbone import check_pretrained
from tinyfast.modeling.build import build_model, load_matching, model_kind
from tinyfast.utils import comm
from tinyfast.utils.precision import resolve_precision

log = logging.getLogger("tinyfast.train")

# The target fields each kind of model is trained on (tinyfast.modeling.build.model_kind): the point
# models never see the boxes of a point-annotated json, which are there for evaluation only.
SUPERVISION = {
    "detector": ("boxes", "labels"),
    "localiser": ("points", "labels"),
    "refiner": ("points", "labels"),
}


def check_supervision(config: dict) -> str:
    """The model's kind, after checking that `data.points` fits it: set for a point model, empty for a box
    detector (ValueError naming both keys otherwise)."""
    kind, points = model_kind(config["model"]), config["data"]["points"]
    name = config["model"]["name"]
    if kind != "detector" and not points:
        raise ValueError(
            f"model.name = {name!r} is trained on points: set data.points to 'annotated' (the json's "
            "`point`), 'coarse' or 'centre' (drawn from the boxes)"
        )
    if kind == "detector" and points:
        raise ValueError(
            f"data.points = {points!r} is for the point models; model.name = {name!r} trains on boxes"
        )
    return kind


@contextlib.contextmanager
def deterministic_algorithms(enabled: bool, device: torch.device):
    """`train.deterministic`: PyTorch's deterministic algorithms for the duration of the run (CPU runs are
    then bit-identical). On GPUs an op without a deterministic kernel warns instead of stopping the run."""
    previous = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    previous_cudnn = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    if enabled:
        torch.use_deterministic_algorithms(True, warn_only=device.type == "cuda")
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = previous_cudnn


@contextlib.contextmanager
def _messages_to_file(path: Path | None):
    """The engine's messages (lr scaling, resume, skips) also go to `path`, the run folder's train.log."""
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    level = log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
        handler.close()


class Trainer:
    """One process of a run: `Trainer(config, run_dir, processes).run()`. Rank 0 alone writes the run
    folder (config, logs, checkpoints, results); every process trains and evaluates its share."""

    def __init__(
        self,
        config: dict,
        run_dir: Path,
        processes: distributed.Processes,
        *,
        progress: bool = True,
        resume: str | Path | None = None,
    ):
        self.config, self.run_dir, self.processes = config, run_dir, processes
        self.settings = RunConfig.from_config(config)
        self.progress = progress and processes.is_main
        self.device = processes.device
        settings = self.settings.train
        checkpoint = resume_path(run_dir, resume, settings.auto_resume)
        torch.manual_seed(settings.seed)
        np.random.seed(settings.seed)
        random.seed(settings.seed)
        check_pretrained(config["model"])
        self.supervision = SUPERVISION[check_supervision(config)]
        self.amp_dtype = resolve_precision(settings.amp, self.device, "train.amp")
        # oneDNN's and cuDNN's reduced-precision convolutions are fastest on channels-last tensors.
        self.memory_format = torch.contiguous_format if self.amp_dtype is None else torch.channels_last
        if processes.is_main:
            self._prepare_run_folder()
        comm.barrier()
        self.sampler, self.loader = self._data()
        self.model = self._model()
        init_from = self.settings.model.init_from
        if init_from and checkpoint is None:
            self._init_from(init_from)
        elif init_from:
            self._info(f"model.init_from = {init_from!r} not applied: the run resumes from {checkpoint}")
        lr = linear_scaled_lr(
            settings.lr, settings.reference_batch, processes.world_size, settings.batch_size
        )
        self._info(
            f"lr {settings.lr:g} is for a total batch of {settings.reference_batch} "
            f"(train.reference_batch); this run: {processes.world_size} process(es) x "
            f"{settings.batch_size} images -> lr {lr:g} (linear scaling)"
        )
        self.optimizer = sgd(
            self.model,
            lr,
            settings.momentum,
            settings.weight_decay,
            settings.bias_lr_mult,
            settings.bias_decay_mult,
        )
        self.schedule = StepSchedule(
            self.optimizer, settings.steps, settings.warmup, settings.warmup_iters, settings.warmup_ratio
        )
        precision = "float32" if self.amp_dtype is None else f"{self.amp_dtype} autocast, channels last"
        self._info(f"train.amp = {settings.amp!r}: {precision} on {self.device}")
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self.trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.average = None
        if settings.ema_decay > 0:
            self.average = WeightAverage(self.model, settings.ema_decay, settings.ema_ramp_iters)
        self.position = Position()
        # Training seconds of the run so far (a resumed run starts with its checkpoint's); evaluations,
        # timed apart, are not part of it.
        self.training_s_before, self.evaluation_s = 0.0, 0.0
        planned_iterations = None
        if checkpoint is not None:
            planned_iterations = self._restore(checkpoint)
        elif resume is not None or settings.auto_resume:
            self._info(f"nothing to resume in {run_dir}: the run starts from the beginning")
        self.budget = None
        if settings.budget_s > 0:
            self.budget = TrainingBudget(
                settings.budget_s, self.position.iteration, self.training_s_before, planned_iterations
            )
            self.schedule.decay_at_iterations(
                [] if planned_iterations is None else self._budgeted_steps(planned_iterations)
            )
        self.network = (
            nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
            if processes.world_size > 1
            else self.model
        )

    def _prepare_run_folder(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.toml").write_text(to_toml(self.config))
        for path in remove_partial_writes(self.run_dir):
            self._info(f"removed {path.name}, a checkpoint write that never finished")
        prepare_data(self.settings.data)

    def _data(self) -> tuple[EpochBatchSampler, torch.utils.data.DataLoader]:
        settings, processes = self.settings.train, self.processes
        dataset = train_dataset(self.settings.data, settings.seed)
        sampler = EpochBatchSampler(
            len(dataset),
            settings.batch_size,
            seed=settings.seed,
            rank=processes.rank,
            world_size=processes.world_size,
            max_batches=settings.max_iters_per_epoch,
        )
        if sampler.batches_per_epoch == 0:
            raise ValueError(
                f"{len(dataset)} training items do not fill one batch of {settings.batch_size} "
                f"in each of {processes.world_size} process(es)"
            )
        workers = loader_workers(settings.workers, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
        loader = make_training_loader(
            dataset, sampler, num_workers=workers, pin_memory=self.device.type == "cuda"
        )
        return sampler, loader

    def _model(self) -> nn.Module:
        """The config's model on this process's device; BatchNorm synchronised across GPUs."""
        model = build_model(self.config["model"]).to(self.device, memory_format=self.memory_format).train()
        world_size = self.processes.world_size
        if world_size > 1 and any(isinstance(m, nn.BatchNorm2d) for m in model.modules()):
            if self.device.type == "cuda":
                return nn.SyncBatchNorm.convert_sync_batchnorm(model)
            message = f"BatchNorm statistics are per process: {world_size} CPU processes do not train as one"
            self._info(f"{message} (SyncBatchNorm needs GPUs)", logging.WARNING)
        return model

    def _init_from(self, source: str) -> None:
        """`model.init_from`: every tensor of a pre-trained model whose name and shape match; one line says
        what did not load. A frozen backbone (frozen BatchNorm or stages) must load entirely: its weights
        come from there, not from ImageNet."""
        path = model_checkpoint(source, "model.init_from")
        state = load_checkpoint(path).get("model")
        if not isinstance(state, dict):
            raise ValueError(f"model.init_from {path}: the checkpoint holds no model")
        report = load_matching(self.model, state)
        self._info(f"model.init_from {path}: {report.summary()}")
        if not report.loaded:
            raise ValueError(f"model.init_from {path}: no tensor of it matches this config's model")
        model = self.settings.model
        frozen = model.backbone_norm == "frozen" or model.frozen_stages >= 0
        backbone = [name for name in report.not_loaded if name.startswith("backbone.")]
        if frozen and backbone:
            raise ValueError(
                f"model.init_from {path}: {len(backbone)} tensor(s) of the backbone did not load (e.g. "
                f"{backbone[0]}), and a frozen backbone (model.backbone_norm = {model.backbone_norm!r}, "
                f"model.frozen_stages = {model.frozen_stages}) would keep them untrained"
            )

    def _info(self, message: str, level: int = logging.INFO) -> None:
        if self.processes.is_main:
            log.log(level, message)

    def _restore(self, path: Path) -> int | None:
        """Continues from the checkpoint at `path`; returns the iterations its run's time budget planned
        (None: no budget, or not planned yet)."""
        state = load_checkpoint(path)
        position = resume_position(state, path, self.processes.world_size, self.settings.train.batch_size)
        try:
            self._restore_weights(state)
            self.optimizer.load_state_dict(state["optimizer"])
            if state["scaler"]:  # empty when the checkpoint's run had no scaler (float32 or bf16)
                self.scaler.load_state_dict(state["scaler"])
            restore_rng_states(state["rng"])
        except (KeyError, RuntimeError, TypeError, ValueError) as error:
            message = " ".join(str(error).split())[:300]
            raise ValueError(f"{path} cannot be resumed by this config's run ({message})") from None
        self.position = position
        self.training_s_before = float(state.get("training_s", 0.0))  # absent in older checkpoints
        if self.processes.is_main:
            truncate_log(self.run_dir / "log.jsonl", position.iteration)
        self._info(
            f"resumed from {path}: epoch {position.epoch + 1}, batch {position.batch_in_epoch} of the epoch, "
            f"iteration {position.iteration}"
        )
        return state.get("planned_iterations")

    def _restore_weights(self, state: dict) -> None:
        """The optimiser's weights and, with `train.ema_decay`, their average. A checkpoint of a run that
        averaged holds the average as its "model" (what test and predict load) and the optimiser's weights
        as "trained_model"."""
        self.model.load_state_dict(state.get("trained_model", state["model"]))
        if self.average is None:
            return
        if "trained_model" in state:
            self.average.restore(state["model"], state["ema_updates"])
        else:
            self.average = WeightAverage(self.model, self.average.decay, self.average.ramp_iters)
            self._info("the checkpoint holds no averaged weights: the average starts from its weights")

    def _state(self, training_s: float) -> dict:
        if self.average is None:
            weights = {"model": self.model.state_dict()}
        else:
            weights = {
                "model": self.average.weights,
                "trained_model": self.model.state_dict(),
                "ema_updates": self.average.updates,
            }
        return {
            **weights,
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            **dataclasses.asdict(self.position),
            "rng": rng_states(),
            "world_size": self.processes.world_size,
            "batch_size": self.settings.train.batch_size,
            "config": self.config,
            "training_s": training_s,
            "planned_iterations": None if self.budget is None else self.budget.planned_iterations,
        }

    def _save(self, name: str) -> None:
        training_s = self._training_s()  # a collective: every process takes part
        if self.processes.is_main:
            save_checkpoint(self._state(training_s), self.run_dir, name, self.settings.train.keep_checkpoints)

    def run(self) -> tuple[nn.Module, dict[str, float]]:
        """Trains the remaining epochs (with `train.budget_s`: the iterations that fit in it), evaluating
        every `test.eval_interval` epochs, then evaluates the final model with tiled inference on the test
        images (unless the interval is negative). Writes the training and evaluation times to
        `timing.json`. Returns the served model (`served_model`) and the last metrics."""
        interval = self.settings.test.eval_interval
        metrics = {}
        self.clock_start = time.perf_counter()
        start_iteration = self.position.iteration
        with contextlib.closing(RecordLog(self.run_dir / "log.jsonl", self.processes.is_main)) as records:
            while not self._finished():
                self._train_epoch(records)
                self._save(f"epoch_{self.position.epoch}")
                if interval > 0 and self.position.epoch % interval == 0 and not self._finished():
                    metrics = self._evaluate(records)
            training_s = self._training_s()
            if interval >= 0:
                metrics = self._evaluate(records)
        self._report_times(training_s, self.position.iteration - start_iteration)
        if self.processes.is_main:
            self._write_curves()
        if self.position.skipped_batches or self.position.skipped_images:
            self._info(
                f"skipped {self.position.skipped_batches} batch(es) with a non-finite loss and left out "
                f"{self.position.skipped_images} unreadable image(s)",
                logging.WARNING,
            )
        return self.served_model(), metrics

    def served_model(self) -> nn.Module:
        """The weights the run evaluates and its checkpoints serve: with `train.ema_decay` a copy holding
        their average, else the model itself."""
        return self.model if self.average is None else self.average.averaged_model(self.model)

    def _finished(self) -> bool:
        if self.budget is None:
            return self.position.epoch >= self.settings.train.epochs
        planned = self.budget.planned_iterations
        return planned is not None and self.position.iteration >= planned

    def _training_s(self) -> float:
        """Seconds of training in the whole run so far, the same in every process (their maximum)."""
        elapsed = self.training_s_before + time.perf_counter() - self.clock_start - self.evaluation_s
        if self.processes.world_size > 1:
            reading = torch.tensor([elapsed], dtype=torch.float64, device=self.device)
            elapsed = comm.max_over_processes(reading).item()
        return elapsed

    def _budgeted_steps(self, iterations: int) -> list[int]:
        settings = self.settings.train
        return budgeted_steps(settings.steps, settings.epochs, iterations)

    def _budget_reached(self) -> bool:
        """With `train.budget_s`, after each iteration: plans the run when the probe ends; whether the run
        ends here."""
        iteration, elapsed = self.position.iteration, self._training_s()
        plan = self.budget.observe(iteration, elapsed)
        if plan is not None:
            self._apply_plan(plan)
        if not self.budget.exhausted(iteration, elapsed):
            return False
        if iteration < self.budget.planned_iterations:
            self._info(
                f"the time budget ran out at iteration {iteration} of the {self.budget.planned_iterations} "
                f"planned ({elapsed:.1f} s of training, train.budget_s = {self.budget.seconds:g}): the "
                f"iterations ran slower than the probe measured",
                logging.WARNING,
            )
            self.budget.planned_iterations = iteration
        return True

    def _apply_plan(self, plan: Plan) -> None:
        settings = self.settings.train
        steps = self._budgeted_steps(plan.iterations)
        self.schedule.decay_at_iterations(steps)
        epochs, rest = divmod(plan.iterations, self.sampler.batches_per_epoch)
        self._info(
            f"train.budget_s = {self.budget.seconds:g}: after {plan.decided_at} iterations, "
            f"{plan.timed_iterations} timed iteration(s) took {plan.seconds_per_iteration:.4g} s each; the "
            f"run trains {plan.iterations} iterations "
            f"({epochs} epoch(s) of {self.sampler.batches_per_epoch} batches + {rest}), the learning rate "
            f"x{self.schedule.gamma:g} at iterations {steps} (train.steps = {list(settings.steps)} of "
            f"train.epochs = {settings.epochs}, as fractions)"
        )
        first_step = min((step for step in steps if step > 0), default=plan.iterations)
        if settings.warmup != "none" and settings.warmup_iters > first_step:
            self._info(
                f"train.warmup_iters = {settings.warmup_iters} goes past the budgeted run's first "
                f"learning-rate drop (iteration {first_step} of {plan.iterations})",
                logging.WARNING,
            )

    def _report_times(self, training_s: float, iterations: int) -> None:
        """train.log and `timing.json`: the run's iterations and training seconds (a resumed run's include
        those before it), the training images per second of this part of it, and its evaluation seconds."""
        settings = self.settings.train
        images = iterations * self.processes.world_size * settings.batch_size
        session_s = training_s - self.training_s_before
        timing = {
            "iterations": self.position.iteration,
            "training_s": round(training_s, 3),
            "images_per_s": round(images / session_s, 3) if images and session_s > 0 else None,
            "evaluation_s": round(self.evaluation_s, 3),
            "budget_s": settings.budget_s,
        }
        budget = f" (train.budget_s = {settings.budget_s:g})" if self.budget is not None else ""
        speed = f", {timing['images_per_s']:g} training images/s" if timing["images_per_s"] else ""
        self._info(
            f"training: {self.position.iteration} iterations in {training_s:.1f} s{budget}{speed}; "
            f"evaluation: {self.evaluation_s:.1f} s"
        )
        if self.processes.is_main:
            (self.run_dir / "timing.json").write_text(json.dumps(timing, indent=2) + "\n")

    def _write_curves(self) -> None:
        """curves.png (and TensorBoard events when tensorboard is installed) from log.jsonl; a run whose
        curves cannot be drawn has still trained: a warning, not an error."""
        try:
            plot_curves(self.run_dir)
            write_tensorboard(self.run_dir)
        except (ImportError, OSError, ValueError) as error:
            self._info(f"no training curves: {error}", logging.WARNING)

    def _train_epoch(self, records) -> None:
        """One epoch, or what is left of it; with a time budget the last epoch of the run ends early, at
        the run's planned iteration, and counts as done."""
        epoch, epochs = self.position.epoch, self.settings.train.epochs
        if self.budget is not None:
            planned = self.budget.planned_iterations
            epochs = "?" if planned is None else -(-planned // self.sampler.batches_per_epoch)
        interval = self.settings.train.checkpoint_interval
        self.sampler.set_epoch(epoch, self.position.batch_in_epoch)
        bar = tqdm(
            self.loader, desc=f"epoch {epoch + 1}/{epochs}", disable=not self.progress, dynamic_ncols=True
        )
        for loaded in bar:
            lr = self.schedule.set(epoch, self.position.iteration)
            outcome = self._step(loaded)
            self.position.batch_in_epoch += 1
            self.position.iteration += 1
            if "loss" in outcome:
                bar.set_postfix(loss=f"{outcome['loss']:.3f}", lr=f"{lr:.2e}")
            record = {"epoch": epoch + 1, "iteration": self.position.iteration, "lr": lr, "time": time.time()}
            record.update(outcome)
            records.write(record)
            if self.budget is not None and self._budget_reached():
                break
            unfinished = self.position.batch_in_epoch < self.sampler.batches_per_epoch
            if interval > 0 and self.position.iteration % interval == 0 and unfinished:
                records.flush()
                self._save(f"iter_{self.position.iteration}")
        records.flush()
        self.position.epoch += 1
        self.position.batch_in_epoch = 0

    def _step(self, loaded: TrainingBatch) -> dict:
        """One iteration of every process: forward, then backward and SGD step unless the batch is skipped
        (no readable image in some process, or a non-finite loss in some process: all skip together).
        Returns what the log records: the losses averaged over the processes, or why it skipped."""
        batch, bad_items = loaded
        unreadable, empty = comm.sum_over_processes(
            torch.tensor([len(bad_items), batch is None], device=self.device)
        ).tolist()
        outcome = {}
        if unreadable:
            self._leave_out(bad_items, unreadable)
            outcome["skipped_images"] = self.position.skipped_images
        if empty:
            return {**outcome, "skipped": "a batch without readable images"}
        images = batch.images.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
        targets = [
            {key: t[key].to(self.device, non_blocking=True) for key in self.supervision}
            for t in batch.targets
        ]
        # A skipped batch must not leave its trace in the BatchNorm statistics either.
        buffers = [b.clone() for b in self.model.buffers()] if self.settings.train.skip_bad_batches else []
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            losses = self.network(images, targets)
        loss = sum(losses.values())
        values = comm.mean_over_processes(torch.stack([v.detach().float() for v in losses.values()]))
        named = dict(zip(losses, values.tolist(), strict=True))
        if not all(np.isfinite(list(named.values()))):
            self._skip_non_finite(named)
            for buffer, saved in zip(self.model.buffers(), buffers, strict=True):
                buffer.copy_(saved)
            return {**outcome, "skipped": "non-finite loss", "skipped_batches": self.position.skipped_batches}
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.settings.train.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.trainable, self.settings.train.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.average is not None:
            self.average.update(self.model)
        named["loss"] = sum(named.values())
        return {**outcome, **{name: round(value, 5) for name, value in named.items()}}

    def _leave_out(self, bad_items: list[str], unreadable: int) -> None:
        messages = [m for shard in comm.all_gather_objects(bad_items) for m in shard]
        if not self.settings.data.skip_bad_images:
            more = f" (and {unreadable - 1} more)" if unreadable > 1 else ""
            raise DataError(f"{messages[0]}{more}; data.skip_bad_images = true leaves such images out")
        self.position.skipped_images += unreadable
        for message in messages:
            self._info(f"left out of the batch: {message}", logging.WARNING)

    def _skip_non_finite(self, losses: dict[str, float]) -> None:
        allowed = self.settings.train.skip_bad_batches
        where = f"epoch {self.position.epoch + 1}, iteration {self.position.iteration + 1}"
        if self.position.skipped_batches >= allowed:
            latest = self.run_dir / LATEST
            kept = (
                f"the last good checkpoint is {latest}"
                if latest.is_file()
                else "no checkpoint was written yet"
            )
            raise FloatingPointError(
                f"non-finite loss at {where}: {losses}; the run stops ({self.position.skipped_batches} "
                f"batch(es) skipped before, train.skip_bad_batches = {allowed}); {kept}"
            )
        self.position.skipped_batches += 1
        self._info(
            f"skipped the batch of {where}: non-finite loss {losses} "
            f"({self.position.skipped_batches} of at most {allowed})",
            logging.WARNING,
        )

    def _evaluate(self, records) -> dict[str, float]:
        test = self.settings.test
        start = time.perf_counter()
        metrics = evaluate_model(
            self.served_model(),
            self.config,
            self.run_dir,
            test.policy,
            progress=self.progress,
            images_per_batch=test.images_per_batch,
            device=self.device,
        )
        records.write({"epoch": self.position.epoch, "iteration": self.position.iteration, **metrics})
        records.flush()
        self.evaluation_s += time.perf_counter() - start
        return metrics


def train(
    config: dict, run_dir: Path, *, progress: bool = True, resume: str | Path | None = None
) -> tuple[nn.Module, dict[str, float]]:
    """Trains the config's model, then evaluates it with tiled inference on the test images.

    Under torchrun every process calls this; it joins the process group and leaves it at the end.
    `resume`: a checkpoint to continue from, or "auto" for the run folder's latest.pth (as
    `train.auto_resume`). Writes `config.toml`, `log.jsonl`, `curves.png`, `train.log`, checkpoints, results
    and metrics into `run_dir`; returns the served model (`Trainer.served_model`) and the last metrics."""
    settings = RunConfig.from_config(config).train
    with distributed.launch(settings.device) as processes:
        with (
            main_process_lock(run_dir, processes),
            _messages_to_file(run_dir / "train.log" if processes.is_main else None),
            deterministic_algorithms(settings.deterministic, processes.device),
        ):
            trainer = Trainer(config, run_dir, processes, progress=progress, resume=resume)
            return trainer.run()
