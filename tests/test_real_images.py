"""The rpi640 configs (boxes and points) train on the real images of ../shared/data/tinyperson-rpi640 (a
few iterations each, on a handful of images; skipped when the data set is absent)."""

import json
from pathlib import Path

import pytest

from tinyfast import train as train_cli
from tinyfast.data.convert import main as convert_main

RPI640 = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyperson-rpi640"

pytestmark = pytest.mark.skipif(not RPI640.is_dir(), reason="../shared/data/tinyperson-rpi640 not present")


def first_images(source: Path, count: int, target: Path) -> Path:
    data = json.loads(source.read_text())
    data["images"] = data["images"][:count]
    kept = {image["id"] for image in data["images"]}
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] in kept]
    target.write_text(json.dumps(data))
    return target


@pytest.fixture(scope="module")
def labels(tmp_path_factory):
    folder = tmp_path_factory.mktemp("rpi640")
    for split in ("train", "valid"):
        assert convert_main(["yolo", str(RPI640 / split), "--out", str(folder / f"{split}.json")]) == 0
    return first_images(folder / "train.json", 3, folder / "train3.json"), first_images(
        folder / "valid.json", 1, folder / "valid1.json"
    )


def train_briefly(config: str, labels, run_dir: Path) -> int:
    train, valid = labels
    return train_cli.main(
        [
            config,
            f"run_dir={run_dir}",
            f"data.train_annotations={str(train)!r}",
            f"data.test_annotations={str(valid)!r}",
            "train.epochs=1",
            "train.steps=[]",
            "train.max_iters_per_epoch=2",
            "train.warmup_iters=1",
            "train.workers=0",
            "--no-progress",
        ]
    )


@pytest.mark.parametrize("config", ["fcos_rpi640", "retinanet_rpi640", "faster_fpn_rpi640"])
def test_each_rpi640_config_trains_and_evaluates_on_real_images(config, labels, tmp_path):
    assert train_briefly(config, labels, tmp_path) == 0
    metrics = json.loads((tmp_path / "metrics_during.json").read_text())
    assert 0.0 <= metrics["AP50_tiny"] <= 1.0


def test_the_point_configs_train_on_the_real_images_coarse_points(labels, tmp_path):
    assert train_briefly("cpr_rpi640", labels, tmp_path / "cpr") == 0
    refine = json.loads((tmp_path / "cpr" / "metrics_refine.json").read_text())
    assert refine["mean_distance_input"] > 0
    assert train_briefly("p2pnet_rpi640", labels, tmp_path / "p2pnet") == 0
    points = json.loads((tmp_path / "p2pnet" / "metrics_points.json").read_text())
    assert 0.0 <= points["AP1.0_tiny"] <= 1.0
