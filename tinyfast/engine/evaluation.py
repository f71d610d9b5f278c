"""Evaluation of a detector on the full test images of a config: tiled inference with a merge policy,
a COCO results json, and the TinyPerson metrics."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import torch
from tqdm import tqdm

from tinyfast.data.transforms import normalize, read_image
from tinyfast.evaluation import EvalParams, evaluate, format_report
from tinyfast.modeling import DETECTORS
from tinyfast.tiling import detect_images, merge_policy, write_coco_results

_TASK_CATEGORIES = {"sea": 1, "earth": 2}


def task_ground_truth(coco: dict, task: str) -> dict:
    """The ground truth as the task is scored: "all" merges sea and earth into one category `person` (id 1);
    "sea" or "earth" keeps that category and makes the other one ignore regions."""
    gt = copy.deepcopy(coco)
    if task == "all":
        for ann in gt["annotations"]:
            ann["category_id"] = 1
        gt["categories"] = [{"id": 1, "name": "person"}]
        return gt
    if task not in _TASK_CATEGORIES:
        raise ValueError(f"data.task must be 'all', 'sea' or 'earth', got {task!r}")
    kept = _TASK_CATEGORIES[task]
    for ann in gt["annotations"]:
        if ann["category_id"] != kept:
            ann["category_id"], ann["ignore"] = kept, 1
    gt["categories"] = [c for c in gt["categories"] if c["id"] == kept]
    return gt


def evaluate_detector(
    detector,
    config: dict,
    out_dir: Path,
    policy: str = "during",
    *,
    progress: bool = True,
    images_per_batch: int = 2,
) -> dict[str, float]:
    """Runs `detector` (a `TileDetector`) on every test image, writes `results_{policy}.json` and
    `metrics_{policy}.json` into `out_dir`, and returns the metrics (headline: `AP50_tiny`)."""
    data, model = config["data"], config["model"]
    gt = task_ground_truth(json.loads(Path(data["test_annotations"]).read_text()), data["task"])
    dense_head = DETECTORS[model["name"]][0].dense_head
    chosen = merge_policy(
        policy, dense_head=dense_head, nms_pre=model["nms_pre"], iou_threshold=model["nms_iou"]
    )
    if policy == "during":  # the detector applies score_thr to the raw class score, per tile
        chosen = dataclasses.replace(
            chosen,
            score_threshold=None,
            tile_settings=dataclasses.replace(chosen.tile_settings, score_threshold=model["score_threshold"]),
        )
    else:
        chosen = dataclasses.replace(chosen, iou_threshold=0.5)  # the reference's merge_nms_th
    detections, image_ids = [], []
    infos = gt["images"]
    for start in tqdm(range(0, len(infos), images_per_batch), desc=f"test ({policy})", disable=not progress):
        batch = infos[start : start + images_per_batch]
        images = [
            normalize(read_image(str(Path(data["test_images"]) / info["file_name"])), data["normalization"])
            for info in batch
        ]
        with torch.no_grad():
            detections += detect_images(detector, images, chosen)
        image_ids += [info["id"] for info in batch]
    out_dir.mkdir(parents=True, exist_ok=True)
    results = write_coco_results(detections, image_ids, out_dir / f"results_{policy}.json")
    metrics = evaluate(gt, results, max_dets=1000)
    (out_dir / f"metrics_{policy}.json").write_text(json.dumps(metrics, indent=2))
    (out_dir / f"metrics_{policy}.txt").write_text(format_report(metrics, EvalParams.tinyperson(1000)))
    return metrics
