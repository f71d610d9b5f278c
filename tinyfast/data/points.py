"""Point annotations: one coarse point per object, generated from its box as the CPR reference does.

Format: a COCO json whose annotations each carry ``point`` [x, y] (pixels of the image entry, continuous
coordinates: the box ``[x, y, w, h]`` spans ``[x, x + w]``). Every other field stays: ``bbox`` and
``area`` are the true box, kept for evaluation only (a point-supervised model must not read them), and
the ignore flags keep their meaning.

The generator follows ucas-vg PointTinyBenchmark's ``huicv/coarse_utils/noise_data_utils.py``
(``add_rand_points``), the set-up of "Object Localization under Single Coarse Point Supervision" (CVPR
2022) for data without masks such as TinyPerson (its files are named ``noise_rg-0-0.25_1``: a range
Gaussian with mu 0, sigma 0.25, size range 1): per annotation and axis an offset ``o`` is drawn, and the
point is ``centre + o * size_range * (w, h)``. ``"range_gaussian"``: ``o`` ~ N(mu, sigma) truncated to
[-0.5, 0.5], so with ``size_range`` 1 the point lies in the box and its spread is relative to the box
size; ``"uniform"``: ``o`` ~ U[-0.5, 0.5). Where this differs from the reference: the truncated normal is
sampled by inverse CDF from a seeded ``numpy.random.Generator`` (the reference rejection-samples from
numpy's global state: same distribution, another stream), ``mu`` must lie in [-0.5, 0.5] (so that the
sampling is well-conditioned), points are clipped to the image (the reference does not clip; only a
``size_range`` above 1 can leave the image), and the true box stays under ``bbox`` (the reference moves it
to ``true_bbox`` and later writes a pseudo box of fixed size into ``bbox`` for mmdetection's pipeline).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from statistics import NormalDist
from typing import Any, Literal

import numpy as np

from tinyfast.data.annotations import OUTSIDE_TOLERANCE_PX, AnnotationSet, annotations_from_coco, read_json
from tinyfast.data.errors import DataError

Distribution = Literal["range_gaussian", "uniform"]
DISTRIBUTIONS: tuple[str, ...] = ("range_gaussian", "uniform")
# The reference's TinyPerson setting (noise_rg-0-0.25_1).
DEFAULT_SIGMA = 0.25
OFFSET_BOUND = 0.5


def _read(source: str | Path | Mapping[str, Any]) -> tuple[dict, str]:
    """The json and how errors name it; a dict source is copied down to its annotations (left untouched)."""
    if isinstance(source, Mapping):
        data, name = dict(source), "<dict>"
    else:
        data, name = read_json(source), str(source)
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
        raise DataError(f"{name}: not a COCO json (needs an 'annotations' list)")
    data["annotations"] = [dict(ann) if isinstance(ann, Mapping) else ann for ann in data["annotations"]]
    return data, name


def _axis_pair(value: float | tuple[float, float], name: str) -> tuple[float, float]:
    pair = (value, value) if isinstance(value, int | float) else value
    if (
        not isinstance(pair, list | tuple)
        or len(pair) != 2
        or not all(isinstance(v, int | float) and math.isfinite(v) for v in pair)
    ):
        raise ValueError(f"{name} must be a finite number or an (x, y) pair of them, got {value!r}")
    return float(pair[0]), float(pair[1])


def coarse_offsets(
    n: int,
    rng: np.random.Generator,
    distribution: Distribution = "range_gaussian",
    mu: float | tuple[float, float] = 0.0,
    sigma: float | tuple[float, float] = DEFAULT_SIGMA,
) -> np.ndarray:
    """[n, 2] offsets in units of the box size (before ``size_range``), each in [-0.5, 0.5]."""
    if distribution == "uniform":
        return rng.random((n, 2)) - OFFSET_BOUND
    if distribution != "range_gaussian":
        raise ValueError(f"distribution must be one of {DISTRIBUTIONS}, got {distribution!r}")
    mus, sigmas = _axis_pair(mu, "mu"), _axis_pair(sigma, "sigma")
    if any(abs(m) > OFFSET_BOUND for m in mus) or any(s <= 0 for s in sigmas):
        raise ValueError(
            f"range_gaussian needs mu in [-0.5, 0.5] and sigma > 0, got mu={mu!r} sigma={sigma!r}"
        )
    offsets = np.empty((n, 2))
    tiny = np.finfo(np.float64).tiny
    for axis, (m, s) in enumerate(zip(mus, sigmas, strict=True)):
        normal = NormalDist(m, s)
        low, high = normal.cdf(-OFFSET_BOUND), normal.cdf(OFFSET_BOUND)
        uniform = np.clip(rng.uniform(low, high, n), tiny, 1 - np.finfo(np.float64).epsneg)
        offsets[:, axis] = [normal.inv_cdf(u) for u in uniform.tolist()]
    return np.clip(offsets, -OFFSET_BOUND, OFFSET_BOUND)


def _annotation_boxes(data: dict, name: str) -> np.ndarray:
    annotations = data["annotations"]
    boxes = np.zeros((len(annotations), 4))
    for index, ann in enumerate(annotations):
        ann_id = ann.get("id", "?") if isinstance(ann, dict) else "?"
        where = f"{name}: annotation id {ann_id} (entry {index})"
        if not isinstance(ann, dict) or "bbox" not in ann:
            raise DataError(f"{where}: has no 'bbox' to draw a point from")
        try:
            if not isinstance(ann["bbox"], list | tuple):
                raise TypeError
            boxes[index] = [float(v) for v in ann["bbox"]]
        except (TypeError, ValueError):
            raise DataError(f"{where}: bbox is not 4 numbers ({ann['bbox']!r})") from None
        if not np.isfinite(boxes[index]).all() or (boxes[index, 2:] < 0).any():
            raise DataError(f"{where}: bbox {ann['bbox']} is not finite with a non-negative size")
    return boxes


def _image_sizes(data: dict, name: str) -> dict[Any, tuple[float, float]]:
    sizes = {}
    for entry in data.get("images", []):
        try:
            sizes[entry["id"]] = (float(entry["width"]), float(entry["height"]))
        except (KeyError, TypeError, ValueError):
            raise DataError(
                f"{name}: image entry {str(entry)[:200]} needs an id, a width and a height"
            ) from None
    return sizes


def generate_coarse_points(
    source: str | Path | Mapping[str, Any],
    *,
    distribution: Distribution = "range_gaussian",
    mu: float | tuple[float, float] = 0.0,
    sigma: float | tuple[float, float] = DEFAULT_SIGMA,
    size_range: float = 1.0,
    seed: int = 0,
) -> dict:
    """A copy of the COCO json ``source`` (path or dict) with a coarse ``point`` on every annotation.

    The same ``seed`` and annotations give the same points. An annotation without ``bbox``, or with a
    non-finite or negative-size one, raises DataError naming the file and the annotation.
    """
    if not (math.isfinite(size_range) and size_range > 0):
        raise ValueError(f"size_range must be a positive finite number, got {size_range!r}")
    data, name = _read(source)
    boxes = _annotation_boxes(data, name)
    image_sizes = _image_sizes(data, name)
    offsets = coarse_offsets(len(boxes), np.random.default_rng(seed), distribution, mu, sigma)
    points = boxes[:, :2] + boxes[:, 2:] / 2 + offsets * size_range * boxes[:, 2:]
    for ann, point in zip(data["annotations"], points.tolist(), strict=True):
        if ann.get("image_id") not in image_sizes:
            raise DataError(
                f"{name}: annotation id {ann.get('id', '?')}: unknown image_id {ann.get('image_id')!r}"
            )
        width, height = image_sizes[ann["image_id"]]
        ann["point"] = [min(max(point[0], 0.0), width), min(max(point[1], 0.0), height)]
    return data


def save_point_annotations(data: Mapping[str, Any], path: str | Path) -> None:
    """Write a point-annotated COCO json (as ``generate_coarse_points`` returns it)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(data, separators=(",", ":")))


