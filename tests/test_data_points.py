"""Coarse point generation (spread, reproducibility, bad input) and point-annotated json round trips."""

from __future__ import annotations

import json
import math
from statistics import NormalDist

import numpy as np
import pytest

from tinyfast.data import (
    DataError,
    generate_coarse_points,
    load_point_annotations,
    save_point_annotations,
)


def coco(boxes: list[list[float]], width: int = 2000, height: int = 2000, **extra) -> dict:
    annotations = [
        {
            "id": i + 1,
            "image_id": 1,
            "category_id": 1,
            "bbox": box,
            "area": box[2] * box[3],
            "iscrowd": 0,
            **extra,
        }
        for i, box in enumerate(boxes)
    ]
    return {
        "images": [{"id": 1, "file_name": "a.jpg", "width": width, "height": height}],
        "annotations": annotations,
        "categories": [{"id": 1, "name": "sea_person"}],
    }


def random_boxes(n: int, seed: int = 0) -> list[list[float]]:
    rng = np.random.default_rng(seed)
    sizes = rng.uniform(2, 60, (n, 2))
    corners = rng.uniform(100, 1800, (n, 2))  # far enough from the borders: no clipping
    return np.concatenate([corners, sizes], axis=1).tolist()


def relative_offsets(data: dict) -> np.ndarray:
    """(point - box centre) / box size, per axis."""
    boxes = np.array([a["bbox"] for a in data["annotations"]])
    points = np.array([a["point"] for a in data["annotations"]])
    return (points - boxes[:, :2] - boxes[:, 2:] / 2) / boxes[:, 2:]


def truncated_normal_moments(mu: float, sigma: float, bound: float = 0.5) -> tuple[float, float, float]:
    """Mean, standard deviation and mean absolute value of N(mu, sigma) truncated to [-bound, bound]."""
    unit = NormalDist()
    a, b = (-bound - mu) / sigma, (bound - mu) / sigma
    mass = unit.cdf(b) - unit.cdf(a)
    mean = mu + sigma * (unit.pdf(a) - unit.pdf(b)) / mass
    variance = sigma**2 * (
        1 + (a * unit.pdf(a) - b * unit.pdf(b)) / mass - ((unit.pdf(a) - unit.pdf(b)) / mass) ** 2
    )
    # E|X| = E[X] - 2 E[X; X < 0], E[X; X < 0] = mu P(a < Z < z0) + sigma (pdf(a) - pdf(z0)), z0 = -mu/sigma.
    z0 = -mu / sigma
    negative_part = (mu * (unit.cdf(z0) - unit.cdf(a)) + sigma * (unit.pdf(a) - unit.pdf(z0))) / mass
    return mean, math.sqrt(variance), mean - 2 * negative_part


N = 20000


@pytest.mark.parametrize(("mu", "sigma"), [(0.0, 0.25), (0.0, 0.1), (0.2, 0.3), (-0.5, 0.2), (0.0, 5.0)])
def test_range_gaussian_spread_is_relative_to_the_box(mu, sigma):
    data = generate_coarse_points(coco(random_boxes(N)), mu=mu, sigma=sigma, seed=3)
    offsets = relative_offsets(data)
    mean, std, mean_abs = truncated_normal_moments(mu, sigma)
    tolerance = 5 * std / math.sqrt(N)
    assert np.abs(offsets.mean(axis=0) - mean).max() < tolerance
    assert np.abs(np.abs(offsets).mean(axis=0) - mean_abs).max() < tolerance
    assert np.abs(offsets.std(axis=0) - std).max() < 0.03 * std
    assert (np.abs(offsets) <= 0.5 + 1e-12).all()  # size_range 1: inside the box


def test_uniform_and_size_range():
    data = generate_coarse_points(coco(random_boxes(N)), distribution="uniform", size_range=0.5, seed=1)
    offsets = relative_offsets(data)
    # U[-0.5, 0.5) scaled by 0.5: mean |o| = 0.125, std = 0.5 / sqrt(12).
    assert np.abs(np.abs(offsets).mean(axis=0) - 0.125).max() < 0.004
    assert np.abs(offsets.std(axis=0) - 0.5 / math.sqrt(12)).max() < 0.004
    assert (np.abs(offsets) <= 0.25 + 1e-12).all()
    gaussian = relative_offsets(generate_coarse_points(coco(random_boxes(N)), size_range=2.0, seed=1))
    _, std, _ = truncated_normal_moments(0.0, 0.25)
    assert np.abs(gaussian.std(axis=0) - 2 * std).max() < 0.03 * 2 * std


def test_same_seed_same_points_other_seed_other_points():
    source = coco(random_boxes(500))
    first = generate_coarse_points(source, seed=11)
    assert first == generate_coarse_points(source, seed=11)
    other = generate_coarse_points(source, seed=12)
    assert [a["point"] for a in first["annotations"]] != [a["point"] for a in other["annotations"]]
    uniform = generate_coarse_points(source, distribution="uniform", seed=11)
    assert uniform == generate_coarse_points(source, distribution="uniform", seed=11)


def test_keeps_every_field_and_leaves_the_input_alone():
    source = coco([[10, 20, 8, 6], [100, 100, 4, 4]], ignore=True)
    before = json.loads(json.dumps(source))
    data = generate_coarse_points(source, seed=0)
    assert source == before
    for original, annotated in zip(source["annotations"], data["annotations"], strict=True):
        assert {k: v for k, v in annotated.items() if k != "point"} == original
        x, y, w, h = original["bbox"]
        assert x <= annotated["point"][0] <= x + w and y <= annotated["point"][1] <= y + h


