"""TinyPerson COCO json: loading with validation, per-image annotation arrays, tasks, writing back.

Fields and their meaning follow the reference (docs/protocol.md §1).
"""

from __future__ import annotations

import copy
import json
import math
import warnings
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np

from tinyfast.data.errors import DataError
from tinyfast.data.transforms import axis_scales, resized_size

Corner = tuple[int, int, int, int]
Task = Literal["all", "sea", "earth"]
OnError = Literal["raise", "skip"]

TASKS: tuple[str, ...] = ("all", "sea", "earth")
FLAG_FIELDS: tuple[str, ...] = ("iscrowd", "ignore", "uncertain", "logo", "in_dense_image")
SEA_PERSON, EARTH_PERSON = "sea_person", "earth_person"
TINYPERSON_CATEGORIES: list[dict] = [
    {"id": 1, "name": SEA_PERSON, "supercategory": "person"},
    {"id": 2, "name": EARTH_PERSON, "supercategory": "person"},
]
# Boxes may overshoot the image by float rounding; anything further out is an error.
OUTSIDE_TOLERANCE_PX = 1.0


@dataclass(frozen=True)
class ImageInfo:
    """One `images` entry. `corner` (x1, y1, x2, y2) is set in corner jsons: the crop of `file_name`."""

    id: int
    file_name: str
    width: int
    height: int
    corner: Corner | None = None
    origin_id: int | None = None
    erase_regions: tuple[tuple[float, float, float, float], ...] = ()

    @property
    def source_id(self) -> int:
        """Id of the full image this entry shows (itself unless it is a corner entry)."""
        return self.id if self.origin_id is None else self.origin_id


@dataclass(frozen=True)
class ImageAnnotations:
    """All annotations of one image as parallel arrays; `boxes` are x1y1x2y2 in the entry's pixels."""

    ids: np.ndarray
    boxes: np.ndarray
    areas: np.ndarray
    category_ids: np.ndarray
    iscrowd: np.ndarray
    ignore: np.ndarray
    uncertain: np.ndarray
    logo: np.ndarray
    in_dense_image: np.ndarray
    # [n, 2] x, y in the entry's pixels: each annotation's `point` when read from a point-annotated json
    # (`tinyfast.data.points.PointAnnotationSet.attached`), else None.
    points: np.ndarray | None = None

    @staticmethod
    def empty() -> ImageAnnotations:
        flag = np.zeros(0, dtype=bool)
        return ImageAnnotations(
            ids=np.zeros(0, dtype=np.int64),
            boxes=np.zeros((0, 4), dtype=np.float64),
            areas=np.zeros(0, dtype=np.float64),
            category_ids=np.zeros(0, dtype=np.int64),
            iscrowd=flag,
            ignore=flag,
            uncertain=flag,
            logo=flag,
            in_dense_image=flag,
        )

    def __len__(self) -> int:
        return len(self.ids)

    def select(self, index: np.ndarray) -> ImageAnnotations:
        fields = {name: getattr(self, name) for name in self.__dataclass_fields__}
        return ImageAnnotations(**{name: None if v is None else v[index] for name, v in fields.items()})

    def with_boxes(self, boxes: np.ndarray, areas: np.ndarray) -> ImageAnnotations:
        return replace(self, boxes=boxes, areas=areas)

    def with_points(self, points: np.ndarray) -> ImageAnnotations:
        points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        if len(points) != len(self):
            raise ValueError(f"{len(points)} points for {len(self)} annotations")
        return replace(self, points=points)

    @property
    def is_dense(self) -> bool:
        return bool(self.in_dense_image.any())

    @property
    def not_a_person(self) -> np.ndarray:
        """Regions that are never positives: crowd/ambiguous (`ignore`), `uncertain`, watermark (`logo`)."""
        return self.iscrowd | self.ignore | self.uncertain | self.logo

    def erase_mask(self) -> np.ndarray:
        """Regions the reference's "erase" preprocessing paints over and removes."""
        return self.ignore | self.uncertain | self.logo


@dataclass(frozen=True)
class TaskTargets:
    boxes: np.ndarray
    labels: np.ndarray
    ignore_boxes: np.ndarray
    points: np.ndarray | None = None  # of the positives, aligned with `labels`, if the annotations have them


