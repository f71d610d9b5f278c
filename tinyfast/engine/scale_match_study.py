"""The Scale Match study on synthetic sets (`python -m tinyfast.study scale-match`): does pre-training on a
set of ordinary-sized persons, its scales matched to the tiny set's, help fine-tuning on the tiny set?

Four arms with the same number of training iterations, all fine-tuned and tested on the tiny synthetic set
(the default run's `fcos_synthetic` config and schedule): (a) from scratch; (b) half the iterations
pre-training on the COCO-like source set (`tinyfast.data.synthetic.generate_source`: 20-300 px persons) as
it is, in cuts of `data.sub_size`, then half fine-tuning from it (`model.init_from`); (c) the same with the
source images resized by Scale Match (SM) and (d) by Monotonicity Scale Match (MSM) to the tiny set's
training sizes. Writes the table (AP50 tiny, tiny1-3, small) as markdown and json, and a plot of the size
histograms (target, source, source after SM and after MSM).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from tinyfast.data.annotations import load_annotations
from tinyfast.data.build import DataConfig, scale_matcher, train_dataset
from tinyfast.data.scale_match import object_sizes, scale_match_generator
from tinyfast.data.synthetic import generate, generate_source
from tinyfast.engine.config import DEFAULT_CONFIG, load_config
from tinyfast.engine.trainer import train

METRICS = ("AP50_tiny", "AP50_tiny1", "AP50_tiny2", "AP50_tiny3", "AP50_small")
SOURCE_JSON = "annotations/source.json"
TARGET_JSON, TEST_JSON = "annotations/train.json", "annotations/test.json"
# The reference's Scale Match results on real COCO -> TinyPerson (AP50 tiny, %; docs/protocol.md §6.3).
REFERENCE = (
    "the reference (COCO -> TinyPerson, AP50 tiny): Faster-FPN 49.81 -> 50.85 with SM, 50.18 with MSM; "
    "Adap RetinaNet (clip grad) 45.22 -> 51.78 with SM, 50.00 with MSM"
)
LR_STEP_AT = 0.7  # fcos_synthetic's schedule: the learning rate drops after 70% of the epochs
# Every arm sees the images at their own scale (the default run resizes its tiny set by 1.5): a resized
# target would also move the sizes that Scale Match matches the source to.
OWN_SCALE = ("data.image_scale=1.0", "test.scales=[1.0]")


@dataclass(frozen=True)
class StudySize:
    """How large the study runs: the synthetic sets, the iterations of each arm and the model's size."""

    target_preset: str
    source_images: int
    iterations: int  # per arm; a pre-trained arm spends half of them pre-training
    batch_size: int
    overrides: tuple[str, ...] = ()  # config overrides for every stage


# Sized for about 12 minutes on 2 CPU cores (bf16): the default run trains 320 iterations of batch 4 in
# about 2.5 minutes; the four arms train 4 x 320, the source's matched images are smaller than its cuts.
FULL = StudySize("default", 48, 320, 4)
QUICK = StudySize(
    "tiny",
    6,
    4,
    2,
    (
        "data.sub_size=[160, 128]",
        "data.min_objects_per_cut=1",
        "model.channels=16",
        "model.stacked_convs=1",
        "model.nms_pre=50",
        "train.workers=0",
        "train.warmup_iters=1",
    ),
)


@dataclass(frozen=True)
class Arm:
    name: str
    label: str
    scale_match: str | None  # None: no pre-training; "none": pre-training on the source as it is


ARMS = (
    Arm("scratch", "from scratch", None),
    Arm("plain", "pre-trained on the source", "none"),
    Arm("sm", "pre-trained on the source with SM", "sm"),
    Arm("msm", "pre-trained on the source with MSM", "msm"),
)


@dataclass(frozen=True)
class ArmResult:
    arm: str
    label: str
    pretrain_iterations: int
    finetune_iterations: int
    metrics: dict[str, float]
    seconds: float


def prepare_sets(data_root: Path, size: StudySize) -> None:
    """The tiny target set and the source set in `data_root`, each written unless it is there."""
    if not (data_root / TARGET_JSON).is_file() or not (data_root / TEST_JSON).is_file():
        generate(data_root, size.target_preset)
    if not (data_root / SOURCE_JSON).is_file():
        generate_source(data_root, size.source_images)