def test_zero_size_box_gives_its_corner_and_points_stay_in_the_image():
    data = generate_coarse_points(coco([[5, 7, 0, 0]]), seed=0)
    assert data["annotations"][0]["point"] == [5.0, 7.0]
    at_border = coco([[0, 0, 40, 40], [60, 60, 40, 40]], width=100, height=100)
    data = generate_coarse_points(at_border, size_range=4.0, distribution="uniform", seed=0)
    points = np.array([a["point"] for a in data["annotations"]])
    assert (points >= 0).all() and (points <= 100).all()


def test_round_trip_through_json(tmp_path):
    source = coco(random_boxes(50), ignore=False)
    source["images"].append({"id": 2, "file_name": "b.jpg", "width": 640, "height": 512})
    source["annotations"].append(
        {"id": 99, "image_id": 2, "category_id": 1, "bbox": [3, 4, 5, 6], "area": 30, "iscrowd": 0}
    )
    path = tmp_path / "points" / "train_coarse.json"
    data = generate_coarse_points(source, seed=5)
    save_point_annotations(data, path)
    loaded = load_point_annotations(path)
    assert json.loads(path.read_text()) == data
    for image_id in (1, 2):
        anns = loaded.annotations.annotations_of(image_id)
        by_id = {a["id"]: a["point"] for a in data["annotations"]}
        expected = np.array([by_id[int(i)] for i in anns.ids])
        np.testing.assert_array_equal(loaded.points_of(image_id), expected)
    assert loaded.points_of(3).shape == (0, 2)
    # The file can be generated from a path too, with the same result.
    source_path = tmp_path / "source.json"
    source_path.write_text(json.dumps(source))
    assert generate_coarse_points(source_path, seed=5) == data


def test_bad_boxes_name_the_file_and_the_annotation(tmp_path):
    path = tmp_path / "bad.json"
    no_box = coco([[1, 1, 4, 4], [2, 2, 4, 4]])
    del no_box["annotations"][1]["bbox"]
    path.write_text(json.dumps(no_box))
    with pytest.raises(DataError, match=r"bad\.json: annotation id 2 \(entry 1\): has no 'bbox'"):
        generate_coarse_points(path)
    for bad_box, message in (
        ([1, 1, float("nan"), 4], "not finite"),
        ([1, float("inf"), 4, 4], "not finite"),
        ([1, 1, -4, 4], "non-negative"),
        ([1, 1, 4], "not 4 numbers"),
        ("1,1,4,4", "not 4 numbers"),
        ("1144", "not 4 numbers"),
    ):
        data = coco([[1, 1, 4, 4], [1, 1, 4, 4]])
        data["annotations"][1]["bbox"] = bad_box
        path.write_text(json.dumps(data))
        with pytest.raises(DataError, match=rf"bad\.json: annotation id 2 \(entry 1\): .*{message}"):
            generate_coarse_points(path)
    with pytest.raises(DataError, match=r"<dict>: not a COCO json"):
        generate_coarse_points({"images": []})
    with pytest.raises(DataError, match="annotation file not found"):
        generate_coarse_points(tmp_path / "missing.json")
    path.write_text("{")
    with pytest.raises(DataError, match="malformed JSON"):
        generate_coarse_points(path)
    unknown_image = coco([[1, 1, 4, 4]])
    unknown_image["annotations"][0]["image_id"] = 5
    with pytest.raises(DataError, match="unknown image_id 5"):
        generate_coarse_points(unknown_image)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"distribution": "poisson"}, "distribution"),
        ({"mu": 0.7}, "mu in"),
        ({"sigma": 0.0}, "sigma > 0"),
        ({"sigma": (0.2, float("nan"))}, "sigma must be"),
        ({"mu": (0.1, 0.2, 0.3)}, "mu must be"),
        ({"mu": "ab"}, "mu must be"),
        ({"size_range": 0}, "size_range"),
        ({"size_range": float("inf")}, "size_range"),
    ],
)
def test_bad_parameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        generate_coarse_points(coco([[1, 1, 4, 4]]), **kwargs)


def test_loading_rejects_bad_points(tmp_path):
    path = tmp_path / "points.json"
    for point, message in (
        (None, r"annotation id 2: point is not \[x, y\]"),
        ([1.0], r"annotation id 2: point is not \[x, y\]"),
        ("12", r"annotation id 2: point is not \[x, y\]"),
        ([float("nan"), 3.0], "annotation id 2: non-finite point"),
        ([5000.0, 3.0], "annotation id 2: point .* outside the image"),
    ):
        data = generate_coarse_points(coco([[1, 1, 4, 4], [10, 10, 4, 4]]), seed=0)
        if point is None:
            del data["annotations"][1]["point"]
        else:
            data["annotations"][1]["point"] = point
        save_point_annotations(data, path)
        with pytest.raises(DataError, match=rf"points\.json: {message}"):
            load_point_annotations(path)


def test_loading_rejects_a_repeated_annotation_id(tmp_path):
    data = generate_coarse_points(coco([[1, 1, 4, 4], [10, 10, 4, 4]]), seed=0)
    data["annotations"][1]["id"] = 1
    save_point_annotations(data, tmp_path / "twice.json")
    with pytest.raises(DataError, match=r"twice\.json: annotation id 1: appears twice"):
        load_point_annotations(tmp_path / "twice.json")