@dataclass
class AnnotationSet:
    """A loaded TinyPerson-style json: images (in file order), their annotations, the categories."""

    path: str
    images: list[ImageInfo]
    annotations: dict[int, ImageAnnotations]
    categories: list[dict]
    extra: dict

    def __len__(self) -> int:
        return len(self.images)

    def annotations_of(self, image_id: int) -> ImageAnnotations:
        return self.annotations.get(image_id, ImageAnnotations.empty())

    @property
    def num_annotations(self) -> int:
        return sum(len(a) for a in self.annotations.values())

    def classes(self, task: Task) -> tuple[str, ...]:
        return ("person",) if task == "all" else (SEA_PERSON if task == "sea" else EARTH_PERSON,)

    def task_category_ids(self, task: Task) -> set[int]:
        """Category ids that are positives in `task`; the other category becomes ignore."""
        return task_category_ids(self.categories, task, self.path)

    def positives(self, anns: ImageAnnotations, task: Task) -> np.ndarray:
        """Which annotations are targets (persons) of `task`; the others are ignore regions."""
        return np.isin(anns.category_ids, list(self.task_category_ids(task))) & ~anns.not_a_person

    def targets(self, anns: ImageAnnotations, task: Task) -> TaskTargets:
        positive = self.positives(anns, task)
        return TaskTargets(
            boxes=anns.boxes[positive],
            labels=np.zeros(int(positive.sum()), dtype=np.int64),
            ignore_boxes=anns.boxes[~positive],
            points=None if anns.points is None else anns.points[positive],
        )

    def resized(self, scale: float | tuple[float, float]) -> AnnotationSet:
        """The set as it would be with every image resized by `scale` (a number, or (x, y) factors): sizes
        rounded to whole pixels, boxes and regions scaled by the exact factors of each side. Full-image
        entries only: a corner entry's crop would move."""
        sx, sy = axis_scales(scale)
        if sx == sy == 1:
            return self
        if any(info.corner is not None for info in self.images):
            raise DataError(f"{self.path}: a corner json cannot be resized; resize the full images' json")
        images, annotations = [], {}
        for info in self.images:
            width, height = resized_size(info.width, info.height, (sx, sy))
            factors = np.array([width / info.width, height / info.height] * 2)
            regions = tuple(tuple(float(v) for v in np.array(r) * factors) for r in info.erase_regions)
            images.append(replace(info, width=width, height=height, erase_regions=regions))
            if info.id in self.annotations:
                anns = self.annotations[info.id]
                areas = anns.areas * factors[0] * factors[1]
                annotations[info.id] = anns.with_boxes(anns.boxes * factors, areas)
                if anns.points is not None:
                    annotations[info.id] = annotations[info.id].with_points(anns.points * factors[:2])
        return replace(self, images=images, annotations=annotations)

    def to_coco(self) -> dict:
        """The json dict: every field the loader reads, in the reference's layout."""
        images, annotations = [], []
        for info in self.images:
            entry = {"file_name": info.file_name, "height": info.height, "width": info.width, "id": info.id}
            if info.corner is not None:
                entry["corner"] = list(info.corner)
            if info.origin_id is not None:
                entry["origin_image_id"] = info.origin_id
            if info.erase_regions:
                entry["erase_regions"] = [list(r) for r in info.erase_regions]
            images.append(entry)
            annotations.extend(_annotation_dicts(info.id, self.annotations_of(info.id)))
        return {**self.extra, "images": images, "annotations": annotations, "categories": self.categories}

    def save(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(self.to_coco(), separators=(",", ":"), allow_nan=False))


def task_category_ids(categories: list[dict], task: Task, source: str = "the ground truth") -> set[int]:
    """The ids of the categories that are positives in `task`: every category for "all", the one named
    `sea_person` or `earth_person` for "sea" or "earth" (training, testing and evaluation all map tasks to
    categories through this function). `source` names the file in the error of a missing category."""
    if task not in TASKS:
        raise ValueError(f"data.task must be one of {', '.join(map(repr, TASKS))}, got {task!r}")
    if task == "all":
        return {c["id"] for c in categories}
    name = SEA_PERSON if task == "sea" else EARTH_PERSON
    ids = {c["id"] for c in categories if c.get("name") == name}
    if not ids:
        raise DataError(f"{source}: task {task!r} needs a category named {name!r}")
    return ids


def task_scoring_category(categories: list[dict], task: Task, source: str = "the ground truth") -> int:
    """The one category id a task is scored under: 1 ("person") for "all", the task's category otherwise.
    Detections are written with this id."""
    return 1 if task == "all" else min(task_category_ids(categories, task, source))


