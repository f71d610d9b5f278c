"""Detect persons in your own images: `python -m tinyfast.predict MODEL INPUT... --out DIR`.

MODEL is a run folder (its config.toml and latest.pth) or a checkpoint file (it carries its config).
INPUT: image files, folders (--recursive for their subfolders) and glob patterns; JPEG and PNG (8- or
16-bit, grey or colour) of any size. Files that cannot be decoded are skipped, named and counted. Tiled
inference uses the model's [test] settings, each overridable by a flag. Writes into DIR: predictions.json
(a COCO dataset: images, annotations with scores, categories), results.json (the COCO results list, with
each image's file_name, for `python -m tinyfast.evaluate GT results.json`), visuals/ (each image with the
boxes scoring at least --show-threshold drawn and counted) and, with --save-txt, labels/ (YOLO rows).
A point localiser (p2pnet) writes points: each annotation and result carries `point` [x, y] and its score
(`python -m tinyfast.evaluate GT results.json --points --by-file-name`), visuals/ marks them, labels/ rows
are `class cx cy` (normalised).
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
import time
from pathlib import Path

import torch
from torchvision.io import write_jpeg
from tqdm import tqdm

from tinyfast.data.errors import DataError
from tinyfast.engine.predictor import as_rgb_uint8, count_found, draw_detections, load_detector
from tinyfast.utils import cli
from tinyfast.utils.precision import PRECISION_SETTINGS

CATEGORIES = [{"id": 1, "name": "person"}]


def collect_inputs(
    inputs: list[str], recursive: bool
) -> tuple[list[tuple[Path, str]], list[tuple[str, str]]]:
    """The files to read, each with the name it gets in the outputs (its path relative to the folder or
    glob it came from; a file given by itself: its name), and the inputs that name nothing."""
    files: list[tuple[Path, str]] = []
    missing: list[tuple[str, str]] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = path.rglob("*") if recursive else path.glob("*")
            files += [(f, f.relative_to(path).as_posix()) for f in sorted(found) if _is_candidate(f)]
        elif path.is_file():
            files.append((path, path.name))
        elif glob.has_magic(item):
            parts = Path(item).parts
            root = Path(*parts[: next(i for i, part in enumerate(parts) if glob.has_magic(part))] or ["."])
            matches = [Path(m) for m in sorted(glob.glob(item, recursive=recursive))]
            files += [(m, _relative_name(m, root)) for m in matches if _is_candidate(m)]
            if not matches:
                missing.append((item, "no file matches this pattern"))
        else:
            missing.append((item, "no such file or folder"))
    unique, seen = [], set()
    for path, name in files:
        key = path.resolve()
        if key in seen:
            continue
        seen.add(key)
        unique.append((path, name))
    taken: set[str] = set()
    named = []
    for path, name in unique:
        if name in taken:  # two inputs of the same name from different places: keep them apart
            name = path.as_posix()
        taken.add(name)
        named.append((path, name))
    return named, missing


def _is_candidate(path: Path) -> bool:
    return path.is_file() and not path.name.startswith(".")


def _relative_name(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.name


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = cli.ArgumentParser(prog="python -m tinyfast.predict", description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a run folder (config.toml + latest.pth) or a checkpoint file")
    parser.add_argument("inputs", nargs="*", metavar="INPUT", help="image files, folders, glob patterns")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--recursive", action="store_true", help="also read the subfolders of folders")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: the GPU if any)")
    parser.add_argument(
        "--batch",
        type=cli.positive_int,
        default=None,
        help="images per batch (default test.images_per_batch)",
    )
    parser.add_argument(
        "--show-threshold", type=float, default=0.3, help="score of the boxes drawn and counted"
    )
    parser.add_argument(
        "--save-txt", action="store_true", help="YOLO labels per image (boxes drawn) in labels/"
    )
    parser.add_argument("--no-visuals", action="store_true", help="do not write visuals/")
    parser.add_argument("--no-progress", action="store_true")
    test = parser.add_argument_group("tiled inference (default: the model's [test] settings)")
    test.add_argument("--policy", choices=("during", "after"), help="merge policy")
    test.add_argument("--tile", type=int, nargs=2, metavar=("W", "H"), help="tile size")
    test.add_argument("--overlap", type=int, nargs=2, metavar=("X", "Y"), help="tile overlap")
    test.add_argument("--scales", type=float, nargs="+", help="test-time scales")
    test.add_argument("--flips", action=argparse.BooleanOptionalAction, default=None, help="also mirrored")
    test.add_argument("--truncated", choices=("keep", "drop", "downweight"), help="border handling")
    test.add_argument("--score-threshold", type=float, help="model.score_threshold")
    test.add_argument("--max-per-img", type=int, help="detections kept (0: the policy's cap)")
    test.add_argument("--tile-batch", type=int, help="tiles through the model at a time")
    test.add_argument(
        "--precision", choices=PRECISION_SETTINGS, help="the network's precision (auto: bf16 where native)"
    )
    test.add_argument(
        "--compile", action=argparse.BooleanOptionalAction, default=None, help="torch.compile the network"
    )
    return parser.parse_intermixed_args(argv)


def overrides_of(args: argparse.Namespace) -> list[str]:
    """The config overrides the tiled-inference flags stand for."""
    values = {
        "test.policy": args.policy and json.dumps(args.policy),
        "test.tile": args.tile and json.dumps(args.tile),
        "test.overlap": args.overlap and json.dumps(args.overlap),
        "test.scales": args.scales and json.dumps(args.scales),
        "test.flips": None if args.flips is None else json.dumps(args.flips),
        "test.truncated": args.truncated and json.dumps(args.truncated),
        "model.score_threshold": None if args.score_threshold is None else repr(args.score_threshold),
        "test.max_per_img": None if args.max_per_img is None else str(args.max_per_img),
        "test.tile_batch_size": None if args.tile_batch is None else str(args.tile_batch),
        "test.precision": args.precision and json.dumps(args.precision),
        "test.compile": None if args.compile is None else json.dumps(args.compile),
    }
    return [f"{key}={value}" for key, value in values.items() if value is not None]


class Outputs:
    """What predict writes into the output folder, image by image, then the two jsons at the end."""

    def __init__(self, out_dir: Path, visuals: bool, save_txt: bool, show_threshold: float):
        self.out_dir, self.show_threshold = out_dir, show_threshold
        self.visuals = out_dir / "visuals" if visuals else None
        self.labels = out_dir / "labels" if save_txt else None
        self.images, self.annotations, self.results, self.shown = [], [], [], {}

    def add(self, name: str, image: torch.Tensor, found: dict[str, torch.Tensor]) -> None:
        height, width = image.shape[-2:]
        image_id = len(self.images) + 1
        self.images.append({"id": image_id, "file_name": name, "width": int(width), "height": int(height)})
        scores, labels = found["scores"].tolist(), found["labels"].tolist()
        for where, score, label in zip(_locations(found), scores, labels, strict=True):
            category = CATEGORIES[label]["id"]
            result = {"image_id": image_id, "category_id": category, **where, "score": score}
            annotation = {"id": len(self.annotations) + 1, **result}
            if "bbox" in where:
                annotation.update(area=where["bbox"][2] * where["bbox"][3], iscrowd=0)
            self.annotations.append(annotation)
            self.results.append({"file_name": name, **result})
        self.shown[name] = count_found(found, self.show_threshold)
        if self.visuals is not None:
            path = (self.visuals / name).with_suffix(".jpg")
            path.parent.mkdir(parents=True, exist_ok=True)
            write_jpeg(draw_detections(image.cpu(), found, self.show_threshold), str(path), quality=90)
        if self.labels is not None:
            path = (self.labels / name).with_suffix(".txt")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(_yolo_rows(found, self.show_threshold, width, height)))

    def finish(self, summary: dict) -> None:
        dataset = {"images": self.images, "annotations": self.annotations, "categories": CATEGORIES}
        (self.out_dir / "predictions.json").write_text(json.dumps(dataset))
        (self.out_dir / "results.json").write_text(json.dumps(self.results))
        (self.out_dir / "summary.json").write_text(
            json.dumps({**summary, "shown_per_image": self.shown}, indent=1)
        )


def _locations(found: dict[str, torch.Tensor]) -> list[dict]:
    """Each detection's place as COCO writes it: `bbox` [x, y, w, h], or a point localiser's `point`."""
    if "points" in found:
        return [{"point": point} for point in found["points"].tolist()]
    return [{"bbox": [x1, y1, x2 - x1, y2 - y1]} for x1, y1, x2, y2 in found["boxes"].tolist()]


def _yolo_rows(found: dict[str, torch.Tensor], threshold: float, width: int, height: int) -> list[str]:
    rows = []
    scores, labels = found["scores"].tolist(), found["labels"].tolist()
    for where, score, label in zip(_locations(found), scores, labels, strict=True):
        if score < threshold:
            continue
        if "point" in where:
            x, y = where["point"]
            rows.append(f"{label} {x / width:.6f} {y / height:.6f}\n")
        else:
            x, y, w, h = where["bbox"]
            cx, cy = (x + w / 2) / width, (y + h / 2) / height
            rows.append(f"{label} {cx:.6f} {cy:.6f} {w / width:.6f} {h / height:.6f}\n")
    return rows


@cli.command
def main(argv: list[str]) -> int:
    args = parse_args(argv)
    files, skipped = collect_inputs(args.inputs, args.recursive)
    if not files:
        named = f" ({skipped[0][0]}: {skipped[0][1]})" if skipped else ""
        raise ValueError(f"no input files to read{named}; give image files, folders or glob patterns")
    detector = load_detector(args.model, args.device, overrides_of(args))
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    outputs = Outputs(out_dir, not args.no_visuals, args.save_txt, args.show_threshold)
    batch_size = args.batch or detector.images_per_batch
    start = time.perf_counter()
    bar = tqdm(total=len(files), unit="img", desc="predict", disable=args.no_progress, dynamic_ncols=True)
    pending: list[tuple[str, torch.Tensor]] = []
    for index, (path, name) in enumerate(files):
        try:
            pending.append((name, as_rgb_uint8(path)))
        except DataError as error:
            skipped.append((str(path), str(error).removeprefix(f"{path}: ")))
            bar.update(1)
        if len(pending) == batch_size or (index == len(files) - 1 and pending):
            found = detector.predict_loaded([image.to(detector.device) for _, image in pending])
            for (image_name, image), detections in zip(pending, found, strict=True):
                outputs.add(image_name, image, detections)
            bar.update(len(pending))
            pending = []
    bar.close()
    seconds = time.perf_counter() - start
    persons = sum(outputs.shown.values())
    summary = {
        "images_read": len(outputs.images),
        "skipped": [{"input": item, "reason": reason} for item, reason in skipped],
        "persons_found": persons,
        "show_threshold": args.show_threshold,
        "detections": len(outputs.annotations),
        "seconds": round(seconds, 3),
    }
    outputs.finish(summary)
    for item, reason in skipped:
        print(f"skipped {item}: {reason}", file=sys.stderr)
    print(
        f"read {len(outputs.images)} image(s), skipped {len(skipped)}; found {persons} person(s) scoring "
        f">= {args.show_threshold:g} ({len(outputs.annotations)} detections kept) in {seconds:.1f} s "
        f"({len(outputs.images) / seconds:.2f} images/s); outputs in {out_dir}"
    )
    if not outputs.images:
        print(f"error: none of the {len(files)} input file(s) is a readable image", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