def _data_overrides(data_root: Path, train_json: str) -> list[str]:
    return [
        f"data.root={data_root}",
        f"data.train_annotations={train_json}",
        "data.train_images=images",
        f"data.test_annotations={TEST_JSON}",
        "data.test_images=images",
        "data.synthetic_preset=",
    ]


def schedule(iterations: int, batches_per_epoch: int) -> list[str]:
    """`iterations` exactly, in epochs of at most `batches_per_epoch` (as many as divide it), with the
    learning rate dropping after 70% of the epochs."""
    per_epoch = max(d for d in range(1, min(batches_per_epoch, iterations) + 1) if iterations % d == 0)
    epochs = iterations // per_epoch
    step = round(LR_STEP_AT * epochs)
    steps = [step] if 1 <= step < epochs else []
    return [f"train.epochs={epochs}", f"train.max_iters_per_epoch={per_epoch}", f"train.steps={steps}"]


def stage_config(
    base: Sequence[str], iterations: int, *, evaluate: bool, config: str | Path = DEFAULT_CONFIG
) -> dict:
    """The config of one training stage: `config` with the overrides `base`, `iterations` long."""
    draft = load_config(config, base)
    items = len(train_dataset(DataConfig.from_config(draft["data"]), draft["train"]["seed"]))
    batches = items // draft["train"]["batch_size"]
    if batches < 1:
        raise ValueError(f"{items} training items do not fill a batch of {draft['train']['batch_size']}")
    extra = [] if evaluate else ["test.eval_interval=-1"]
    return load_config(config, [*base, *schedule(iterations, batches), *extra])


def run_study(
    out: Path,
    data_root: Path,
    size: StudySize = FULL,
    *,
    seed: int = 0,
    config: str | Path = DEFAULT_CONFIG,
    log: Callable[[str], None] = lambda line: None,
) -> list[ArmResult]:
    """Trains the four arms (run folders under `out`) and returns their results on the tiny test set."""
    prepare_sets(data_root, size)
    common = [*OWN_SCALE, *size.overrides, f"train.batch_size={size.batch_size}", f"train.seed={seed}"]
    pretrain_iterations = size.iterations // 2
    results = []
    for number, arm in enumerate(ARMS, 1):
        start = time.perf_counter()
        init = []
        if arm.scale_match is not None:
            pretrain_dir = out / f"{arm.name}_pretrain"
            source = [
                *_data_overrides(data_root, SOURCE_JSON),
                "data.train_categories=['person']",
                "data.min_objects_per_cut=1",
                f"data.scale_match={arm.scale_match}",
                f"data.scale_match_target={TARGET_JSON}",
            ]
            stage = stage_config(
                [f"run_dir={pretrain_dir}", *common, *source],
                pretrain_iterations,
                evaluate=False,
                config=config,
            )
            log(f"[{number}/{len(ARMS)}] {arm.name}: pre-training {pretrain_iterations} iterations")
            train(stage, pretrain_dir, progress=False)
            init = [f"model.init_from={pretrain_dir}"]
        finetune = size.iterations - (pretrain_iterations if init else 0)
        run_dir = out / arm.name
        stage = stage_config(
            [f"run_dir={run_dir}", *common, *_data_overrides(data_root, TARGET_JSON), *init],
            finetune,
            evaluate=True,
            config=config,
        )
        what = "fine-tuning" if init else "training"
        log(f"[{number}/{len(ARMS)}] {arm.name}: {what} {finetune} iterations")
        _, metrics = train(stage, run_dir, progress=False)
        result = ArmResult(
            arm.name,
            arm.label,
            pretrain_iterations if init else 0,
            finetune,
            {key: metrics[key] for key in METRICS},
            time.perf_counter() - start,
        )
        log(f"[{number}/{len(ARMS)}] {arm.name}: AP50 tiny {_percent(result.metrics['AP50_tiny'])}")
        results.append(result)
    return results


def _percent(value: float) -> str:
    return "n/a" if value < 0 else f"{100 * value:.2f}"