@dataclass
class PointAnnotationSet:
    """A point-annotated json: ``annotations`` as the box loader reads it, and the points aligned with it."""

    annotations: AnnotationSet
    points: dict[int, np.ndarray]  # image id -> [n, 2] float64, in the order of annotations_of(image id)

    def points_of(self, image_id: int) -> np.ndarray:
        return self.points.get(image_id, np.zeros((0, 2)))

    def attached(self) -> AnnotationSet:
        """The annotation set whose per-image annotations carry their points (``ImageAnnotations.points``,
        clipped to the image), so that cuts, selections and task targets keep them aligned."""
        sizes = {info.id: (info.width, info.height) for info in self.annotations.images}
        per_image = {}
        for image_id, anns in self.annotations.annotations.items():
            points = self.points_of(image_id).copy()
            points[:, 0] = points[:, 0].clip(0, sizes[image_id][0])
            points[:, 1] = points[:, 1].clip(0, sizes[image_id][1])
            per_image[image_id] = anns.with_points(points)
        return replace(self.annotations, annotations=per_image)


def load_point_annotations(path: str | Path) -> PointAnnotationSet:
    """Read and validate a point-annotated COCO json.

    The boxes, images and flags are validated as ``load_annotations`` does; every annotation needs a
    ``point`` of 2 finite numbers inside its image (within OUTSIDE_TOLERANCE_PX), else DataError naming
    the file and the annotation id.
    """
    return point_annotations_from_coco(read_json(str(path)), str(path))


