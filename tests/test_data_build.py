"""`data.root` is the one place a dataset lives: the dataset paths of a config resolve against it."""

import json
import os

import pytest
import torch
from torchvision.io import write_png

from tinyfast.data.build import DATASET_PATHS, DataConfig, resolve_dataset_paths, train_dataset
from tinyfast.engine.config import CONFIG_DIR, load_config


def test_relative_paths_resolve_inside_the_root_and_the_others_stay():
    data = {
        "root": "/data/tiny_set",
        "train_annotations": "annotations/tiny_set_train.json",
        "test_annotations": "/elsewhere/test.json",
        "train_images": "./local/train",
        "test_images": "../shared/test",
        "task": "all",
    }
    resolved = resolve_dataset_paths(data)
    assert resolved == {
        **data,
        "train_annotations": "/data/tiny_set/annotations/tiny_set_train.json",
    }
    assert resolve_dataset_paths(resolved) == resolved  # resolving twice changes nothing
    assert resolve_dataset_paths({**data, "root": ""}) == {**data, "root": ""}


def test_a_relative_root_is_taken_from_the_working_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    resolved = resolve_dataset_paths({"root": "runs/synthetic", "train_images": "images", "test_images": ""})
    assert resolved["train_images"] == os.path.join(str(tmp_path), "runs", "synthetic", "images")
    assert resolved["test_images"] == ""


@pytest.mark.parametrize("name", ["fcos_tinyperson", "retinanet_tinyperson", "faster_fpn_tinyperson"])
def test_the_tinyperson_configs_read_the_standard_layout_under_data_root(name, tmp_path):
    config = load_config(CONFIG_DIR / f"{name}.toml", [f"data.root={tmp_path}"])
    assert config["data"]["train_annotations"] == str(tmp_path / "annotations" / "tiny_set_train.json")
    assert config["data"]["test_annotations"] == str(tmp_path / "annotations" / "tiny_set_test_all.json")
    assert config["data"]["train_images"] == str(tmp_path / "train")
    assert config["data"]["test_images"] == str(tmp_path / "test")


def test_the_rpi640_configs_take_their_images_from_data_root(tmp_path):
    for name in ("fcos_rpi640", "retinanet_rpi640", "faster_fpn_rpi640"):
        data = load_config(CONFIG_DIR / f"{name}.toml", [f"data.root={tmp_path}"])["data"]
        assert data["train_images"] == str(tmp_path / "train" / "images")
        assert data["test_images"] == str(tmp_path / "valid" / "images")
        assert data["train_annotations"] == "./runs/rpi640/train.json"  # converted labels: the working folder


def test_every_shipped_dataset_path_is_inside_its_root_or_marked_as_the_working_folders():
    for path in sorted(CONFIG_DIR.glob("*.toml")):
        data = load_config(path)["data"]
        for key in DATASET_PATHS:
            value = data[key]
            inside = data["root"] and value.startswith(os.path.abspath(data["root"]) + os.sep)
            assert not value or inside or value.startswith(("./", "../")), (path.name, key, value)


def test_training_on_a_tinyperson_copy_needs_only_data_root(tmp_path):

    (tmp_path / "annotations").mkdir()
    (tmp_path / "train").mkdir()
    write_png(torch.zeros(3, 100, 120, dtype=torch.uint8), str(tmp_path / "train" / "a.png"))
    coco = {
        "images": [{"id": 1, "file_name": "a.png", "width": 120, "height": 100}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 8, 12], "area": 96,
                         "iscrowd": 0}],
        "categories": [{"id": 1, "name": "sea_person"}, {"id": 2, "name": "earth_person"}],
    }  # fmt: skip
    (tmp_path / "annotations" / "tiny_set_train.json").write_text(json.dumps(coco))
    config = load_config(CONFIG_DIR / "fcos_tinyperson.toml", [f"data.root={tmp_path}"])
    dataset = train_dataset(DataConfig.from_config(config["data"]))
    assert len(dataset) == 1


def test_image_scale_multiples_train_on_the_cuts_at_every_scale(tiny_synthetic_set):
    overrides = [
        f"data.root={tiny_synthetic_set}",
        "data.image_scale=[1.5, 1.0]",
        "data.sub_size=[160, 128]",
        "data.min_objects_per_cut=1",
    ]
    config = load_config(CONFIG_DIR / "fcos_synthetic.toml", overrides)["data"]

    def items(*multiples):
        return train_dataset(DataConfig.from_config({**config, "image_scale_multiples": list(multiples)}))

    at_1, at_1_2, both = items(1.0), items(1.2), items(1.0, 1.2)
    assert len(at_1_2) > len(at_1) and len(both) == len(at_1) + len(at_1_2)
    # The cuts at 1x, then those at 1.2x.
    pairs = [(0, at_1, 0), (len(at_1), at_1_2, 0), (len(both) - 1, at_1_2, len(at_1_2) - 1)]
    for index, alone, index_alone in pairs:
        torch.manual_seed(0)
        image, target = both[index]
        torch.manual_seed(0)
        expected, expected_target = alone[index_alone]
        assert torch.equal(image, expected) and torch.equal(target["boxes"], expected_target["boxes"])
    assert at_1_2[0][1]["orig_size"] != at_1[0][1]["orig_size"]  # cut from the image resized by (1.8, 1.2)
    with pytest.raises(ValueError, match="data.image_scale_multiples = \\[1.0, 1.2\\] and data.scale_match"):
        DataConfig.from_config(
            {**config, "image_scale_multiples": [1.0, 1.2], "scale_match": "gaussian",
             "scale_match_gaussian": [1.0, 0.5]}
        )  # fmt: skip
    with pytest.raises(ValueError, match="data.image_scale_multiples"):
        DataConfig.from_config({**config, "image_scale_multiples": []})
