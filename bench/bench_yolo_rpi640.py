"""Side by side with what users train today: a YOLO nano model trained on rpi640 `train` for the same
wall-clock budget as the detectors of `bench.real_images`, measured on `valid` two ways.

    python -m bench.bench_yolo_rpi640 [--data DIR] [--out DIR] [--budget SECONDS] [--model yolov8n.yaml]
                                      [--imgsz 640] [--batch 16] [--tile 320 320] [--overlap 64 64]
                                      [--scale 2 | --scale 3 1.6875] [--train-images N] [--valid-images N]
                                      [--weights runs/yolo_rpi640/train/weights/last.pt]

The model is built from its yaml (random weights, nothing downloaded) and trained by ultralytics with its
`time` budget (its schedule fitted to it), on box labels written from the same COCO json that the
tinyfast detectors train on (`python -m tinyfast.data.convert yolo`; ultralytics would read the polygon
rows as boxes too, but its checks drop or clip a few rows differently). Then on `valid`:
- whole images at `--imgsz`: `YOLO.predict` (confidence 0.001, NMS 0.7, 1000 detections), what users run;
- tiled through tinyfast's merge: `UltralyticsDetector` in `tinyfast.tiling.detect_images`, tiles of
  `--tile` with `--overlap` resized by `--scale` (SAHI's slicing with the model's input size), threshold
  and NMS per tile, class-aware NMS 0.5 across tiles.
Both scored by `tinyfast.evaluate` against the same ground truth (1000 detections per image), in the table
of `bench.real_images` (`yolo_rpi640.md`, `yolo_rpi640.json` in `--out`). `--weights` scores a YOLO
trained before (an earlier run's `train/weights/last.pt`, e.g. with other tiles; give another `--out`)
without training it again: its rows have no training speed. Inference runs in float32: the
YOLO head decodes its boxes inside the network, and in bf16 a 640-pixel coordinate is off by up to 2 pixels.
ultralytics is a benchmark-only dependency (`pip install ultralytics`); the test below skips without it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path

import pytest
import torch

from bench.real_images import (
    DEFAULT_DATA,
    MAX_DETECTIONS,
    convert_labels,
    detection_row,
    score,
    timed_detections,
)
from bench.report import write_detection_report
from tinyfast.data.annotations import read_json
from tinyfast.data.transforms import read_image
from tinyfast.engine.evaluation import load_test_set
from tinyfast.tiling import UltralyticsDetector, detect_images, merge_policy

CONFIDENCE = 0.001  # ultralytics' own validation threshold: every candidate that can count for AP
YOLO_NMS_IOU = 0.7  # ultralytics' default NMS IoU


@contextlib.contextmanager
def offline_ultralytics():
    """ultralytics imported offline (no checks of the network, no installs, no font download for the dataset
    check); the variables its import sets in `os.environ` (OMP_NUM_THREADS=1) are put back afterwards."""
    environment = dict(os.environ)
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")
    import ultralytics
    import ultralytics.data.utils

    check_font = ultralytics.data.utils.check_font
    ultralytics.data.utils.check_font = lambda *args, **kwargs: None  # it fetches Arial.ttf for plots
    try:
        yield ultralytics
    finally:
        ultralytics.data.utils.check_font = check_font
        os.environ.clear()
        os.environ.update(environment)


def write_yolo_split(coco_path: Path, images: Path, out: Path, count: int = 0) -> Path:
    """An ultralytics split in `out`: `images/` (links to `images`' files) and `labels/` with one
    `0 cx cy w h` row per box of the COCO json at `coco_path` (normalised by each image's size); with
    `count` > 0 only the first that many images by file name. Returns `out / "images"`."""
    coco = read_json(coco_path)
    infos = sorted(coco["images"], key=lambda info: info["file_name"])
    infos = infos[:count] if count else infos
    boxes = {info["id"]: [] for info in infos}
    for annotation in coco["annotations"]:
        if annotation["image_id"] in boxes:
            boxes[annotation["image_id"]].append(annotation["bbox"])
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    for info in infos:
        name = Path(info["file_name"])
        link = out / "images" / name.name
        if not link.exists():
            link.symlink_to((images / name).resolve())
        width, height = info["width"], info["height"]
        rows = [
            f"0 {(x + w / 2) / width:.6f} {(y + h / 2) / height:.6f} {w / width:.6f} {h / height:.6f}"
            for x, y, w, h in boxes[info["id"]]
        ]
        (out / "labels" / f"{name.stem}.txt").write_text("".join(f"{row}\n" for row in rows))
    return out / "images"


class TrainingSpeed:
    """ultralytics callbacks counting the images of the batches trained on and the time from the first
    epoch's start to the last epoch's end (before its validation). A batch is counted at its start: the
    one where the time budget runs out ends the epoch before its end-of-batch callbacks."""

    def __init__(self):
        self.images, self.start, self.end = 0, None, None

    def epoch_start(self, trainer) -> None:
        if self.start is None:
            self.start = time.perf_counter()

    def batch_start(self, trainer) -> None:
        self.images += trainer.batch_size

    def epoch_end(self, trainer) -> None:
        self.end = time.perf_counter()

    @property
    def images_per_s(self) -> float | None:
        if not self.images or self.end is None or self.end <= self.start:
            return None
        return self.images / (self.end - self.start)


def train_yolo(ultralytics, args, dataset: Path, device: str, out: Path):
    """The YOLO of `args.model` trained on `dataset` (an ultralytics yaml) for `args.budget` seconds;
    returns it (its last weights) and the training speed."""
    torch.manual_seed(0)
    model = ultralytics.YOLO(args.model)
    speed = TrainingSpeed()
    model.add_callback("on_train_epoch_start", speed.epoch_start)
    model.add_callback("on_train_batch_start", speed.batch_start)
    model.add_callback("on_train_epoch_end", speed.epoch_end)
    model.train(
        data=str(dataset),
        time=args.budget / 3600,  # hours; ultralytics fits its epochs and schedule to it
        epochs=1000,  # replaced by the time budget's estimate after the first epoch
        imgsz=args.imgsz,
        batch=args.batch,
        workers=args.workers,
        device=device,
        amp="bf16" if device != "cpu" else False,  # the tinyfast runs' bf16; "bf16" skips the AMP check
        pretrained=False,
        plots=False,
        val=False,  # validation only at the end, on the few images of the yaml's val
        project=str(out.resolve()),  # absolute: ultralytics puts a relative one under its runs_dir
        name="train",
        exist_ok=True,
        seed=0,
        deterministic=False,
        verbose=False,
    )
    return model, speed


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.bench_yolo_rpi640",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the rpi640 folder (train/, valid/)")
    parser.add_argument(
        "--out", type=Path, default=Path("runs/yolo_rpi640"), help="runs, jsons and the table"
    )
    parser.add_argument("--budget", type=float, default=80.0, help="training seconds")
    parser.add_argument(
        "--model", default="yolov8n.yaml", help="an ultralytics model yaml (yolo11n.yaml, ...)"
    )
    parser.add_argument("--imgsz", type=int, default=640, help="training and whole-image input size")
    parser.add_argument("--batch", type=int, default=16, help="training batch")
    parser.add_argument("--workers", type=int, default=8, help="training DataLoader workers")
    parser.add_argument("--tile", type=int, nargs=2, default=[320, 320], metavar=("W", "H"))
    parser.add_argument("--overlap", type=int, nargs=2, default=[64, 64], metavar=("X", "Y"))
    parser.add_argument(
        "--scale", type=float, nargs="+", default=[2.0], metavar="X [Y]", help="tiles resized by this factor"
    )
    parser.add_argument("--tile-batch-size", type=int, default=16, help="tiles through the model at a time")
    parser.add_argument("--batch-predict", type=int, default=8, help="full images per predict call")
    parser.add_argument("--train-images", type=int, default=0, help="train on the first N images (0: all)")
    parser.add_argument("--valid-images", type=int, default=0, help="score the first N valid images (0: all)")
    parser.add_argument("--weights", type=Path, default=None, help="score these trained weights, no training")
    args = parser.parse_args(argv)
    if args.weights is not None and not args.weights.is_file():
        parser.error(f"--weights {args.weights}: no such file")
    if not args.budget > 0:
        parser.error(f"--budget must be a number of seconds > 0, got {args.budget:g}")
    positive = ("imgsz", "batch", "tile_batch_size", "batch_predict")
    for key in positive:
        if getattr(args, key) < 1:
            parser.error(f"--{key.replace('_', '-')} must be >= 1, got {getattr(args, key)}")
    for key in ("workers", "train_images", "valid_images"):
        if getattr(args, key) < 0:
            parser.error(f"--{key.replace('_', '-')} must be >= 0, got {getattr(args, key)}")
    if (
        min(args.tile) < 1
        or min(args.overlap) < 0
        or any(o >= t for o, t in zip(args.overlap, args.tile, strict=True))
    ):
        parser.error(f"--tile {args.tile} and --overlap {args.overlap}: tiles >= 1, 0 <= overlap < tile")
    if len(args.scale) > 2 or min(args.scale) <= 0:
        parser.error(f"--scale must be one factor or an (x, y) pair, each > 0, got {args.scale}")
    for split in ("train", "valid"):
        for folder in ("images", "labels"):
            if not (args.data / split / folder).is_dir():
                parser.error(f"--data {args.data}: {split}/{folder} is not a folder")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with offline_ultralytics() as ultralytics:
        return run(ultralytics, args)


def run(ultralytics, args: argparse.Namespace) -> int:
    device = "0" if torch.cuda.is_available() else "cpu"
    torch_device = torch.device("cuda", 0) if device == "0" else torch.device("cpu")
    train_json, valid_json = convert_labels(args.data, args.out / "annotations", args.valid_images)
    dataset_dir = args.out / "dataset"
    write_yolo_split(train_json, args.data / "train" / "images", dataset_dir / "train", args.train_images)
    # ultralytics' own validation at the end of training: two images keep it cheap (scored below instead)
    write_yolo_split(valid_json, args.data / "valid" / "images", dataset_dir / "val", 2)
    dataset = args.out / "rpi640.yaml"
    dataset.write_text(
        f"path: {dataset_dir.resolve()}\ntrain: train/images\nval: val/images\nnames:\n  0: person\n"
    )
    if args.weights is None:
        model, speed = train_yolo(ultralytics, args, dataset, device, args.out)
    else:
        model, speed = ultralytics.YOLO(str(args.weights)), TrainingSpeed()

    test_set = load_test_set(
        {"test_annotations": str(valid_json), "test_images": str(args.data / "valid" / "images"),
         "task": "all", "normalization": "torchvision"}
    )  # fmt: skip
    paths = [Path(test_set.data["test_images"]) / info["file_name"] for info in test_set.images]
    per_batch = args.batch_predict
    batches = [paths[start : start + per_batch] for start in range(0, len(paths), per_batch)]

    def predict(index: int, batch: list[Path]):
        results = model.predict(
            [str(path) for path in batch], imgsz=args.imgsz, conf=CONFIDENCE, iou=YOLO_NMS_IOU,
            max_det=MAX_DETECTIONS, device=device, verbose=False
        )  # fmt: skip
        return [
            {"boxes": r.boxes.xyxy.float().cpu(), "scores": r.boxes.conf.float().cpu(),
             "labels": r.boxes.cls.long().cpu()}
            for r in results
        ]  # fmt: skip

    detector = UltralyticsDetector(model, iou_threshold=YOLO_NMS_IOU)
    detector.network.to(torch_device).float()
    policy = merge_policy(
        "during",
        dense_head=False,
        nms_pre=MAX_DETECTIONS,
        score_threshold=CONFIDENCE,
        max_per_img=MAX_DETECTIONS,
    )

    def tiled(index: int, batch: list[Path]):
        images = [read_image(str(path)).to(torch_device) for path in batch]
        with torch.no_grad():
            found = detect_images(
                detector,
                images,
                policy,
                tile=tuple(args.tile),
                overlap=tuple(args.overlap),
                scales=(args.scale[0] if len(args.scale) == 1 else tuple(args.scale),),
                tile_batch_size=args.tile_batch_size,
            )
        return [{key: value.cpu() for key, value in d.items()} for d in found]

    name = Path(args.model).stem
    factors = "x".join(f"{factor:g}" for factor in args.scale)
    rows = []
    for way, detect in (
        (f"{name}, whole images at {args.imgsz}", predict),
        (f"{name}, tiled {args.tile[0]}x{args.tile[1]} x{factors} (tinyfast merge)", tiled),
    ):
        detections, seconds = timed_detections(detect, batches, torch_device)
        stem = "whole" if detect is predict else "tiled"
        metrics = score(test_set, detections, args.out / f"results_{stem}.json")
        rows.append(
            detection_row(way, metrics, len(paths), seconds, training_images_per_s=speed.images_per_s,
                          training_images=speed.images, model=args.model)
        )  # fmt: skip
        print(f"{way}: AP50 tiny {metrics['AP50_tiny']:.3f}", flush=True)
    trained = (
        f"{args.model} from scratch (no weights) trained by ultralytics {ultralytics.__version__} on `train` "
        f"at {args.imgsz} for {args.budget:g} s ({'bf16' if device != 'cpu' else 'fp32'})"
        if args.weights is None
        else f"the YOLO of {args.weights} (trained before)"
    )
    note = (
        f"rpi640 (640x640 stretched, no ignore flags): {trained}, measured in float32 on {len(paths)} "
        f"`valid` images, {MAX_DETECTIONS} detections per image."
    )
    markdown = write_detection_report(rows, args.out, "yolo_rpi640", note)
    print(f"\n{markdown}\n{args.out / 'yolo_rpi640.md'}, {args.out / 'yolo_rpi640.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())


SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "tinyperson-rpi640"


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="the rpi640 images (../shared/data) are not here")
def test_yolo_side_by_side_plumbing_at_a_tiny_size(tmp_path, monkeypatch):
    pytest.importorskip("ultralytics", reason="ultralytics is optional (pip install ultralytics)")
    monkeypatch.chdir(tmp_path)
    out = Path("yolo")  # relative, as on the command line: the weights land in it all the same
    argv = ["--data", str(SHARED_DATA), "--out", str(out), "--budget", "2", "--imgsz", "160", "--batch", "2",
            "--workers", "0", "--train-images", "4", "--valid-images", "2", "--tile", "320", "320",
            "--overlap", "32", "32", "--scale", "0.5", "--batch-predict", "2"]  # fmt: skip
    environment = dict(os.environ)
    assert main(argv) == 0
    assert dict(os.environ) == environment, "ultralytics' variables (OMP_NUM_THREADS) left in os.environ"
    saved = json.loads((out / "yolo_rpi640.json").read_text())
    assert [row["name"] for row in saved["rows"]] == [
        "yolov8n, whole images at 160",
        "yolov8n, tiled 320x320 x0.5 (tinyfast merge)",
    ]
    for row in saved["rows"]:
        assert row["images"] == 2 and row["inference_images_per_s"] > 0
        assert row["training_images"] > 0 and row["training_images_per_s"] > 0
        metrics = ("AP50_tiny", "AP50_tiny1", "AP50_small", "AP50_all", "AR50_tiny")
        assert all(0 <= row[key] <= 1 or row[key] == -1 for key in metrics)  # -1: no such ground truth
    assert (
        "| AP50 tiny | tiny1 | tiny2 | tiny3 | small | AP50 all | AR50 tiny |"
        in (out / "yolo_rpi640.md").read_text()
    )
    # The box labels YOLO trained on are the COCO json's boxes, normalised.
    coco = read_json(out / "annotations" / "train.json")
    first = min(coco["images"], key=lambda info: info["file_name"])
    boxes = [a["bbox"] for a in coco["annotations"] if a["image_id"] == first["id"]]
    assert len(list((out / "dataset" / "train" / "images").iterdir())) == 4
    rows = (
        (out / "dataset" / "train" / "labels" / f"{Path(first['file_name']).stem}.txt")
        .read_text()
        .split("\n")
    )
    assert len(rows) == len(boxes) + 1 and rows[-1] == ""
    x, y, w, h = boxes[0]
    expected = [
        (x + w / 2) / first["width"],
        (y + h / 2) / first["height"],
        w / first["width"],
        h / first["height"],
    ]
    assert rows[0].split()[0] == "0" and [float(v) for v in rows[0].split()[1:]] == pytest.approx(
        expected, abs=1e-6
    )
    # --weights scores the trained YOLO again (other tiles) without training it.
    again = tmp_path / "again"
    weights = out / "train" / "weights" / "last.pt"
    argv = [*argv[: argv.index("--out")], "--out", str(again), *argv[argv.index("--out") + 2 :]]
    assert main([*argv, "--weights", str(weights), "--scale", "1"]) == 0
    rescored = json.loads((again / "yolo_rpi640.json").read_text())
    assert rescored["rows"][1]["name"] == "yolov8n, tiled 320x320 x1 (tinyfast merge)"
    assert all(row["training_images"] == 0 for row in rescored["rows"])
    assert not (again / "train").exists()
