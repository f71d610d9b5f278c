"""Tasks -> categories: one mapping (`tinyfast.data.annotations.task_category_ids`) for training, testing and
`python -m tinyfast.evaluate --task`, which must score a results json exactly as `tinyfast.test` does."""

import json

import pytest
import torch
from torchvision.io import write_png

from tinyfast.data.annotations import (
    TINYPERSON_CATEGORIES,
    AnnotationSet,
    task_category_ids,
    task_ground_truth,
    task_scoring_category,
)
from tinyfast.data.errors import DataError
from tinyfast.engine.config import DEFAULT_CONFIG, load_config
from tinyfast.engine.evaluation import evaluate_detector
from tinyfast.evaluate import main as evaluate_main


def test_task_ground_truth_merges_or_ignores_categories():
    coco = {
        "images": [{"id": 0, "file_name": "a.jpg", "width": 10, "height": 10}],
        "annotations": [
            {"id": 1, "image_id": 0, "category_id": 1, "bbox": [0, 0, 2, 2], "area": 4},
            {"id": 2, "image_id": 0, "category_id": 2, "bbox": [4, 4, 2, 2], "area": 4},
        ],
        "categories": [{"id": 1, "name": "sea_person"}, {"id": 2, "name": "earth_person"}],
    }
    merged = task_ground_truth(coco, "all")
    assert [a["category_id"] for a in merged["annotations"]] == [1, 1]
    sea = task_ground_truth(coco, "sea")
    assert [a.get("ignore", 0) for a in sea["annotations"]] == [0, 1]
    with pytest.raises(ValueError, match="data.task"):
        task_ground_truth(coco, "lake")


def test_tasks_map_to_categories_by_name_whatever_their_ids():
    swapped = [{"id": 7, "name": "earth_person"}, {"id": 3, "name": "sea_person"}]
    assert task_category_ids(swapped, "all") == {3, 7}
    assert task_category_ids(swapped, "sea") == {3}
    assert task_category_ids(swapped, "earth") == {7}
    assert [task_scoring_category(swapped, task) for task in ("all", "sea", "earth")] == [1, 3, 7]
    coco = {
        "images": [{"id": 0, "file_name": "a.jpg", "width": 10, "height": 10}],
        "annotations": [
            {"id": 1, "image_id": 0, "category_id": 7, "bbox": [0, 0, 2, 2], "area": 4},
            {"id": 2, "image_id": 0, "category_id": 3, "bbox": [4, 4, 2, 2], "area": 4},
        ],
        "categories": swapped,
    }
    earth = task_ground_truth(coco, "earth")
    assert [(a["category_id"], a.get("ignore", 0)) for a in earth["annotations"]] == [(7, 0), (7, 1)]
    assert earth["categories"] == [{"id": 7, "name": "earth_person"}]
    with pytest.raises(DataError, match="one.json: task 'sea' needs a category named 'sea_person'"):
        task_category_ids([{"id": 1, "name": "person"}], "sea", "one.json")
    with pytest.raises(ValueError, match="data.task"):
        task_category_ids(swapped, "lake")


def test_the_training_targets_use_the_same_mapping():
    annotations = AnnotationSet("x.json", [], {}, TINYPERSON_CATEGORIES, {})
    for task in ("all", "sea", "earth"):
        assert annotations.task_category_ids(task) == task_category_ids(TINYPERSON_CATEGORIES, task)


class FixedDetector:
    """Two boxes in every tile: one on the sea person, one on the earth person of `test_set`."""

    def __call__(self, tiles, settings):
        boxes = torch.tensor([[10.0, 10.0, 22.0, 26.0], [100.0, 50.0, 110.0, 64.0]])
        found = {
            "boxes": boxes,
            "scores": torch.tensor([0.9, 0.8]),
            "labels": torch.zeros(2, dtype=torch.int64),
        }
        return [found for _ in tiles]


@pytest.fixture
def test_set(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    infos, annotations = [], []
    for image_id in range(2):
        write_png(torch.zeros(3, 200, 300, dtype=torch.uint8), str(images / f"{image_id}.png"))
        infos.append({"id": image_id, "file_name": f"{image_id}.png", "width": 300, "height": 200})
        for offset, (category, box) in enumerate([(1, [10, 10, 12, 16]), (2, [100, 50, 10, 14])]):
            annotations.append(
                {"id": 2 * image_id + offset + 1, "image_id": image_id, "category_id": category, "bbox": box,
                 "area": box[2] * box[3], "iscrowd": 0}
            )  # fmt: skip
    gt_path = tmp_path / "test.json"
    gt_path.write_text(
        json.dumps({"images": infos, "annotations": annotations, "categories": TINYPERSON_CATEGORIES})
    )
    return gt_path, images


@pytest.mark.parametrize("task", ["all", "sea", "earth"])
def test_evaluate_with_a_task_scores_as_test_does(test_set, tmp_path, task, capsys):
    gt_path, images = test_set
    config = {
        "data": {"test_annotations": str(gt_path), "test_images": str(images), "task": task,
                 "normalization": "torchvision"},
        "model": {"name": "adap_fcos", "nms_pre": 1000, "nms_iou": 0.6, "score_threshold": 0.05},
        "test": {**load_config(DEFAULT_CONFIG)["test"], "scales": [1.0]},  # FixedDetector's boxes: scale 1
    }  # fmt: skip
    metrics = evaluate_detector(FixedDetector(), config, tmp_path / "out", progress=False)
    assert metrics["AP50_tiny"] > 0.4  # each task finds its persons (earth: written under its own id)
    results = tmp_path / "out" / "results_during.json"
    assert evaluate_main([str(gt_path), str(results), "--task", task]) == 0
    assert capsys.readouterr().out.strip() == (tmp_path / "out" / "metrics_during.txt").read_text().strip()