def task_ground_truth(coco: dict, task: Task, source: str = "the ground truth") -> dict:
    """The ground truth as the task is scored: "all" merges sea and earth into one category `person` (id 1);
    "sea" or "earth" keeps that category and makes the other one ignore regions."""
    positives = task_category_ids(coco["categories"], task, source)
    kept = task_scoring_category(coco["categories"], task, source)
    gt = copy.deepcopy(coco)
    for ann in gt["annotations"]:
        if task != "all" and ann["category_id"] not in positives:
            ann["ignore"] = 1
        ann["category_id"] = kept
    if task == "all":
        gt["categories"] = [{"id": 1, "name": "person"}]
    else:
        gt["categories"] = [c for c in gt["categories"] if c["id"] == kept]
    return gt


def _annotation_dicts(image_id: int, anns: ImageAnnotations) -> list[dict]:
    out = []
    for i in range(len(anns)):
        x1, y1, x2, y2 = (float(v) for v in anns.boxes[i])
        out.append(
            {
                "segmentation": [[x1, y1, x1, y2, x2, y2, x2, y1]],
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "category_id": int(anns.category_ids[i]),
                "area": float(anns.areas[i]),
                "iscrowd": int(anns.iscrowd[i]),
                "image_id": image_id,
                "id": int(anns.ids[i]),
                **{f: bool(getattr(anns, f)[i]) for f in FLAG_FIELDS if f != "iscrowd"},
            }
        )
    return out


def load_annotations(
    path: str | Path, on_error: OnError = "raise", categories: Collection[str] | None = None
) -> AnnotationSet:
    """Read and validate a TinyPerson-style (or any COCO) json.

    A bad annotation (unknown image or category, bbox not 4 finite numbers, non-positive size, box
    outside the image by more than OUTSIDE_TOLERANCE_PX) raises DataError naming the file and the
    annotation id; with on_error="skip" it is dropped instead and one warning counts the drops by reason.
    `categories` keeps only the categories of these names (COCO's "person" for pre-training): the other
    categories and their annotations are left out before validation; crowd boxes (`iscrowd`) stay, as
    ignore regions (`ImageAnnotations.not_a_person`).
    """
    path = str(path)
    return annotations_from_coco(read_json(path), path, on_error, categories)


def read_json(path: str | Path) -> object:
    """The parsed json file; DataError naming the file when it is missing or malformed."""
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise DataError(f"{path}: annotation file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: malformed JSON ({e})") from None


def annotations_from_coco(
    data: object,
    path: str = "<COCO dict>",
    on_error: OnError = "raise",
    categories: Collection[str] | None = None,
) -> AnnotationSet:
    """`load_annotations` of an already parsed json; `path` names it in errors."""
    if not isinstance(data, dict) or not all(
        isinstance(data.get(k), list) for k in ("images", "annotations")
    ):
        raise DataError(f"{path}: not a COCO json (needs 'images' and 'annotations' lists)")
    all_categories = data.get("categories", [])
    if not isinstance(all_categories, list) or not all(
        isinstance(c, dict) and "id" in c for c in all_categories
    ):
        raise DataError(f"{path}: 'categories' must be a list of objects with an 'id'")
    kept_categories = _filter_categories(path, all_categories, categories)
    images = [_parse_image(path, entry) for entry in data["images"]]
    by_id: dict[int, ImageInfo] = {}
    for info in images:
        if info.id in by_id:
            raise DataError(f"{path}: image id {info.id} appears twice")
        by_id[info.id] = info

    category_ids = {c["id"] for c in kept_categories}
    left_out_ids = {c["id"] for c in all_categories} - category_ids
    rows: dict[int, list[tuple]] = {}
    skipped: Counter = Counter()
    for ann in data["annotations"]:
        if left_out_ids and isinstance(ann, dict) and ann.get("category_id") in left_out_ids:
            continue
        try:
            image_id, row = _parse_annotation(ann, by_id, category_ids)
        except _BadAnnotation as e:
            if on_error == "raise":
                raise DataError(f"{path}: annotation id {e.ann_id}: {e.reason}") from None
            skipped[e.reason.split(" (")[0]] += 1
            continue
        rows.setdefault(image_id, []).append(row)
    if skipped:
        reasons = ", ".join(f"{n} {why}" for why, n in skipped.most_common())
        warnings.warn(f"{path}: skipped {sum(skipped.values())} bad annotations: {reasons}", stacklevel=3)
    extra = {k: v for k, v in data.items() if k not in ("images", "annotations", "categories")}
    annotations = {image_id: _to_arrays(r) for image_id, r in rows.items()}
    return AnnotationSet(path, images, annotations, kept_categories, extra)


