"""Real images: each detector trained on rpi640 `train` for one wall-clock budget, measured on `valid`.

    python -m bench.real_images [--data DIR] [--out DIR] [--budget SECONDS] [--detectors fcos ...]
                                [--valid-images N] [key.sub=value ...]

Converts the YOLO labels of DIR's `train` and `valid` (`python -m tinyfast.data.convert yolo`), trains each
detector of `--detectors` from its config `configs/{name}_rpi640.toml` for `--budget` seconds of training
(`train.budget_s`; bf16 by default), runs tiled inference on the `valid` images (all, or the first
`--valid-images`) and scores them with `tinyfast.evaluate` (1000 detections per image). The overrides apply
to every detector's config. Prints and writes one table, `real_images.md` and `real_images.json` in
`--out`: AP50 tiny, tiny1-3, small, all, AR50 tiny, training images/s (training cuts per second, from the
run's `timing.json`) and inference images/s (decoding, tiled inference and the merge of the valid images,
after one untimed batch). `bench/real_images.sh` runs it on a GPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from bench.report import write_detection_report
from tinyfast.data import convert
from tinyfast.data.annotations import read_json
from tinyfast.engine.config import load_config
from tinyfast.engine.evaluation import TestSet, detect_batches, load_test_set, tiled_inference
from tinyfast.engine.trainer import train
from tinyfast.evaluation import evaluate
from tinyfast.modeling.inference import prepare_for_inference
from tinyfast.tiling import write_coco_results
from tinyfast.utils.precision import PRECISION_SETTINGS

DEFAULT_DATA = Path("../shared/data/tinyperson-rpi640")
DETECTORS = {"fcos": "Adap FCOS", "retinanet": "Adap RetinaNet", "faster_fpn": "Faster-FPN"}
MAX_DETECTIONS = 1000

Detections = list[dict[str, torch.Tensor]]


def convert_labels(data: Path, out: Path, valid_images: int = 0) -> tuple[Path, Path]:
    """The COCO json of DIR's `train` and `valid` labels (`tinyfast.data.convert yolo`), written into
    `out`; with `valid_images` > 0 the valid json keeps only the first that many images (by file name)."""
    paths = []
    for split in ("train", "valid"):
        path = out / f"{split}.json"
        if convert.main(["yolo", str(data / split), "--out", str(path)]) != 0:
            raise SystemExit(f"converting the labels of {data / split} failed")
        paths.append(path)
    if valid_images:
        paths[1] = write_subset(paths[1], valid_images, out / f"valid_first{valid_images}.json")
    return paths[0], paths[1]


def write_subset(path: Path, count: int, out: Path) -> Path:
    """The COCO json at `path` cut to its first `count` images by file name, written to `out`."""
    coco = read_json(path)
    images = sorted(coco["images"], key=lambda info: info["file_name"])[:count]
    kept = {info["id"] for info in images}
    subset = {
        **coco,
        "images": images,
        "annotations": [a for a in coco["annotations"] if a["image_id"] in kept],
    }
    out.write_text(json.dumps(subset, separators=(",", ":")))
    return out


def timed_detections(
    detect: Callable[[int, list], Detections], batches: Sequence[list], device: torch.device
) -> tuple[Detections, float]:
    """`detect(index, batch)` for every batch, after one untimed call on the first (kernel selection,
    allocator growth); returns all the detections, in order, and the seconds they took."""
    detect(0, batches[0])
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    detections = [d for index, batch in enumerate(batches) for d in detect(index, batch)]
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return detections, time.perf_counter() - start


def score(test_set: TestSet, detections: Detections, results_path: Path) -> dict[str, float]:
    """`detections` (one per test image, in order) as a COCO results json, and their metrics."""
    ids = [info["id"] for info in test_set.images]
    results = write_coco_results(detections, ids, results_path, (test_set.category,))
    return evaluate(test_set.ground_truth, results, max_dets=MAX_DETECTIONS)


def detection_row(name: str, metrics: dict, images: int, inference_s: float, **more) -> dict:
    """A row of the table: the metrics, `images` inferred in `inference_s` seconds, and `more`."""
    speed = {"inference_images_per_s": images / inference_s, "inference_s": inference_s, "images": images}
    return {"name": name, **metrics, **speed, **more}


def run_detector(name: str, overrides: Sequence[str], out: Path) -> dict:
    """Trains `configs/{name}_rpi640.toml` with `overrides` in `out / name`, then measures it on the
    config's test images; the table row."""
    run_dir = out / name
    config = load_config(f"{name}_rpi640", [f"run_dir={run_dir}", *overrides])
    model, _ = train(config, run_dir, progress=False)
    timing = json.loads((run_dir / "timing.json").read_text())
    device = next(model.parameters()).device
    detector = prepare_for_inference(model, config["test"]["precision"], device).detect_tiles
    test_set = load_test_set(config["data"])
    inference = tiled_inference(config)
    per_batch = config["test"]["images_per_batch"]
    batches = [
        test_set.images[start : start + per_batch] for start in range(0, len(test_set.images), per_batch)
    ]

    def detect(index: int, batch: list) -> Detections:
        read = [(index, [test_set.read(info) for info in batch])]
        return next(iter(detect_batches(detector, read, inference, device)))[1]

    detections, inference_s = timed_detections(detect, batches, device)
    metrics = score(test_set, detections, run_dir / "results_valid.json")
    (run_dir / "metrics_valid.json").write_text(json.dumps(metrics, indent=2))
    return detection_row(
        DETECTORS[name],
        metrics,
        len(test_set.images),
        inference_s,
        training_images_per_s=timing["images_per_s"],
        training_s=timing["training_s"],
        iterations=timing["iterations"],
        config=f"{name}_rpi640",
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.real_images",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value", help="for every detector's config")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the rpi640 folder (train/, valid/)")
    parser.add_argument(
        "--out", type=Path, default=Path("runs/real_images"), help="runs, jsons and the table"
    )
    parser.add_argument("--budget", type=float, default=80.0, help="training seconds per detector")
    parser.add_argument("--detectors", nargs="+", choices=tuple(DETECTORS), default=list(DETECTORS))
    parser.add_argument("--valid-images", type=int, default=0, help="score the first N valid images (0: all)")
    parser.add_argument(
        "--precision", choices=PRECISION_SETTINGS, default="bf16", help="train.amp and test.precision"
    )
    args = parser.parse_args(argv)
    if not args.budget > 0:
        parser.error(f"--budget must be a number of seconds > 0, got {args.budget:g}")
    if args.valid_images < 0:
        parser.error(f"--valid-images must be >= 0, got {args.valid_images}")
    for split in ("train", "valid"):
        for folder in ("images", "labels"):
            if not (args.data / split / folder).is_dir():
                parser.error(f"--data {args.data}: {split}/{folder} is not a folder")
    bad = [override for override in args.overrides if "=" not in override]
    if bad:
        parser.error(f"{bad[0]!r} is not of the form key.sub=value")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    train_json, valid_json = convert_labels(args.data, args.out / "annotations", args.valid_images)
    overrides = [
        f"data.root={args.data}",
        f"data.train_annotations={train_json.resolve()}",
        f"data.test_annotations={valid_json.resolve()}",
        f"train.budget_s={args.budget}",
        f"train.amp={args.precision}",
        f"test.precision={args.precision}",
        "test.eval_interval=-1",  # measured here, apart from training
        *args.overrides,
    ]
    rows = []
    for name in args.detectors:
        rows.append(run_detector(name, overrides, args.out))
        print(f"{DETECTORS[name]}: AP50 tiny {rows[-1]['AP50_tiny']:.3f}", flush=True)
    images = rows[0]["images"]
    note = (
        f"rpi640 (640x640 stretched, no ignore flags): trained from scratch on `train` for {args.budget:g} s "
        f"each ({args.precision}), tiled inference on {images} `valid` images, {MAX_DETECTIONS} detections "
        f"per image. Overrides: {' '.join(args.overrides) or 'none'}."
    )
    markdown = write_detection_report(rows, args.out, "real_images", note)
    print(f"\n{markdown}\n{args.out / 'real_images.md'}, {args.out / 'real_images.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
