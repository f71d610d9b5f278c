"""Scale Match in the training data: the `[data]` keys, the dataset that resizes every item with the item's
own generator, the COCO-like source read with a category filter."""

import json
import re
import shutil

import numpy as np
import pytest
import torch

from tinyfast.data.annotations import load_annotations
from tinyfast.data.build import DataConfig, train_dataset
from tinyfast.data.errors import DataError
from tinyfast.data.sampling import EpochBatchSampler, ItemKey, SeededItems, make_training_loader
from tinyfast.data.scale_match import (
    ScaleMatch,
    ScaleMatchedDataset,
    ScaleMatchResize,
    mean_object_size,
    object_sizes,
)
from tinyfast.data.synthetic import generate, generate_source
from tinyfast.engine.config import DEFAULT_CONFIG, load_config


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    """The tiny target set and an 8-image source set beside it."""
    root = tmp_path_factory.mktemp("scale_match_sets")
    generate(root, "tiny", seed=0)
    generate_source(root, num_images=8, seed=0)
    return root


def source_data(root, *overrides) -> DataConfig:
    config = load_config(
        DEFAULT_CONFIG,
        [
            f"data.root={root}",
            "data.train_annotations=annotations/source.json",
            "data.train_images=images",
            "data.scale_match_target=annotations/train.json",
            "data.train_categories=['person']",
            "data.erase=false",
            "data.min_objects_per_cut=1",
            "data.sub_size=[320, 256]",
            "data.image_scale=1.0",  # the source as it is: Scale Match alone sets its sizes
            *overrides,
        ],
    )
    return DataConfig.from_config(config["data"])


@pytest.mark.parametrize("kind", ["sm", "msm", "gaussian"])
def test_each_item_is_resized_by_its_own_draw_the_same_for_the_same_seed_epoch_and_index(sets, kind):
    data = source_data(sets, f"data.scale_match={kind}")
    assert data.scale_match_target == str(sets / "annotations" / "train.json")  # resolved under data.root
    dataset = train_dataset(data, seed=3)
    assert isinstance(dataset, ScaleMatchedDataset) and len(dataset) == 8  # whole images, not cuts
    items = SeededItems(dataset)
    first = items[ItemKey(2, 11, epoch=4)]
    again = items[ItemKey(2, 11, epoch=4)]
    assert torch.equal(first[0], again[0]) and torch.equal(first[1]["boxes"], again[1]["boxes"])
    assert first[1]["scale"] == again[1]["scale"] == train_dataset(data, seed=3).get(2, 4)[1]["scale"]
    for image, target in (items[ItemKey(index, 0, 0)] for index in range(len(dataset))):
        height, width = image.shape[1:]
        assert (width, height) <= (320, 256) or (width <= 320 and height <= 256)
        assert target["size"] == (height, width) and 0.1 <= target["scale"] <= 1.0
        boxes = target["boxes"]
        assert len(boxes) == len(target["labels"]) and (target["labels"] == 0).all()
        assert (boxes[:, 2:] - boxes[:, :2] >= 2).all()
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= width).all() and (boxes[:, 3] <= height).all()
    if kind == "sm":  # drawn: another epoch or run seed, another scale for most images
        scales = {train_dataset(data, seed=3).get(2, epoch)[1]["scale"] for epoch in range(6)}
        assert len(scales) > 1
    else:  # monotone: the scale depends only on the image
        assert len({dataset.get(2, epoch)[1]["scale"] for epoch in range(3)}) == 1


def test_scale_matched_persons_have_the_target_sizes(sets):
    data = source_data(sets, "data.scale_match=sm", "data.sub_size=[4000, 4000]")  # no crop
    dataset = train_dataset(data, seed=0)
    low, high = np.quantile(object_sizes(load_annotations(sets / "annotations" / "train.json")), [0.02, 0.98])
    sizes = [mean_object_size(dataset.get(i, e)[1]["boxes"]) for i in range(len(dataset)) for e in range(3)]
    sizes = [s for s in sizes if s is not None]
    assert len(sizes) > 12 and low <= np.median(sizes) <= high


def test_large_images_are_cropped_to_sub_size_keeping_the_boxes_inside(sets):
    data = source_data(sets, "data.scale_match=sm", "data.scale_match_range=[0.9, 1.0]",
                       "data.sub_size=[160, 128]")  # fmt: skip
    dataset = train_dataset(data, seed=0)
    offsets = set()
    for index in range(len(dataset)):
        image, target = dataset.get(index, 0)
        assert image.shape[1:] == (128, 160) and target["size"] == (128, 160)
        offsets.add(target["crop_offset"])
        boxes, ignore = target["boxes"], target["boxes_ignore"]
        for kept in (boxes, ignore):
            assert (kept[:, :2] >= 0).all() and (kept[:, 2] <= 160).all() and (kept[:, 3] <= 128).all()
            assert (kept[:, 2:] > kept[:, :2]).all()
    assert len(offsets) > 1  # drawn positions