def markdown_table(results: Sequence[ArmResult], caption: str) -> str:
    lines = [
        caption,
        "",
        "| arm | pre-training iterations | fine-tuning iterations | AP50 tiny | tiny1 | tiny2 | tiny3 "
        "| small |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for result in results:
        cells = [
            result.label,
            str(result.pretrain_iterations),
            str(result.finetune_iterations),
            *(_percent(result.metrics[key]) for key in METRICS),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def matched_sizes(data_root: Path, draws: int = 4, seed: int = 0) -> dict[str, np.ndarray]:
    """The object sizes sqrt(w * h) of the target's training set, of the source's persons, and of the
    source's persons after SM (`draws` scales drawn per image, as over `draws` epochs) and after MSM."""
    target = load_annotations(data_root / TARGET_JSON)
    source = load_annotations(data_root / SOURCE_JSON, categories=["person"])
    defaults = load_config(DEFAULT_CONFIG, _data_overrides(data_root, SOURCE_JSON))["data"]
    sizes = {"target": object_sizes(target), "source": object_sizes(source)}
    for kind in ("sm", "msm"):
        chosen = {"scale_match": kind, "scale_match_target": str(data_root / TARGET_JSON)}
        matcher = scale_matcher(DataConfig.from_config({**defaults, **chosen}), source)
        scaled = []
        for index, info in enumerate(source.images):
            anns = source.annotations_of(info.id)
            boxes = anns.boxes[~(anns.iscrowd | anns.ignore)]
            if not len(boxes):
                continue
            image_sizes = np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
            for epoch in range(draws if kind == "sm" else 1):
                scale = matcher.scale_for(boxes, scale_match_generator(seed, epoch, index))
                scaled.append(image_sizes * scale)
        sizes[f"source after {kind.upper()}"] = np.concatenate(scaled)
    return sizes


def save_histograms(sizes: dict[str, np.ndarray], path: Path, title: str) -> None:
    """The size distributions as step histograms on a log axis, each normalised to its count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    low = max(1.0, min(float(s.min()) for s in sizes.values()))
    high = max(float(s.max()) for s in sizes.values())
    bins = np.geomspace(low / 1.1, high * 1.1, 48)
    figure, axes = plt.subplots(figsize=(7, 4.2), layout="constrained")
    colours = ("black", "tab:orange", "tab:blue", "tab:green")
    for (name, values), colour in zip(sizes.items(), colours, strict=False):
        weights = np.full(len(values), 1 / len(values))
        axes.hist(values, bins=bins, weights=weights, histtype="step", linewidth=1.6, color=colour,
                  label=f"{name} ({len(values)} boxes)")  # fmt: skip
    axes.set_xscale("log")
    axes.set_xlabel("object size sqrt(w * h), px")
    axes.set_ylabel("share of the boxes")
    axes.set_title(title, fontsize=9)
    axes.legend(fontsize=8)
    axes.grid(alpha=0.3)
    figure.savefig(path, dpi=120)
    plt.close(figure)


def write_outputs(
    results: Sequence[ArmResult], sizes: dict[str, np.ndarray], out: Path, caption: str
) -> None:
    """`scale_match.md`, `scale_match.json` and `scale_match_sizes.png` in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "scale_match.md").write_text(markdown_table(results, caption))
    summary = {
        "caption": caption,
        "reference": REFERENCE,
        "arms": [asdict(result) for result in results],
        "sizes": {name: {"boxes": len(v), "median": float(np.median(v))} for name, v in sizes.items()},
    }
    (out / "scale_match.json").write_text(json.dumps(summary, indent=2))
    save_histograms(sizes, out / "scale_match_sizes.png", "object sizes: target, source, source matched")


def study(
    out: Path, data_root: Path, size: StudySize = FULL, *, seed: int = 0, log: Callable[[str], None] = print
) -> list[ArmResult]:
    """`run_study`, then the outputs (`write_outputs`) with a caption saying what ran."""
    start = time.perf_counter()
    results = run_study(out, data_root, size, seed=seed, log=log)
    minutes = (time.perf_counter() - start) / 60
    target = load_annotations(data_root / TARGET_JSON)
    caption = (
        f"Scale Match study: {DEFAULT_CONFIG.stem} (Adap FCOS, ResNet-18 from scratch) on the synthetic sets "
        f"in {data_root} (target: {len(target)} training images, source: "
        f"{len(load_annotations(data_root / SOURCE_JSON))} images), {size.iterations} iterations of batch "
        f"{size.batch_size} per arm, seed {seed}; {minutes:.1f} min in all. For comparison, {REFERENCE}."
    )
    write_outputs(results, matched_sizes(data_root, seed=seed), out, caption)
    return results
