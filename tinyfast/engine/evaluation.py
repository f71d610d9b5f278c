"""Evaluation of a model on the full test images of a config, by its kind (`evaluate_model`): a box
detector with tiled inference, a merge policy, a COCO results json and the TinyPerson metrics; a point
localiser with the point metrics (`evaluate_localiser`); a point refiner (CPR) by how far it moves the test
points towards the box centres (`tinyfast.engine.refinement.evaluate_refiner`)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import torch
from tqdm import tqdm

from tinyfast.data.annotations import read_json, task_ground_truth, task_scoring_category
from tinyfast.data.errors import DataError
from tinyfast.data.points import point_json
from tinyfast.data.transforms import normalize, read_image
from tinyfast.engine.refinement import format_refine_report, refine_point_json
from tinyfast.evaluation import EvalParams, evaluate, evaluate_points, format_point_report, format_report
from tinyfast.modeling.build import model_kind, policy_for_model
from tinyfast.modeling.inference import prepare_for_inference
from tinyfast.tiling import MergePolicy, TileDetector, detect_images, locate_images, write_coco_results
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
        """The image `info` names, decoded (uint8 RGB CHW; tiled inference normalises its tiles)."""
        return read_image(str(Path(self.data["test_images"]) / info["file_name"]))

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
    `[test]` section (`tile`, `overlap`, `scales`, `flips`, `truncated`, `max_per_img`, `tile_batch_size`).
    Images are raw pixels (uint8 RGB CHW, as decoded); each batch of tiles is normalised as
    `data.normalization` says just before the detector, so that `test`, `predict` and the training-end
    evaluation give the network the same values (a test-time scale resizes the raw pixels) and no full image
    is held as floats."""

    policy: MergePolicy
    options: dict
    normalization: str

    def __call__(self, detector: TileDetector, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        return detect_images(normalising(detector, self.normalization), images, self.policy, **self.options)


def normalising(on_tiles: Callable, normalization: str) -> Callable:
    """`on_tiles(tiles, ...)` (a `TileDetector`, a localiser's `locate`) fed raw 0-255 tiles: each batch
    normalised as `normalization` says first."""

    def normalised(tiles: torch.Tensor, *rest) -> list[dict[str, torch.Tensor]]:
        return on_tiles(normalize(tiles, normalization), *rest)

    return normalised


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
    return TiledInference(chosen, options, config["data"]["normalization"])


@dataclass(frozen=True)
class TiledLocation:
    """How a point model's config sees full images: the `locate_images` options of its `[test]` section
    (the box grid's keys, `policy`, `point_merge_distance`, `max_per_img`); raw pixels in, each batch of
    tiles normalised as `TiledInference` does."""

    options: dict
    normalization: str

    def __call__(self, localiser, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        normalised = SimpleNamespace(locate=normalising(localiser.locate, self.normalization))
        return locate_images(normalised, images, **self.options)


def tiled_location(config: dict) -> TiledLocation:
    """The tiled inference of the point model of `config`."""
    test = config["test"]
    return TiledLocation(
        {
            "policy": test["policy"],
            "tile": tuple(test["tile"]),
            "overlap": tuple(test["overlap"]),
            "scales": tuple(test["scales"]),
            "flips": bool(test["flips"]),
            "tile_batch_size": test["tile_batch_size"],
            "distance_threshold": test["point_merge_distance"],
            "max_per_img": test["max_per_img"] or None,
        },
        config["data"]["normalization"],
    )


def infer_test_set(
    detector, inference, test_set: TestSet, *, images_per_batch: int, device, desc: str, progress: bool
) -> list[dict[str, torch.Tensor]] | None:
    """`inference(detector, images)` on every test image, in batches of `images_per_batch` read ahead
    (`detect_batches`); the detections of each image in the order of the test set, on the main process
    (None on the others).

    In a distributed run every process infers its share of the batches (batch k goes to rank k mod world
    size) and the main one gathers them. The batches are those of a single process, so the results are the
    same as one process's when the processes compute as it does (on CPU: the same number of threads per
    process)."""
    infos = test_set.images
    batches = [infos[start : start + images_per_batch] for start in range(0, len(infos), images_per_batch)]
    mine = list(range(len(batches)))[comm.rank() :: comm.world_size()]
    read = ((index, [test_set.read(info) for info in batches[index]]) for index in mine)
    found = list(
        tqdm(
            detect_batches(detector, read, inference, device),
            total=len(mine),
            desc=desc,
            disable=not progress,
        )
    )
    gathered = comm.gather_objects_to_main(found)
    if gathered is None:
        return None
    by_batch = dict(pair for shard in gathered for pair in shard)
    return [d for index in range(len(batches)) for d in by_batch[index]]


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
    `AP50_tiny`). In a distributed run the processes share the batches (`infer_test_set`); the main one
    writes and evaluates once, and every process returns its metrics."""
    test_set = load_test_set(config["data"])
    detections = infer_test_set(
        detector, tiled_inference(config, policy), test_set, images_per_batch=images_per_batch,
        device=device, desc=f"test ({policy})", progress=progress,
    )  # fmt: skip
    metrics = None
    if detections is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        results = write_coco_results(
            detections,
            [info["id"] for info in test_set.images],
            out_dir / f"results_{policy}.json",
            (test_set.category,),
        )
        metrics = evaluate(test_set.ground_truth, results, max_dets=1000)
        (out_dir / f"metrics_{policy}.json").write_text(json.dumps(metrics, indent=2))
        (out_dir / f"metrics_{policy}.txt").write_text(format_report(metrics, EvalParams.tinyperson(1000)))
    return comm.broadcast_from_main(metrics)


def evaluate_model(
    model: torch.nn.Module,
    config: dict,
    out_dir: Path,
    policy: str = "during",
    *,
    progress: bool = True,
    images_per_batch: int = 2,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """The test-set evaluation of `model` (a trained copy is prepared for inference, `model` is left as it
    is) by its kind: `evaluate_detector` with merge policy `policy` for a box detector,
    `evaluate_localiser` for a point localiser, `evaluate_refiner` for CPR."""
    kind = model_kind(config["model"])
    # test.compile compiles a box detector's tile networks; the point models run uncompiled.
    compile_networks = config["test"]["compile"] and kind == "detector"
    prepared = prepare_for_inference(model, config["test"]["precision"], device, compile_networks)
    options = {"progress": progress, "images_per_batch": images_per_batch, "device": device}
    if kind == "localiser":
        return evaluate_localiser(prepared, config, out_dir, **options)
    if kind == "refiner":
        return evaluate_refiner(prepared, config, out_dir, progress=progress, device=device)
    return evaluate_detector(prepared.detect_tiles, config, out_dir, policy, **options)


def point_results(
    found: Sequence[dict[str, torch.Tensor]], image_ids: Sequence[int], category: int
) -> list[dict]:
    """A COCO results list of points, `{"image_id", "category_id", "point": [x, y], "score"}`: every label
    under the task's one scored category, as the box results."""
    return [
        {"image_id": image_id, "category_id": category, "point": point, "score": score}
        for image_id, points in zip(image_ids, found, strict=True)
        for point, score in zip(points["points"].tolist(), points["scores"].tolist(), strict=True)
    ]


def evaluate_localiser(
    localiser,
    config: dict,
    out_dir: Path,
    *,
    progress: bool = True,
    images_per_batch: int = 2,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Runs the point model `localiser` (weights on `device`) on every test image (tiled as the `[test]`
    section says: `tinyfast.tiling.locate_images`), writes `results_points.json` and `metrics_points.json`
    (+ `.txt`) into `out_dir` and returns the point metrics (`evaluate_points`: headline `AP1.0_tiny`).
    Distributed runs share the batches as `evaluate_detector` does."""
    test_set = load_test_set(config["data"])
    points = infer_test_set(
        localiser, tiled_location(config), test_set, images_per_batch=images_per_batch, device=device,
        desc="test (points)", progress=progress,
    )  # fmt: skip
    metrics = None
    if points is not None:
        results = point_results(points, [info["id"] for info in test_set.images], test_set.category)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "results_points.json").write_text(json.dumps(results))
        metrics = evaluate_points(test_set.ground_truth, results)
        (out_dir / "metrics_points.json").write_text(json.dumps(metrics, indent=2))
        (out_dir / "metrics_points.txt").write_text(format_point_report(metrics))
    return comm.broadcast_from_main(metrics)


def evaluate_refiner(
    refiner, config: dict, out_dir: Path, *, progress: bool = True, device: torch.device | str = "cpu"
) -> dict[str, float]:
    """Refines the points of the test images (`data.points` applied to the test json, as to the training
    json) with the point refiner `refiner` (CPR), writes them to `refined_test.json` and the distances to
    `metrics_refine.json` in `out_dir`, and returns the latter (`mean_distance_input`,
    `mean_distance_refined`: pixels to the box centres; `refined_share`: the share of points moved)."""
    data = config["data"]
    if comm.rank() != 0:
        return comm.broadcast_from_main(None)
    refined, report = refine_point_json(
        refiner,
        point_json(data["test_annotations"], data["points"], data["points_seed"]),
        data["test_images"],
        normalization=data["normalization"],
        task=data["task"],
        device=device,
        progress=progress,
        name=str(data["test_annotations"]),
        image_scale=data["image_scale"],
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "refined_test.json").write_text(json.dumps(refined, separators=(",", ":")))
    (out_dir / "metrics_refine.json").write_text(json.dumps(report, indent=2))
    return comm.broadcast_from_main(report)


def format_metrics(metrics: Mapping[str, float], kind: str) -> str:
    """`evaluate_model`'s metrics of a model of `kind` as the table (or line) its evaluation prints."""
    if kind == "localiser":
        return format_point_report(metrics)
    if kind == "refiner":
        return format_refine_report(metrics)
    return format_report(metrics, EvalParams.tinyperson(1000))
