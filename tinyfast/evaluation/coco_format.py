"""Reading a COCO ground-truth json and a COCO results list into columnar numpy arrays, with checks."""

from __future__ import annotations

import itertools
import json
import numbers
import operator
import os
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

JsonLike = str | os.PathLike | Mapping[str, Any]
ResultsLike = str | os.PathLike | Sequence[Mapping[str, Any]]


@dataclass(frozen=True)
class GroundTruth:
    """The annotations of a COCO ground truth, in file order, with images and categories as indices."""

    image_ids: list[Hashable]  # sorted, as pycocotools orders them
    category_ids: list[Hashable]  # sorted
    image_index: np.ndarray  # [n] int64, index into image_ids
    category_index: np.ndarray  # [n] int64, index into category_ids
    boxes: np.ndarray  # [n, 4] float64, x y w h
    areas: np.ndarray  # [n] float64, the `area` field (size ranges use it, not the box)
    crowd: np.ndarray  # [n] bool, iscrowd: IoU against it is intersection over detection area
    ignore: np.ndarray  # [n] bool, iscrowd or one of the ignore flags
    id_is_zero: np.ndarray  # [n] bool (pycocotools counts a match to annotation id 0 as no match)


@dataclass(frozen=True)
class Detections:
    """A COCO results list, in list order."""

    image_index: np.ndarray  # [n] int64
    category_index: np.ndarray  # [n] int64
    boxes: np.ndarray  # [n, 4] float64
    scores: np.ndarray  # [n] float64


def _read_json(source: Any, what: str) -> Any:
    if isinstance(source, str | os.PathLike):
        try:
            with open(source) as file:
                return json.load(file)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"{what} {source} is not valid json ({error})") from None
    return source


def _is_real(kind: type) -> bool:
    """Numbers as json gives them (int, float) or numpy does; bool is not a number here."""
    return issubclass(kind, numbers.Real) and not issubclass(kind, bool)


def _is_id_type(kind: type) -> bool:
    return issubclass(kind, str) or (issubclass(kind, numbers.Integral) and not issubclass(kind, bool))


def _check_types(values: Sequence[Any], accept, field: str, where: str, what: str) -> None:
    """ValueError naming the first value whose type `accept` refuses (checked once per distinct type)."""
    refused = {kind for kind in set(map(type, values)) if not accept(kind)}
    if refused:
        index = next(i for i, value in enumerate(values) if type(value) in refused)
        raise ValueError(f"{where}[{index}].{field} = {values[index]!r} is not {what}")


def _entries(data: Mapping[str, Any], key: str) -> Sequence[Mapping[str, Any]]:
    entries = data[key]
    if not isinstance(entries, list):
        raise ValueError(f"the ground truth's '{key}' must be a list, got {type(entries).__name__}")
    bad = next((i for i, entry in enumerate(entries) if not isinstance(entry, Mapping)), None)
    if bad is not None:
        raise ValueError(f"{key}[{bad}] = {entries[bad]!r} is not an object")
    return entries


def _unique_ids(entries: Sequence[Mapping[str, Any]], what: str) -> list[Hashable]:
    ids = _column(entries, "id", what)
    _check_types(ids, _is_id_type, "id", what, "an integer or string id")
    kinds = {str if isinstance(i, str) else int for i in ids}
    if len(kinds) > 1:
        index = next(i for i, value in enumerate(ids) if isinstance(value, str) != isinstance(ids[0], str))
        raise ValueError(
            f"{what}[{index}].id = {ids[index]!r} and {what}[0].id = {ids[0]!r}: ids must be all integers "
            "or all strings"
        )
    if len(set(ids)) != len(ids):
        raise ValueError(f"'{what}' has duplicate ids")
    return sorted(ids)


_COLLECTION = {"image_id": "images", "category_id": "categories"}