def point_annotations_from_coco(data: object, name: str = "<COCO dict>") -> PointAnnotationSet:
    """``load_point_annotations`` of an already parsed json; ``name`` names it in errors."""
    annotation_set = annotations_from_coco(data, name)
    sizes = {info.id: (info.width, info.height) for info in annotation_set.images}
    by_id: dict[int, tuple[float, float]] = {}
    tol = OUTSIDE_TOLERANCE_PX
    for ann in data["annotations"]:
        point = ann.get("point")
        where = f"{name}: annotation id {ann['id']}"
        if ann["id"] in by_id:
            raise DataError(f"{where}: appears twice")
        try:
            if not isinstance(point, list | tuple):
                raise TypeError
            x, y = (float(v) for v in point)
        except (TypeError, ValueError):
            raise DataError(f"{where}: point is not [x, y] ({point!r})") from None
        if not (math.isfinite(x) and math.isfinite(y)):
            raise DataError(f"{where}: non-finite point {point}")
        width, height = sizes[ann["image_id"]]
        if not (-tol <= x <= width + tol and -tol <= y <= height + tol):
            raise DataError(f"{where}: point {point} outside the image ({width}x{height})")
        by_id[ann["id"]] = (x, y)
    points = {
        image_id: np.array([by_id[int(i)] for i in anns.ids], np.float64).reshape(-1, 2)
        for image_id, anns in annotation_set.annotations.items()
    }
    return PointAnnotationSet(annotation_set, points)


def centre_points(source: str | Path | Mapping[str, Any]) -> dict:
    """A copy of the COCO json ``source`` (path or dict) whose annotations carry their box centre as
    ``point``: the "perfect click" that coarse points are compared with."""
    data, name = _read(source)
    boxes = _annotation_boxes(data, name)
    for ann, centre in zip(data["annotations"], (boxes[:, :2] + boxes[:, 2:] / 2).tolist(), strict=True):
        ann["point"] = centre
    return data


# Where a point-supervised training set's points come from (the config key `data.points`).
POINT_SOURCES: tuple[str, ...] = ("annotated", "coarse", "centre")


def point_json(path: str | Path, source: str, seed: int = 0) -> dict:
    """The COCO json at ``path`` with a ``point`` on every annotation: ``"annotated"`` reads it as it is
    (a coarse or refined json; validated as ``load_point_annotations`` does), ``"coarse"`` draws coarse
    points from the boxes with the reference's TinyPerson setting (``generate_coarse_points`` with
    ``seed``), ``"centre"`` takes the box centres."""
    if source == "annotated":
        data = read_json(path)
        point_annotations_from_coco(data, str(path))
        return data
    if source == "coarse":
        return generate_coarse_points(path, seed=seed)
    if source == "centre":
        return centre_points(path)
    raise ValueError(f"data.points must be one of {', '.join(map(repr, POINT_SOURCES))}, got {source!r}")


def training_points(path: str | Path, source: str, seed: int = 0) -> AnnotationSet:
    """``point_json`` loaded, each image's annotations carrying their points (``ImageAnnotations.points``)."""
    return point_annotations_from_coco(point_json(path, source, seed), str(path)).attached()