def _filter_categories(path: str, categories: list[dict], names: Collection[str] | None) -> list[dict]:
    if names is None:
        return categories
    if isinstance(names, str) or not all(isinstance(n, str) for n in names) or not names:
        raise ValueError(f"categories must be a non-empty collection of names, got {names!r}")
    available = [c.get("name") for c in categories]
    missing = sorted(set(names) - set(available))
    if missing:
        raise DataError(f"{path}: no category named {missing} (categories: {available})")
    return [c for c in categories if c.get("name") in set(names)]


def _parse_image(path: str, entry: object) -> ImageInfo:
    try:
        corner = entry.get("corner")
        info = ImageInfo(
            id=int(entry["id"]),
            file_name=str(entry["file_name"]),
            width=int(entry["width"]),
            height=int(entry["height"]),
            corner=None if corner is None else tuple(int(v) for v in corner),
            origin_id=None if entry.get("origin_image_id") is None else int(entry["origin_image_id"]),
            erase_regions=tuple(tuple(float(v) for v in r) for r in entry.get("erase_regions", ())),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise DataError(f"{path}: bad image entry {str(entry)[:200]} ({type(e).__name__}: {e})") from None
    if info.width <= 0 or info.height <= 0 or (info.corner is not None and len(info.corner) != 4):
        raise DataError(f"{path}: image id {info.id} ({info.file_name}) has a bad size or corner")
    return info


class _BadAnnotation(Exception):
    def __init__(self, ann_id: object, reason: str):
        super().__init__(reason)
        self.ann_id, self.reason = ann_id, reason


def _parse_annotation(ann: object, images: dict[int, ImageInfo], category_ids: set[int]) -> tuple[int, tuple]:
    if not isinstance(ann, dict):
        raise _BadAnnotation("?", f"not an object: {str(ann)[:100]}")
    ann_id = ann.get("id")
    if not isinstance(ann_id, int):
        raise _BadAnnotation(ann_id, "missing or non-integer id")
    image = images.get(ann.get("image_id"))
    if image is None:
        raise _BadAnnotation(ann_id, f"unknown image_id ({ann.get('image_id')!r})")
    if ann.get("category_id") not in category_ids:
        raise _BadAnnotation(ann_id, f"unknown category_id ({ann.get('category_id')!r})")
    bbox = ann.get("bbox")
    try:
        x, y, w, h = (float(v) for v in bbox)
    except (TypeError, ValueError):
        raise _BadAnnotation(ann_id, f"bbox is not 4 numbers ({bbox!r})") from None
    where = f"(bbox {bbox} in image id {image.id}, {image.width}x{image.height})"
    if not all(math.isfinite(v) for v in (x, y, w, h)):
        raise _BadAnnotation(ann_id, f"non-finite box {where}")
    if w <= 0 or h <= 0:
        raise _BadAnnotation(ann_id, f"non-positive box size {where}")
    tol = OUTSIDE_TOLERANCE_PX
    if x < -tol or y < -tol or x + w > image.width + tol or y + h > image.height + tol:
        raise _BadAnnotation(ann_id, f"box outside the image {where}")
    area = float(ann.get("area", w * h))
    flags = tuple(bool(ann.get(name, False)) for name in FLAG_FIELDS)
    return image.id, (ann_id, x, y, x + w, y + h, area, int(ann["category_id"]), *flags)


def _to_arrays(rows: list[tuple]) -> ImageAnnotations:
    ids, x1, y1, x2, y2, areas, cats, *flags = zip(*rows, strict=True)
    return ImageAnnotations(
        ids=np.array(ids, dtype=np.int64),
        boxes=np.stack([x1, y1, x2, y2], axis=1).astype(np.float64),
        areas=np.array(areas, dtype=np.float64),
        category_ids=np.array(cats, dtype=np.int64),
        **{name: np.array(values, dtype=bool) for name, values in zip(FLAG_FIELDS, flags, strict=True)},
    )
