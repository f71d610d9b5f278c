"""Import YOLO-format labels into TinyPerson-style COCO json; export training cuts as a corner json.

    python -m tinyfast.data.convert yolo DIR --out ann.json [--names person] [--max-wide-aspect 6]
    python -m tinyfast.data.convert corners FULL.json --out CORNER.json [--erase] [--keep-dense]

DIR holds `images/` and `labels/` (one `NAME.txt` per image `NAME.*`, rows normalised to [0, 1]):
plain `cls cx cy w h` rows and polygon rows `cls x1 y1 x2 y2 ...` (the box is the min/max of the points).
Image sizes are read from the image files. Rows are never silently dropped; each rejected row is
counted by reason and the first examples are printed:
- `malformed`: not finite numbers (`nan` and `inf` included), or a field count that is neither 5 nor an
  odd number >= 7;
- `outside`: a coordinate beyond [0, 1] by more than OUTSIDE_TOLERANCE (smaller overshoots are clipped);
- `degenerate`: zero width or height, or a box more than `max_wide_aspect` times wider than high. No
  person, even lying down, is that shape: TinyPerson persons are at most ~3x wider than high, and a
  stretch of a 16:9 image to a square only narrows them;
- `duplicate`: the same box as an earlier row of the same image (the second would be an unmatchable GT).
A class index without a name is an error (naming the file and line), not a skip. Label files are UTF-8
(a byte-order mark is allowed); the json written is strict (no NaN or Infinity).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tinyfast.data.annotations import load_annotations
from tinyfast.data.corners import OVERLAP, SUB_SIZE, cut_annotation_set, to_corner_set
from tinyfast.data.errors import DataError
from tinyfast.data.transforms import image_size
from tinyfast.utils import cli

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
OUTSIDE_TOLERANCE = 0.01
MAX_WIDE_ASPECT = 6.0
REJECT_REASONS = ("malformed", "outside", "degenerate", "duplicate")


@dataclass
class ImportReport:
    images: int = 0
    rows: int = 0
    boxes: int = 0
    rows_by_format: Counter = field(default_factory=Counter)
    rejected: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    images_without_labels: int = 0
    labels_without_image: list[str] = field(default_factory=list)

    def reject(self, reason: str, where: str) -> None:
        self.rejected[reason] += 1
        self.examples.setdefault(reason, [])
        if len(self.examples[reason]) < 3:
            self.examples[reason].append(where)

    def summary(self) -> str:
        lines = [
            f"{self.images} images, {self.rows} label rows ({dict(self.rows_by_format)}), {self.boxes} boxes",
            f"rejected {sum(self.rejected.values())} rows: {dict(self.rejected)}",
        ]
        lines += [f"  {reason}: e.g. {'; '.join(ex)}" for reason, ex in self.examples.items()]
        if self.images_without_labels:
            lines.append(f"{self.images_without_labels} images without a label file (no persons)")
        if self.labels_without_image:
            lines.append(
                f"{len(self.labels_without_image)} label files without an image: "
                f"{self.labels_without_image[:3]}"
            )
        return "\n".join(lines)


def parse_row(fields: list[str]) -> tuple[int, float, float, float, float] | None:
    """`cls cx cy w h` or `cls x1 y1 ... xn yn` (n >= 3) -> (cls, x1, y1, x2, y2), normalised.

    None when the row is malformed."""
    try:
        cls_value, *numbers = (float(v) for v in fields)
    except ValueError:
        return None
    if not all(math.isfinite(v) for v in (cls_value, *numbers)):
        return None
    if cls_value != int(cls_value) or cls_value < 0:
        return None
    if len(numbers) == 4:
        cx, cy, w, h = numbers
        return int(cls_value), cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2
    if len(numbers) >= 6 and len(numbers) % 2 == 0:
        xs, ys = numbers[0::2], numbers[1::2]
        return int(cls_value), min(xs), min(ys), max(xs), max(ys)
    return None


def import_yolo(
    root: str | Path, names: list[str], max_wide_aspect: float = MAX_WIDE_ASPECT
) -> tuple[dict, ImportReport]:
    """The COCO dict (category ids 1..len(names), all TinyPerson flags False) and the import report."""
    if not (math.isfinite(max_wide_aspect) and max_wide_aspect > 0):
        raise ValueError(f"max_wide_aspect must be a finite number > 0, got {max_wide_aspect!r}")
    root = Path(root)
    image_dir, label_dir = root / "images", root / "labels"
    if not image_dir.is_dir():
        raise DataError(f"{root}: no images/ folder")
    image_files = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    report = ImportReport(images=len(image_files))
    stems = {p.stem for p in image_files}
    if label_dir.is_dir():
        report.labels_without_image = sorted(p.name for p in label_dir.glob("*.txt") if p.stem not in stems)
    images, annotations = [], []
    for image_id, image_path in enumerate(image_files):
        width, height = image_size(image_path)
        images.append({"file_name": image_path.name, "height": height, "width": width, "id": image_id})
        label_path = label_dir / f"{image_path.stem}.txt"
        if not label_path.is_file():
            report.images_without_labels += 1
            continue
        seen: set[tuple[float, ...]] = set()
        for line_no, line in enumerate(_read_labels(label_path).splitlines(), start=1):
            fields = line.split()
            if not fields:
                continue
            report.rows += 1
            report.rows_by_format["box" if len(fields) == 5 else "polygon"] += 1
            where = f"{label_path.name}:{line_no}"
            box = _row_box(fields, width, height, max_wide_aspect, report, where)
            if box is None:
                continue
            cls, x1, y1, x2, y2 = box
            if cls >= len(names):
                raise DataError(f"{where}: class {cls} has no name (names: {names})")
            if (cls, x1, y1, x2, y2) in seen:
                report.reject("duplicate", where)
                continue
            seen.add((cls, x1, y1, x2, y2))
            annotations.append(_annotation(len(annotations), image_id, cls + 1, x1, y1, x2, y2))
    report.boxes = len(annotations)
    categories = [{"id": i + 1, "name": name, "supercategory": "person"} for i, name in enumerate(names)]
    info = {"source": str(root), "format": "yolo", "rejected_rows": dict(report.rejected)}
    return {"info": info, "images": images, "annotations": annotations, "categories": categories}, report


def _row_box(
    fields: list[str], width: int, height: int, max_wide_aspect: float, report: ImportReport, where: str
) -> tuple[int, float, float, float, float] | None:
    parsed = parse_row(fields)
    if parsed is None:
        report.reject("malformed", where)
        return None
    cls, *coords = parsed
    if min(coords) < -OUTSIDE_TOLERANCE or max(coords) > 1 + OUTSIDE_TOLERANCE:
        report.reject("outside", where)
        return None
    x1, y1, x2, y2 = (min(max(v, 0.0), 1.0) for v in coords)
    x1, x2, y1, y2 = x1 * width, x2 * width, y1 * height, y2 * height
    if x2 - x1 <= 0 or y2 - y1 <= 0 or (x2 - x1) > max_wide_aspect * (y2 - y1):
        report.reject("degenerate", where)
        return None
    return cls, x1, y1, x2, y2


def _annotation(
    ann_id: int, image_id: int, category_id: int, x1: float, y1: float, x2: float, y2: float
) -> dict:
    w, h = x2 - x1, y2 - y1
    return {
        "segmentation": [[x1, y1, x1, y2, x2, y2, x2, y1]],
        "bbox": [x1, y1, w, h],
        "category_id": category_id,
        "area": w * h,
        "iscrowd": 0,
        "image_id": image_id,
        "id": ann_id,
        "ignore": False,
        "uncertain": False,
        "logo": False,
        "in_dense_image": False,
    }


def _read_labels(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")  # a byte-order mark is not part of the first row
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not a UTF-8 text file (byte {e.start}: {e.reason})") from None


def _writable_file(path: str) -> Path:
    out = Path(path)
    if out.is_dir():
        raise ValueError(f"--out {out} is a folder; give the json file to write")
    return out


@cli.command
def main(argv: list[str] | None = None) -> int:
    parser = cli.ArgumentParser(prog="python -m tinyfast.data.convert", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    yolo = sub.add_parser("yolo", help="a YOLO images/ + labels/ folder -> TinyPerson json")
    yolo.add_argument("dir", help="folder holding images/ and labels/")
    yolo.add_argument("--out", required=True, help="json file to write")
    yolo.add_argument("--names", nargs="+", default=["person"], help="class names, in class-index order")
    yolo.add_argument(
        "--max-wide-aspect",
        type=cli.positive_float,
        default=MAX_WIDE_ASPECT,
        help="reject boxes more than this many times wider than high",
    )
    corners = sub.add_parser("corners", help="full-image TinyPerson json -> corner json of the training cuts")
    corners.add_argument("ann_file", help="full-image TinyPerson json")
    corners.add_argument("--out", required=True, help="corner json to write")
    corners.add_argument(
        "--erase", action="store_true", help="drop ignore/uncertain/logo, keep them to paint"
    )
    corners.add_argument("--keep-dense", action="store_true", help="also cut dense images")
    corners.add_argument("--overlap", type=cli.non_negative_int, nargs=2, default=OVERLAP, metavar=("X", "Y"))
    args = parser.parse_args(argv)
    if args.command == "yolo":
        return _yolo_command(args)
    return _corners_command(args)


def _yolo_command(args: argparse.Namespace) -> int:
    out = _writable_file(args.out)
    coco, report = import_yolo(args.dir, args.names, args.max_wide_aspect)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(coco, separators=(",", ":"), allow_nan=False))
    print(report.summary())
    print(f"wrote {out}")
    return 0


def _corners_command(args: argparse.Namespace) -> int:
    too_large = [f"{o} >= {s}" for o, s in zip(args.overlap, SUB_SIZE, strict=True) if o >= s]
    if too_large:
        raise ValueError(
            f"--overlap {args.overlap[0]} {args.overlap[1]} must be smaller than the cut size "
            f"{SUB_SIZE[0]} {SUB_SIZE[1]} ({', '.join(too_large)})"
        )
    out = _writable_file(args.out)
    annotations = load_annotations(args.ann_file)
    subs = cut_annotation_set(
        annotations, erase=args.erase, skip_dense=not args.keep_dense, overlap=tuple(args.overlap)
    )
    to_corner_set(annotations, subs).save(out)
    boxes = sum(len(s.annotations) for s in subs)
    print(f"{len(annotations)} images -> {len(subs)} sub-images with {boxes} annotations; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