def test_boxes_clipped_to_nothing_are_left_out_before_the_scale_is_chosen(sets, tmp_path):
    coco = json.loads((sets / "annotations" / "source.json").read_text())
    first = coco["images"][0]
    # Inside the loader's 1 px tolerance but outside the image: clipped by the dataset to zero width.
    coco["annotations"].append({"id": 10**6, "image_id": first["id"], "category_id": 1, "iscrowd": 0,
                                "bbox": [first["width"] + 0.0, 10.0, 0.5, 40.0]})  # fmt: skip
    path = tmp_path / "edge.json"
    path.write_text(json.dumps(coco))
    data = source_data(sets, "data.scale_match=msm", f"data.train_annotations={path}")
    dataset = train_dataset(data)
    image, target = dataset.get(0, 0)
    inner = dataset.dataset[0][1]
    assert ((inner["boxes"][:, 2] - inner["boxes"][:, 0]) == 0).any()  # the dataset clipped it to nothing
    assert len(target["boxes"]) <= len(inner["boxes"]) - 1


def test_the_training_loader_gives_the_same_scale_matched_batches_with_workers(sets):
    dataset = train_dataset(source_data(sets, "data.scale_match=sm"), seed=5)
    sampler = EpochBatchSampler(len(dataset), 2, seed=5, max_batches=2)
    sampler.set_epoch(3)
    plain = list(make_training_loader(dataset, sampler, num_workers=0))
    workers = list(make_training_loader(dataset, sampler, num_workers=2))
    for ours, theirs in zip(plain, workers, strict=True):
        assert torch.equal(ours.batch.images, theirs.batch.images)
        assert [t["scale"] for t in ours.batch.targets] == [t["scale"] for t in theirs.batch.targets]


def test_the_category_filter_keeps_persons_and_crowds_become_ignore_regions(sets):
    dataset = train_dataset(source_data(sets))  # scale_match = "none": the usual cuts
    coco = json.loads((sets / "annotations" / "source.json").read_text())
    assert {c["name"] for c in dataset.annotations.categories} == {"person"}
    kept = sum(len(a) for a in dataset.annotations.annotations.values())
    assert kept == sum(a["category_id"] == 1 for a in coco["annotations"])
    crowds = [a for a in coco["annotations"] if a["iscrowd"]]
    assert crowds
    image_id = crowds[0]["image_id"]
    anns = dataset.annotations.annotations_of(image_id)
    targets = dataset.annotations.targets(anns, "all")
    assert len(targets.ignore_boxes) == sum(a["image_id"] == image_id for a in crowds)
    everything = train_dataset(source_data(sets, "data.train_categories=[]"))
    assert len(everything.annotations.categories) == 2


TARGET = "data.scale_match_target"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data.scale_match=sm", "data.scale_match_target="], f"data.scale_match = 'sm' needs {TARGET}"),
        (["data.scale_match=gaussian", f"{TARGET}="], f"data.scale_match = 'gaussian' needs {TARGET}"),
        (["data.scale_match=fast"], "data.scale_match must be one of ['none', 'sm', 'msm', 'gaussian']"),
        (["data.scale_match_range=[1.0, 0.5]"], "data.scale_match_range must be [low, high] with low < high"),
        (["data.scale_match_range=[0, 0.5]"], "data.scale_match_range[0] must be a finite number > 0"),
        (["data.scale_match_gaussian=[2.0]"], "data.scale_match_gaussian must be [] (fitted"),
        (["data.scale_match_gaussian=[2.0, 0]"], "data.scale_match_gaussian must be [] (fitted"),
        (["data.scale_match_except_rate=1"], "data.scale_match_except_rate must be a finite number < 1"),
        (["data.scale_match_bins=2"], "data.scale_match_bins must be an int >= 3"),
        (["data.train_categories='person'"], "data.train_categories must be an array"),
    ],
)  # fmt: skip
def test_bad_scale_match_settings_are_one_error_naming_the_key(sets, overrides, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}"):
        source_data(sets, *overrides)


def test_bad_files_and_categories_are_data_errors_naming_them(sets, tmp_path):
    missing = tmp_path / "nowhere.json"
    with pytest.raises(DataError, match=re.escape(f"{missing}: annotation file not found")):
        train_dataset(source_data(sets, "data.scale_match=sm", f"data.scale_match_target={missing}"))
    with pytest.raises(DataError, match=r"no category named \['horse'\]"):
        train_dataset(source_data(sets, "data.train_categories=['horse']"))
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"images": [], "annotations": [], "categories": [{"id": 1, "name": "p"}]}))
    with pytest.raises(DataError, match=r"target_annotations .*empty\.json.*no object boxes"):
        train_dataset(source_data(sets, "data.scale_match=sm", f"data.scale_match_target={empty}"))


def test_bad_annotations_stop_the_dataset_or_are_skipped_and_counted(sets, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(sets, root)
    path = root / "annotations" / "source.json"
    coco = json.loads(path.read_text())
    coco["annotations"][0]["bbox"][2] = 0.0
    path.write_text(json.dumps(coco))
    bad_id = coco["annotations"][0]["id"]
    with pytest.raises(DataError, match=f"annotation id {bad_id}: non-positive box size"):
        train_dataset(source_data(root))
    with pytest.warns(UserWarning, match="skipped 1 bad annotations: 1 non-positive box size"):
        train_dataset(source_data(root, "data.skip_bad_annotations=true"))


def test_the_dataset_checks_its_crop_size(sets):
    inner = train_dataset(source_data(sets, "data.scale_match=sm")).dataset
    resize = ScaleMatchResize(ScaleMatch(sets / "annotations" / "train.json"))
    with pytest.raises(ValueError, match="crop_size must be"):
        ScaleMatchedDataset(inner, resize, 0, (0, 10))
