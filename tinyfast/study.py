"""The studies: the merge-policy study of a trained model and the Scale Match study on synthetic sets.

    python -m tinyfast.study CONFIG [CHECKPOINT] [key.sub=value ...] [--quick | --images N] [--out DIR]
    python -m tinyfast.study scale-match [--out DIR] [--data DIR] [--quick | --iterations N] [--seed S]

The merge-policy study is the reference's test-time table (docs/protocol.md §6.2) on a config's test set.

Rows: run-time crop ("during", merge per full image) or not ("after", every tile an image, merged later) x
``nms_pre`` x ``max_per_img`` x the evaluator's ``max_det``, the reference's seven settings, then our
border-aware merge (``truncated`` "downweight" and "drop") on the reference's best setting. Each row reports
AP50 tiny, tiny1/2/3 and small (and AR50 tiny, which shows what a cap takes away) and the seconds per image
of tiled inference with that setting: tiling, the model and the merge, the images already decoded and in
memory. Rows that differ only in ``max_det`` share one inference (it is the evaluator's setting). For a
dense head the network runs once per batch of tiles and every setting decodes its outputs, so the study
costs about one inference of the test set; a row's seconds are the network's plus its own decoding and
merge. It runs on the GPU when there is one.

Writes ``policies.md`` (a markdown table), ``policies.json`` and ``policies.png`` (AP50 tiny against
seconds per image, one point per row) into ``--out`` (default: ``policies_<config name>`` in the
checkpoint's folder). The checkpoint defaults to the config's ``run_dir``/latest.pth. ``--quick`` runs on 2
test images, ``--images N`` on N spread over the test set.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torchvision.ops import box_iou

from tinyfast.data.build import DataConfig, prepare_data
from tinyfast.engine.checkpoint import load_checkpoint
from tinyfast.engine.config import load_config
from tinyfast.engine.evaluation import TestSet, load_test_set, normalising, tiled_inference
from tinyfast.engine.scale_match_study import FULL, QUICK, StudySize, study
from tinyfast.evaluation import evaluate
from tinyfast.modeling.build import load_model, policy_for_model
from tinyfast.modeling.inference import prepare_for_inference
from tinyfast.tiling import MergePolicy, TileSettings, coco_results, detect_images
from tinyfast.utils import cli
from tinyfast.utils.machine import describe, machine

QUICK_IMAGES = 2
METRICS = ("AP50_tiny", "AP50_tiny1", "AP50_tiny2", "AP50_tiny3", "AP50_small", "AR50_tiny")


@dataclass(frozen=True)
class Setting:
    """One row of the study. ``reference`` is the reference's AP50 tiny for it (Adap FCOS on TinyPerson
    test, docs/protocol.md §6.2), in %."""

    run_time_crop: bool
    nms_pre: int
    max_per_img: int
    max_det: int
    truncated: str = "keep"
    reference: float | None = None

    @property
    def inference(self) -> tuple:
        """What the detections depend on (``max_det`` only truncates them in the evaluator)."""
        return self.run_time_crop, self.nms_pre, self.max_per_img, self.truncated

    @property
    def policy(self) -> str:
        return "during" if self.run_time_crop else "after"


SETTINGS = (
    Setting(True, 1000, 100, 200, reference=42.93),
    Setting(True, 5000, 1000, 200, reference=46.11),
    Setting(True, 2000, 1000, 200, reference=46.11),
    Setting(True, 1000, 1000, 200, reference=46.11),
    Setting(True, 2000, 1000, 1000, reference=47.61),
    Setting(False, 1000, 100, 200, reference=45.68),
    Setting(False, 1000, 500, 1000, reference=46.86),
    Setting(True, 2000, 1000, 1000, truncated="downweight"),
    Setting(True, 2000, 1000, 1000, truncated="drop"),
)


@dataclass(frozen=True)
class Row:
    setting: Setting
    metrics: dict[str, float]
    seconds_per_image: float


def run_study(
    detector,
    images: Sequence[torch.Tensor],
    image_ids: Sequence[int],
    ground_truth: dict,
    model_config: dict,
    settings: Sequence[Setting] = SETTINGS,
    *,
    images_per_batch: int = 2,
    category_id: int = 1,
    tiling: dict | None = None,
    device: torch.device | str | None = None,
    normalization: str | None = None,
    log: Callable[[str], None] = lambda line: None,
) -> list[Row]:
    """Tiled inference on ``images`` (moved to ``device``, default where they are, one batch at a time;
    normalised as the detector expects, or raw 0-255 pixels whose tiles are normalised as
    ``normalization`` says, as ``tinyfast test`` does) under every distinct inference
    setting, timed, then the TinyPerson evaluation of every row against ``ground_truth`` (task applied,
    the detections written as ``category_id``). ``model_config`` holds the model's test settings
    (``nms_pre``, ``nms_iou``, ``score_threshold``); ``tiling`` the ``detect_images`` options (tile,
    overlap, scales, flips, tile_batch_size: a config's ``tiled_inference(config).options``; default its
    defaults, the reference's grid).

    ``detector`` is a ``TileDetector``, run once per setting; or a model whose network is apart from its
    decoding (``tile_outputs`` and ``decode_tiles``: the dense heads), whose network then runs once per
    batch of tiles and every setting decodes and merges the same outputs. A row's seconds per image are
    then the network's (shared) plus the row's own decoding and merge: what tiled inference with that
    setting alone costs."""
    tiling = tiling or {}
    shared = SharedNetwork(detector) if hasattr(detector, "tile_outputs") else None
    unshared = getattr(detector, "detect_tiles", detector)
    tile_detector = shared if shared is not None else unshared
    if normalization is not None:
        unshared, tile_detector = (
            normalising(unshared, normalization),
            normalising(tile_detector, normalization),
        )
    device = torch.device(device) if device is not None else images[0].device
    with torch.no_grad():  # warm-up, untimed
        warm = [images[0].to(device)]
        detect_images(unshared, warm, policy_for_model("during", model_config), **tiling)
    inferences: dict[tuple, _Inference] = {}
    for setting in settings:
        inferences.setdefault(setting.inference, _Inference(_setting_policy(setting, model_config)))

    def network_s() -> float:
        return shared.network_s if shared is not None else 0.0

    upload_s = 0.0
    for first in range(0, len(images), images_per_batch):
        start = time.perf_counter()
        batch = [image.to(device) for image in images[first : first + images_per_batch]]
        upload_s += time.perf_counter() - start
        if shared is not None:
            shared.new_images()
        for inference in inferences.values():
            if shared is not None:
                shared.rewind()
            network_before, start = network_s(), time.perf_counter()
            with torch.no_grad():
                found = detect_images(tile_detector, batch, inference.policy, **tiling)
            inference.detections += [{key: value.cpu() for key, value in d.items()} for d in found]
            inference.seconds += time.perf_counter() - start - (network_s() - network_before)
    rows = []
    for number, setting in enumerate(settings, 1):
        inference = inferences[setting.inference]
        results = coco_results(inference.detections, image_ids, (category_id,))
        seconds = (inference.seconds + network_s() + upload_s) / max(1, len(images))
        metrics = evaluate(ground_truth, results, max_dets=setting.max_det, miss_rate=False)
        rows.append(Row(setting, {key: metrics[key] for key in METRICS}, seconds))
        log(f"[{number}/{len(settings)}] {label(setting)}: AP50 tiny {_percent(metrics['AP50_tiny'])}, "
            f"{seconds:.2f} s/image")  # fmt: skip
    return rows


@dataclass
class _Inference:
    """One distinct inference setting of the study: its merge policy, the detections of the images so far
    and the seconds they took (without the shared network's)."""

    policy: MergePolicy
    detections: list[dict] = field(default_factory=list)
    seconds: float = 0.0


class SharedNetwork:
    """A model with ``tile_outputs`` and ``decode_tiles`` as the study's ``TileDetector``: within one batch of
    images (``new_images()`` starts the next), every setting (``rewind()`` starts the next) is given the
    same batches of tiles in the same order (the grid does not depend on the setting), so the network runs
    on the first setting's and the others decode its outputs under their own tile settings. ``network_s``
    adds up the network's seconds."""

    def __init__(self, model):
        self.model = model
        self.network_s = 0.0
        self._batches: list[tuple[torch.Tensor, tuple]] = []
        self._position = 0

    def new_images(self) -> None:
        self._batches, self._position = [], 0

    def rewind(self) -> None:
        self._position = 0

    def __call__(self, tiles: torch.Tensor, settings: TileSettings) -> list[dict[str, torch.Tensor]]:
        if self._position < len(self._batches):
            seen, outputs = self._batches[self._position]
            if not torch.equal(seen, tiles):
                raise RuntimeError(
                    "SharedNetwork: the tiles differ between two settings of one batch of images"
                )
        else:
            start = time.perf_counter()
            outputs = self.model.tile_outputs(tiles)
            if getattr(self.model, "cuda_graphs", False):  # the next graph replay would overwrite them
                outputs = _cloned(outputs)
            _synchronize(tiles.device)
            self.network_s += time.perf_counter() - start
            self._batches.append((tiles, outputs))
        self._position += 1
        return self.model.decode_tiles(outputs, tiles, settings)


def _cloned(value):
    if isinstance(value, torch.Tensor):
        return value.clone()
    return type(value)(_cloned(item) for item in value)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _setting_policy(setting: Setting, model_config: dict) -> MergePolicy:
    return policy_for_model(
        setting.policy,
        model_config,
        nms_pre=setting.nms_pre,
        max_per_img=setting.max_per_img,
        truncated=setting.truncated,
    )


def label(setting: Setting) -> str:
    crop = "Y" if setting.run_time_crop else "N"
    border = "" if setting.truncated == "keep" else f" {setting.truncated}"
    return f"{crop} {setting.nms_pre}/{setting.max_per_img}/{setting.max_det}{border}"


def _percent(value: float) -> str:
    return "n/a" if value < 0 else f"{100 * value:.2f}"


def markdown_table(rows: Sequence[Row], caption: str) -> str:
    """The study as the reference's table (AP in %), with the reference's AP50 tiny in the last column."""
    lines = [
        caption,
        "",
        "| run-time crop | nms_pre | max_per_img | max_det | border | AP50 tiny | tiny1 | tiny2 | tiny3 | "
        "small | AR50 tiny | s/image | reference AP50 tiny |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        setting = row.setting
        per_crop = "" if setting.run_time_crop else "/crop"
        cells = [
            "Y" if setting.run_time_crop else "N",
            f"{setting.nms_pre}{per_crop}",
            f"{setting.max_per_img}{per_crop}",
            str(setting.max_det),
            setting.truncated,
            *(_percent(row.metrics[key]) for key in METRICS),
            f"{row.seconds_per_image:.2f}",
            "" if setting.reference is None else f"{setting.reference:.2f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def save_plot(rows: Sequence[Row], path: Path, title: str) -> None:
    """AP50 tiny against seconds per image, one labelled point per row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5), layout="constrained")
    points = [(row.seconds_per_image, 100 * max(row.metrics["AP50_tiny"], 0.0)) for row in rows]
    labels = [label(row.setting) for row in rows]
    for (seconds, ap), row, text, (dx, dy, align) in zip(
        points, rows, labels, label_places(points, labels), strict=True
    ):
        marker = "o" if row.setting.truncated == "keep" else "^"
        colour = "tab:blue" if row.setting.run_time_crop else "tab:orange"
        axes.scatter(seconds, ap, marker=marker, color=colour)
        axes.annotate(text, (seconds, ap), fontsize=7, xytext=(dx, dy), textcoords="offset points", ha=align)
    axes.set_xlabel("seconds per image (tiled inference and merge)")
    axes.set_ylabel("AP50 tiny (%)")
    axes.set_title(title, fontsize=9)
    axes.grid(alpha=0.3)
    figure.savefig(path, dpi=120)
    plt.close(figure)


def label_places(points: Sequence[tuple[float, float]], labels: Sequence[str]) -> list[tuple[int, int, str]]:
    """A label offset (points) and alignment per point, the first of a few candidates around it whose box
    (estimated from the label's length) neither overlaps a label placed before nor leaves the axes (the last
    candidate when none fits): rows of equal AP or time would otherwise print their labels on top of each
    other."""
    xs, ys = [x for x, _ in points], [y for _, y in points]
    x0, y0 = min(xs), min(ys)
    width, height = (max(xs) - x0) or 1.0, (max(ys) - y0) or 1.0
    axes_points, char, line = (430.0, 280.0), 4.0, 9.0  # axes size, 7-pt character and line, in points
    candidates = [(4, 2, "left"), (4, -9, "left"), (-4, 2, "right"), (-4, -9, "right"), (4, 11, "left"),
                  (4, -18, "left"), (-4, 11, "right"), (-4, -18, "right")]  # fmt: skip
    placed, places = [], []
    for (x, y), text in zip(points, labels, strict=True):
        px = (0.05 + 0.9 * (x - x0) / width) * axes_points[0]  # matplotlib's default 5% margins
        py = (0.05 + 0.9 * (y - y0) / height) * axes_points[1]
        span = char * len(text)
        for dx, dy, align in candidates:
            left = px + dx if align == "left" else px + dx - span
            box = (left, py + dy, left + span, py + dy + line)
            inside = box[0] >= 0 and box[2] <= axes_points[0]
            if inside and not (placed and box_iou(torch.tensor([box]), torch.tensor(placed)).gt(0).any()):
                break
        placed.append(box)
        places.append((dx, dy, align))
    return places


def spread(count: int, total: int) -> list[int]:
    """``count`` indices spread evenly over ``range(total)`` (all of them when count >= total)."""
    if count >= total:
        return list(range(total))
    return [round(k * (total - 1) / max(1, count - 1)) for k in range(count)]


def study_test_set(config: dict, num_images: int | None) -> tuple[list[torch.Tensor], TestSet]:
    """The config's test images (decoded, uint8) and their test set (task applied), all of them or
    ``num_images`` spread over the set."""
    test_set = load_test_set(config["data"])
    if num_images:
        test_set = test_set.subset(spread(num_images, len(test_set.images)))
    return [test_set.read(info) for info in test_set.images], test_set


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = cli.ArgumentParser(
        prog="python -m tinyfast.study",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("config", help="the TOML config of the model and the test set")
    parser.add_argument(
        "checkpoint", nargs="?", default=None, help="default: the config's run_dir/latest.pth"
    )
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value", help="config values to change")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help=f"{QUICK_IMAGES} test images only")
    size.add_argument(
        "--images", type=cli.positive_int, default=None, help="N test images spread over the set"
    )
    parser.add_argument("--out", default=None, help="output folder")
    args = parser.parse_intermixed_args(argv)
    if args.checkpoint is not None and "=" in args.checkpoint:  # only overrides were given
        args.overrides.insert(0, args.checkpoint)
        args.checkpoint = None
    return args


SCALE_MATCH = "scale-match"


def parse_scale_match_args(argv: list[str]) -> argparse.Namespace:
    parser = cli.ArgumentParser(
        prog=f"python -m tinyfast.study {SCALE_MATCH}",
        description=(
            "Fine-tuning on the tiny synthetic set from scratch, after plain, SM and MSM pre-training on the "
            "COCO-like source set, the same iterations per arm (docs/scale_match.md); about 12 minutes on 2 "
            "CPU cores. Writes scale_match.md, scale_match.json and scale_match_sizes.png into --out."
        ),
    )
    parser.add_argument("--out", default="runs/scale_match_study", help="run folders and results")
    parser.add_argument(
        "--data", default=None, help="the synthetic sets (written when missing); default: runs/synthetic, "
        "with --quick OUT/data"
    )  # fmt: skip
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="tiny sets and model, 4 iterations per arm")
    size.add_argument(
        "--iterations", type=cli.positive_int, default=None,
        help=f"training iterations per arm (default {FULL.iterations}); pre-training takes half",
    )  # fmt: skip
    parser.add_argument("--seed", type=cli.non_negative_int, default=0, help="train.seed of every stage")
    args = parser.parse_args(argv)
    if args.iterations is not None and args.iterations < 2:
        parser.error("--iterations must be at least 2 (half of them pre-training)")
    return args


def scale_match_main(argv: list[str]) -> int:
    args = parse_scale_match_args(argv)
    out = Path(args.out)
    size: StudySize = QUICK if args.quick else FULL
    if args.iterations is not None:
        size = dataclasses.replace(size, iterations=args.iterations)
    data = Path(args.data) if args.data else (out / "data" if args.quick else Path("runs/synthetic"))
    study(out, data, size, seed=args.seed, log=lambda line: print(line, file=sys.stderr))
    print((out / "scale_match.md").read_text())
    print(f"table, json and plot: {out}")
    return 0


@cli.command
def main(argv: list[str]) -> int:
    if argv and argv[0] == SCALE_MATCH:
        return scale_match_main(argv[1:])
    args = parse_args(argv)
    config = load_config(args.config, args.overrides)
    checkpoint = Path(args.checkpoint or Path(config["run_dir"]) / "latest.pth")
    model = load_model(config["model"], load_checkpoint(checkpoint), str(checkpoint))
    prepare_data(DataConfig.from_config(config["data"]))
    images, test_set = study_test_set(config, QUICK_IMAGES if args.quick else args.images)
    out = Path(args.out) if args.out else checkpoint.parent / f"policies_{Path(args.config).stem}"
    gt = test_set.ground_truth
    tiling = tiled_inference(config).options
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    rows = run_study(
        prepare_for_inference(model, config["test"]["precision"], device, config["test"]["compile"]),
        images,
        [info["id"] for info in test_set.images],
        gt,
        config["model"],
        images_per_batch=config["test"]["images_per_batch"],
        category_id=test_set.category,
        tiling=tiling,
        device=device,
        normalization=config["data"]["normalization"],
        log=lambda line: print(line, file=sys.stderr),
    )
    persons = sum(1 for a in gt["annotations"] if not (a.get("ignore") or a.get("uncertain")))
    caption = (
        f"{Path(args.config).name} on {config['data']['test_annotations']}: {len(images)} images, "
        f"{persons} persons; model {checkpoint}; tiles {'x'.join(map(str, tiling['tile']))} overlapping by "
        f"{'x'.join(map(str, tiling['overlap']))}, scales {list(tiling['scales'])}; "
        f"{time.strftime('%Y-%m-%d')}, {describe(machine())}."
    )
    out.mkdir(parents=True, exist_ok=True)
    table = markdown_table(rows, caption)
    (out / "policies.md").write_text(table)
    (out / "policies.json").write_text(
        json.dumps({"caption": caption, "rows": [asdict(row) for row in rows]}, indent=2)
    )
    save_plot(rows, out / "policies.png", f"{Path(args.config).name}, {len(images)} images")
    print(table)
    print(f"table, json and plot: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