def _positions(keys: list[Hashable], sorted_ids: list[Hashable], field: str, where: str) -> np.ndarray:
    """Index of every key in sorted_ids; ValueError naming the first key that is not there."""
    if sorted_ids:
        id_kind = str if isinstance(sorted_ids[0], str) else int
        _check_types(
            keys,
            lambda kind: _is_id_type(kind) and issubclass(kind, str) == (id_kind is str),
            field,
            where,
            f"an id of the ground truth's {_COLLECTION[field]} (they are {id_kind.__name__}s)",
        )
    key_array = np.asarray(keys) if keys else np.zeros(0, np.int64)
    id_array = np.asarray(sorted_ids)
    if key_array.dtype.kind in "iu" and id_array.dtype.kind in "iu" and key_array.ndim == 1:
        position = np.minimum(np.searchsorted(id_array, key_array), max(len(id_array) - 1, 0))
        found = id_array[position] == key_array if len(id_array) else np.zeros(len(keys), bool)
        if found.all():
            return position.astype(np.int64)
        bad = int(np.flatnonzero(~found)[0])
        raise ValueError(
            f"{where}[{bad}].{field} = {keys[bad]!r} is not an id in the ground truth's {_COLLECTION[field]}"
        )
    lookup = {key: position for position, key in enumerate(sorted_ids)}
    try:
        return np.fromiter((lookup[key] for key in keys), dtype=np.int64, count=len(keys))
    except (KeyError, TypeError):
        bad = next(i for i, key in enumerate(keys) if not isinstance(key, Hashable) or key not in lookup)
        raise ValueError(
            f"{where}[{bad}].{field} = {keys[bad]!r} is not an id in the ground truth's {_COLLECTION[field]}"
        ) from None


def _check_boxes(boxes: np.ndarray, where: str) -> None:
    bad_values = ~np.isfinite(boxes).all(axis=1)
    bad_sizes = (boxes[:, 2] < 0) | (boxes[:, 3] < 0)
    for bad, problem in (
        (bad_values, "has a non-finite value"),
        (bad_sizes, "has a negative width or height"),
    ):
        if bad.any():
            index = int(np.flatnonzero(bad)[0])
            raise ValueError(f"{where}[{index}].bbox = {boxes[index].tolist()} {problem}")


def _column(records: Sequence[Mapping[str, Any]], field: str, where: str) -> list[Any]:
    try:
        return list(map(operator.itemgetter(field), records))
    except (KeyError, TypeError):
        bad = next(i for i, r in enumerate(records) if not isinstance(r, Mapping) or field not in r)
        raise ValueError(f"{where}[{bad}] has no '{field}'") from None


def _box_array(records: Sequence[Mapping[str, Any]], where: str) -> np.ndarray:
    raw = _column(records, "bbox", where)
    _check_types(raw, lambda kind: issubclass(kind, list | tuple | np.ndarray), "bbox", where, "[x, y, w, h]")
    lengths = np.fromiter(map(len, raw), np.int64, count=len(raw))
    if (lengths != 4).any():
        bad = int(np.flatnonzero(lengths != 4)[0])
        raise ValueError(f"{where}[{bad}].bbox = {raw[bad]!r} is not [x, y, w, h]")
    values = list(itertools.chain.from_iterable(raw))
    refused = {kind for kind in set(map(type, values)) if not _is_real(kind)}
    if refused:
        bad = next(i for i, box in enumerate(raw) if any(type(v) in refused for v in box))
        raise ValueError(f"{where}[{bad}].bbox = {raw[bad]!r} is not [x, y, w, h] of numbers")
    boxes = np.array(values, dtype=np.float64).reshape(-1, 4)
    _check_boxes(boxes, where)
    return boxes


def _number_array(values: list[Any], field: str, where: str) -> np.ndarray:
    _check_types(values, _is_real, field, where, "a number")
    return np.array(values, dtype=np.float64).reshape(len(values))


def _flag_array(records: Sequence[Mapping[str, Any]], field: str, where: str) -> np.ndarray:
    """A 0/1 flag (`iscrowd`, `ignore`, ...): absent is 0; anything but 0, 1, false or true is an error."""
    values = [record.get(field, 0) for record in records]
    flag_types = bool | np.bool_ | numbers.Integral
    bad = next((i for i, v in enumerate(values) if not isinstance(v, flag_types) or v not in (0, 1)), None)
    if bad is not None:
        raise ValueError(f"{where}[{bad}].{field} = {values[bad]!r} is not 0, 1, false or true")
    return np.array(values, dtype=bool).reshape(len(values))


def _naming_the_file(source: Any, error: ValueError) -> ValueError:
    return ValueError(f"{os.fspath(source)}: {error}") if isinstance(source, str | os.PathLike) else error


