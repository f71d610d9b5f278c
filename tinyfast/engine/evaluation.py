"""Evaluation of a detector on the full test images of a config: tiled inference with a merge policy,
a COCO results json, and the TinyPerson metrics."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tqdm import tqdm

from tinyfast.data.annotations import task_ground_truth, task_scoring_category
from tinyfast.data.transforms import normalize, read_image
from tinyfast.evaluation import EvalParams, evaluate, format_report
from tinyfast.modeling.build import policy_for_model
from tinyfast.tiling import detect_images, write_coco_results
from tinyfast.utils import comm


def evaluate_detector(
    detector,
    config: dict,
    out_dir: Path,
    policy: str = "during",
    *,
    progress: bool = True,
    images_per_batch: int = 2,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Runs `detector` (a `TileDetector` whose weights are on `device`) on every test image, writes
    `results_{policy}.json` and `metrics_{policy}.json` into `out_dir`, and returns the metrics (headline:
    `AP50_tiny`).

    In a distributed run every process infers its share of the batches of `images_per_batch` images (batch
    k goes to rank k mod world size); rank 0 gathers the detections, puts them back in the order of the
    test set, writes and evaluates them once, and every process returns its metrics. The batches are those
    of a single process, so the results are the same as one process's when the processes compute as it
    does (on CPU: the same number of threads per process)."""
    data = config["data"]
    coco = json.loads(Path(data["test_annotations"]).read_text())
    gt = task_ground_truth(coco, data["task"], data["test_annotations"])
    category = task_scoring_category(coco["categories"], data["task"], data["test_annotations"])
    chosen = policy_for_model(policy, config["model"])
    infos = gt["images"]
    batches = [infos[start : start + images_per_batch] for start in range(0, len(infos), images_per_batch)]
    mine = list(range(len(batches)))[comm.rank() :: comm.world_size()]
    found = []
    for index in tqdm(mine, desc=f"test ({policy})", disable=not progress):
        images = [
            normalize(read_image(str(Path(data["test_images"]) / info["file_name"])), data["normalization"])
            for info in batches[index]
        ]
        with torch.no_grad():
            detections = detect_images(detector, [image.to(device) for image in images], chosen)
        found.append((index, [{key: value.cpu() for key, value in d.items()} for d in detections]))
    gathered = comm.gather_objects_to_main(found)
    metrics = None
    if gathered is not None:
        by_batch = dict(pair for shard in gathered for pair in shard)
        detections = [d for index in range(len(batches)) for d in by_batch[index]]
        out_dir.mkdir(parents=True, exist_ok=True)
        results = write_coco_results(
            detections, [info["id"] for info in infos], out_dir / f"results_{policy}.json", (category,)
        )
        metrics = evaluate(gt, results, max_dets=1000)
        (out_dir / f"metrics_{policy}.json").write_text(json.dumps(metrics, indent=2))
        (out_dir / f"metrics_{policy}.txt").write_text(format_report(metrics, EvalParams.tinyperson(1000)))
    return comm.broadcast_from_main(metrics)
