"""The training loop: data, model, SGD with the reference's schedule, checkpoints and logs in a run folder."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from tinyfast.data import TinyPersonDataset, make_loader
from tinyfast.data.synthetic import PRESETS, generate
from tinyfast.engine.checkpoint import save_checkpoint
from tinyfast.engine.evaluation import evaluate_detector
from tinyfast.engine.optim import StepSchedule, sgd
from tinyfast.modeling import DETECTORS


def build_model(model_config: dict) -> nn.Module:
    """The detector that `model.name` names (`tinyfast.modeling.DETECTORS`), with the section's other keys
    as its config (TOML arrays become tuples)."""
    name = model_config["name"]
    if name not in DETECTORS:
        raise ValueError(
            f"model.name {name!r} is not a known detector (known: {', '.join(sorted(DETECTORS))})"
        )
    model_class, config_class = DETECTORS[name]
    settings = {key: _as_tuples(value) for key, value in model_config.items() if key != "name"}
    unknown = sorted(set(settings) - {field.name for field in dataclasses.fields(config_class)})
    if unknown:
        raise ValueError(f"model.{unknown[0]} is not a setting of {name} (the config's [model] section)")
    return model_class(config_class(**settings))


def _as_tuples(value):
    return tuple(_as_tuples(item) for item in value) if isinstance(value, list) else value


def prepare_data(data_config: dict) -> None:
    """Writes the synthetic set on first use when the config names a preset and its folder is empty."""
    preset = data_config.get("synthetic_preset")
    if preset and not Path(data_config["train_annotations"]).is_file():
        if preset not in PRESETS:
            raise ValueError(f"data.synthetic_preset {preset!r} is not one of {sorted(PRESETS)}")
        generate(data_config["root"], preset, data_config.get("synthetic_seed", 0))


def train_loader(config: dict) -> torch.utils.data.DataLoader:
    data, train = config["data"], config["train"]
    dataset = TinyPersonDataset(
        data["train_annotations"],
        data["train_images"],
        task=data["task"],
        train=True,
        erase=data["erase"],
        sub_size=tuple(data["sub_size"]),
        normalization=data["normalization"],
    )
    return make_loader(
        dataset,
        train["batch_size"],
        shuffle=True,
        num_workers=train["workers"],
        drop_last=True,
        seed=train["seed"],
    )


def train(config: dict, run_dir: Path, *, progress: bool = True) -> tuple[nn.Module, dict[str, float]]:
    """Trains the config's model, then evaluates it with tiled inference on the test images.

    Writes `config.json`, `log.jsonl`, checkpoints, results and metrics into `run_dir`; returns the model
    and the last metrics."""
    train_config = config["train"]
    torch.manual_seed(train_config["seed"])
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(config, indent=2))
    prepare_data(config["data"])
    loader = train_loader(config)
    model = build_model(config["model"]).train()
    optimizer = sgd(
        model,
        train_config["lr"],
        train_config["momentum"],
        train_config["weight_decay"],
        train_config["bias_lr_mult"],
        train_config["bias_decay_mult"],
    )
    schedule = StepSchedule(
        optimizer,
        train_config["steps"],
        train_config["warmup"],
        train_config["warmup_iters"],
        train_config["warmup_ratio"],
    )
    trainable = [p for p in model.parameters() if p.requires_grad]
    epochs, iteration, metrics = train_config["epochs"], 0, {}
    with (run_dir / "log.jsonl").open("a") as log:
        for epoch in range(epochs):
            bar = tqdm(loader, desc=f"epoch {epoch + 1}/{epochs}", disable=not progress, dynamic_ncols=True)
            for batch in bar:
                lr = schedule.set(epoch, iteration)
                targets = [{"boxes": t["boxes"], "labels": t["labels"]} for t in batch.targets]
                losses = model(batch.images, targets)
                loss = sum(losses.values())
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"non-finite loss at epoch {epoch + 1}, iteration {iteration}: "
                        f"{ {name: value.item() for name, value in losses.items()} }; the checkpoints in "
                        f"{run_dir} are those of the last finished epoch"
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if train_config["grad_clip"] > 0:
                    torch.nn.utils.clip_grad_norm_(trainable, train_config["grad_clip"])
                optimizer.step()
                iteration += 1
                bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{lr:.2e}")
                record = {"epoch": epoch + 1, "iteration": iteration, "lr": lr, "time": time.time()}
                record.update({name: round(value.item(), 5) for name, value in losses.items()})
                log.write(json.dumps(record) + "\n")
            log.flush()
            state = {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "epoch": epoch + 1,
                "iteration": iteration,
                "config": config,
            }
            save_checkpoint(state, run_dir, epoch + 1, train_config["keep_checkpoints"])
            interval = config["test"]["eval_interval"]
            if epoch + 1 == epochs or (interval > 0 and (epoch + 1) % interval == 0):
                metrics = evaluate_detector(
                    model.detect_tiles,
                    config,
                    run_dir,
                    config["test"]["policy"],
                    progress=progress,
                    images_per_batch=config["test"]["images_per_batch"],
                )
                log.write(json.dumps({"epoch": epoch + 1, "iteration": iteration, **metrics}) + "\n")
                model.train()
    return model, metrics