def load_ground_truth(source: JsonLike, ignore_flags: Sequence[str] = ("ignore", "uncertain")) -> GroundTruth:
    """Read a COCO ground truth (path or dict). A GT is ignored when ``iscrowd`` or any flag is 1 or true;
    bad input raises ValueError naming the file (for a path), the entry and the field."""
    data = _read_json(source, "ground truth")
    try:
        return _ground_truth(data, ignore_flags)
    except ValueError as error:
        raise _naming_the_file(source, error) from None


def _ground_truth(data: Any, ignore_flags: Sequence[str]) -> GroundTruth:
    if not isinstance(data, Mapping):
        raise ValueError(
            "the ground truth must be a json object with images, annotations and categories, "
            f"got {data!r:.40}"
        )
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise ValueError(f"the ground truth has no '{key}'")
    image_ids = _unique_ids(_entries(data, "images"), "images")
    category_ids = _unique_ids(_entries(data, "categories"), "categories")
    annotations = _entries(data, "annotations")
    where = "annotations"
    annotation_ids = _column(annotations, "id", where)
    if len(set(annotation_ids)) != len(annotation_ids):
        raise ValueError("'annotations' has duplicate ids")
    boxes = _box_array(annotations, where) if annotations else np.zeros((0, 4))
    areas = _number_array(_column(annotations, "area", where), "area", where)
    bad_area = ~np.isfinite(areas) | (areas < 0)
    if bad_area.any():
        index = int(np.flatnonzero(bad_area)[0])
        raise ValueError(f"{where}[{index}].area = {areas[index]} is not a finite non-negative number")
    crowd = _flag_array(annotations, "iscrowd", where)
    flagged = np.zeros(len(annotations), dtype=bool)
    for flag in ignore_flags:
        flagged |= _flag_array(annotations, flag, where)
    return GroundTruth(
        image_ids=image_ids,
        category_ids=category_ids,
        image_index=_positions(_column(annotations, "image_id", where), image_ids, "image_id", where),
        category_index=_positions(
            _column(annotations, "category_id", where), category_ids, "category_id", where
        ),
        boxes=boxes,
        areas=areas,
        crowd=crowd,
        ignore=crowd | flagged,
        id_is_zero=np.array([annotation_id == 0 for annotation_id in annotation_ids], dtype=bool),
    )


def load_results(source: ResultsLike, ground_truth: GroundTruth) -> Detections:
    """Read a COCO results list (path or list). Bad entries raise ValueError naming the file (for a path),
    the entry and the field."""
    results = _read_json(source, "results")
    try:
        return _detections(results, ground_truth)
    except ValueError as error:
        raise _naming_the_file(source, error) from None


def _detections(results: Any, ground_truth: GroundTruth) -> Detections:
    if not isinstance(results, Sequence) or isinstance(results, str | bytes):
        raise ValueError("results must be a list of {image_id, category_id, bbox, score}")
    where = "results"
    scores = _number_array(_column(results, "score", where), "score", where)
    if np.isnan(scores).any():
        raise ValueError(f"{where}[{int(np.flatnonzero(np.isnan(scores))[0])}].score is NaN")
    return Detections(
        image_index=_positions(
            _column(results, "image_id", where), ground_truth.image_ids, "image_id", where
        ),
        category_index=_positions(
            _column(results, "category_id", where), ground_truth.category_ids, "category_id", where
        ),
        boxes=_box_array(results, where) if len(results) else np.zeros((0, 4)),
        scores=scores,
    )


def match_by_file_name(results: ResultsLike, gt: JsonLike) -> list[dict[str, Any]]:
    """The results (each with a ``file_name``, as ``python -m tinyfast.predict`` writes them) with
    ``image_id`` set to the id of the ground-truth image of that file name; ValueError naming the first
    entry whose file name the ground truth does not have."""
    results, data = _read_json(results, "results"), _read_json(gt, "ground truth")
    try:
        ids = {image["file_name"]: image["id"] for image in data["images"]}
    except (KeyError, TypeError):
        raise ValueError("every image of the ground truth needs a 'file_name' and an 'id'") from None
    names = _column(results, "file_name", "results")
    for index, name in enumerate(names):
        if name not in ids:
            raise ValueError(f"results[{index}].file_name = {name!r} is not an image of the ground truth")
    return [{**entry, "image_id": ids[name]} for entry, name in zip(results, names, strict=True)]
