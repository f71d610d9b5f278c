"""Evaluation of a detector on the full test images of a config: tiled inference with a merge policy,
a COCO results json, and the TinyPerson metrics."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from tinyfast.data.annotations import read_json, task_ground_truth, task_scoring_category
from tinyfast.data.errors import DataError
from tinyfast.data.transforms import normalize, read_image
from tinyfast.evaluation import EvalParams, evaluate, format_report
from tinyfast.modeling.build import policy_for_model
from tinyfast.tiling import MergePolicy, TileDetector, detect_images, write_coco_results
from tinyfast.utils import comm
from tinyfast.utils.prefetch import prefetch_to_device


@dataclass(frozen=True)
class TestSet:
    """The test images of a config: their ground truth with the task applied (`images` in file order) and
    the category id detections are written with."""

    __test__ = False  # not a pytest class

    ground_truth: dict
    category: int
    data: Mapping

    @property
    def images(self) -> list[dict]:
        return self.ground_truth["images"]

    def read(self, info: dict) -> torch.Tensor:
        """The image `info` names, decoded and normalised as the config says."""
        path = Path(self.data["test_images"]) / info["file_name"]
        return normalize(read_image(str(path)), self.data["normalization"])

    def subset(self, indices: Sequence[int]) -> TestSet:
        """The images at `indices` and their annotations only."""
        infos = [self.images[k] for k in indices]
        kept = {info["id"] for info in infos}
        annotations = [a for a in self.ground_truth["annotations"] if a["image_id"] in kept]
        return TestSet(
            {**self.ground_truth, "images": infos, "annotations": annotations}, self.category, self.data
        )


def load_test_set(data: Mapping) -> TestSet:
    """The `[data]` section's test set (`test_annotations`, `test_images`, `task`, `normalization`)."""
    path = Path(data["test_annotations"])
    coco = _read_test_annotations(path)
    return TestSet(
        task_ground_truth(coco, data["task"], str(path)),
        task_scoring_category(coco["categories"], data["task"], str(path)),
        data,
    )


def detect_batches(
    detector: TileDetector,
    batches: Iterable[tuple[int, Sequence[torch.Tensor]]],
    inference: TiledInference,
    device: torch.device | str = "cpu",
    read_ahead: int = 2,
) -> Iterable[tuple[int, list[dict[str, torch.Tensor]]]]:
    """The test-set inference loop: for each `(index, images)` batch, `inference` on `device`, the
    detections (on the CPU) of every image, as the batches come. The next `read_ahead` batches are read
    (iterating `batches` decodes them) and moved to `device` in a background thread meanwhile
    (`tinyfast.utils.prefetch`; 0: one at a time, in this thread)."""
    for index, images in prefetch_to_device(((i, list(b)) for i, b in batches), device, read_ahead):
        with torch.no_grad():
            detections = inference(detector, images)
        yield index, [{key: value.cpu() for key, value in d.items()} for d in detections]


def _read_test_annotations(path: Path) -> dict:
    """The test json (`read_json`'s errors name the file), checked as far as the test set reads it."""
    coco = read_json(path)
    lists = ("images", "annotations")
    if not isinstance(coco, dict) or not all(isinstance(coco.get(key), list) for key in lists):
        raise DataError(f"{path}: not a COCO json (needs 'images' and 'annotations' lists)")
    for key in lists:
        bad = next((i for i, entry in enumerate(coco[key]) if not isinstance(entry, dict)), None)
        if bad is not None:
            raise DataError(f"{path}: {key}[{bad}] is not an object")
    bad = next((i for i, ann in enumerate(coco["annotations"]) if "category_id" not in ann), None)
    if bad is not None:
        raise DataError(f"{path}: annotations[{bad}] has no 'category_id'")
    return coco


@dataclass(frozen=True)
class TiledInference:
    """How a config's model sees full images: its merge policy and the `detect_images` options, from the
    `[test]` section (`tile`, `overlap`, `scales`, `flips`, `truncated`, `max_per_img`, `tile_batch_size`)."""

    policy: MergePolicy
    options: dict

    def __call__(self, detector, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        return detect_images(detector, images, self.policy, **self.options)


def tiled_inference(config: dict, policy: str | None = None) -> TiledInference:
    """The tiled inference of `config` with merge policy `policy` (default: `test.policy`)."""
    test = config["test"]  # checked by the config schema (`tinyfast.engine.config.TestConfig`)
    chosen = policy_for_model(
        policy or test["policy"],
        config["model"],
        max_per_img=test["max_per_img"] or None,
        truncated=test["truncated"],
    )
    options = {
        "tile": tuple(test["tile"]),
        "overlap": tuple(test["overlap"]),
        "scales": tuple(test["scales"]),
        "flips": bool(test["flips"]),
        "tile_batch_size": test["tile_batch_size"],
    }
    return TiledInference(chosen, options)


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
    test_set = load_test_set(config["data"])
    inference = tiled_inference(config, policy)
    infos = test_set.images
    batches = [infos[start : start + images_per_batch] for start in range(0, len(infos), images_per_batch)]
    mine = list(range(len(batches)))[comm.rank() :: comm.world_size()]
    read = ((index, [test_set.read(info) for info in batches[index]]) for index in mine)
    found = list(
        tqdm(
            detect_batches(detector, read, inference, device),
            total=len(mine),
            desc=f"test ({policy})",
            disable=not progress,
        )
    )
    gathered = comm.gather_objects_to_main(found)
    metrics = None
    if gathered is not None:
        by_batch = dict(pair for shard in gathered for pair in shard)
        detections = [d for index in range(len(batches)) for d in by_batch[index]]
        out_dir.mkdir(parents=True, exist_ok=True)
        results = write_coco_results(
            detections,
            [info["id"] for info in infos],
            out_dir / f"results_{policy}.json",
            (test_set.category,),
        )
        metrics = evaluate(test_set.ground_truth, results, max_dets=1000)
        (out_dir / f"metrics_{policy}.json").write_text(json.dumps(metrics, indent=2))
        (out_dir / f"metrics_{policy}.txt").write_text(format_report(metrics, EvalParams.tinyperson(1000)))
    return comm.broadcast_from_main(metrics)
