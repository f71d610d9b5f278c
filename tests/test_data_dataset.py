import json

import numpy as np
import pytest
import torch
import torchvision

from tinyfast.data.annotations import load_annotations
from tinyfast.data.corners import crop_boxes, cut_annotation_set, to_corner_set
from tinyfast.data.dataset import TinyPersonDataset, make_loader
from tinyfast.data.errors import DataError
from tinyfast.data.synthetic import generate
from tinyfast.data.transforms import (
    NORMALIZATIONS,
    collate,
    normalize,
    paint_mean,
    read_image,
    resized_crop,
)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    paths = generate(root, "tiny", seed=3)
    return root, paths["train"]


def test_full_images_round_trip_to_json(synthetic):
    root, train = synthetic
    data = load_annotations(train)
    dataset = TinyPersonDataset(train, root / "images", train=False, normalization=None)
    assert len(dataset) == len(data.images)  # evaluation mode keeps dense images
    for index in range(len(dataset)):
        image, target = dataset[index]
        info = data.images[index]
        assert target["image_id"] == info.id and target["crop_offset"] == (0, 0)
        assert image.shape == (3, info.height, info.width) and target["orig_size"] == (
            info.height,
            info.width,
        )
        anns = data.annotations_of(info.id)
        positive = ~anns.not_a_person
        np.testing.assert_allclose(target["boxes"].numpy(), anns.boxes[positive], atol=1e-4)
        np.testing.assert_allclose(target["boxes_ignore"].numpy(), anns.boxes[~positive], atol=1e-4)
        # back to json bboxes
        back = [[x1, y1, x2 - x1, y2 - y1] for x1, y1, x2, y2 in target["boxes"].tolist()]
        expected = [
            a["bbox"]
            for a in json.loads(train.read_text())["annotations"]
            if a["image_id"] == info.id and not (a["ignore"] or a["uncertain"])
        ]
        np.testing.assert_allclose(back, expected, atol=1e-4)


def test_training_cuts_follow_the_reference(synthetic):
    root, train = synthetic
    data = load_annotations(train)
    dataset = TinyPersonDataset(train, root / "images", flip_prob=0.0)
    dense = {i.id for i in data.images if data.annotations_of(i.id).is_dense}
    assert dense and not dense & {s.source_id for s in dataset.samples}
    assert all(len(s.boxes) + len(s.ignore_boxes) > 0 for s in dataset.samples)
    for sample in dataset.samples:
        anns = data.annotations_of(sample.source_id)
        kept, index = crop_boxes(anns.boxes, sample.corner, 0.7)
        positive = ~anns.not_a_person[index]
        np.testing.assert_allclose(sample.boxes, kept[positive])
        np.testing.assert_allclose(sample.ignore_boxes, kept[~positive])
    image, target = dataset[0]
    assert image.shape == (3, 512, 640) and target["size"] == (512, 640)


@pytest.mark.parametrize("scale", [2.0, (1.5, 0.75)])
def test_image_scale_resizes_images_and_targets_before_cutting(synthetic, scale):
    root, train = synthetic
    data = load_annotations(train)
    sx, sy = scale if isinstance(scale, tuple) else (scale, scale)
    whole = TinyPersonDataset(train, root / "images", train=False, normalization=None, image_scale=scale)
    for index in (0, 1):
        image, target = whole[index]
        info = data.images[index]
        size = (round(info.height * sy), round(info.width * sx))
        assert image.shape[1:] == size and target["orig_size"] == size
        expected = torchvision.transforms.v2.functional.resize(
            read_image(root / "images" / info.file_name), list(size), antialias=True
        )
        assert (image - expected.float()).abs().max() <= 1  # torchvision rounds between its two passes
        anns = data.annotations_of(info.id)
        factors = np.array([size[1] / info.width, size[0] / info.height] * 2)
        np.testing.assert_allclose(
            target["boxes"].numpy(), anns.boxes[~anns.not_a_person] * factors, atol=1e-3
        )
    cuts = TinyPersonDataset(train, root / "images", flip_prob=0.0, image_scale=scale, sub_size=(320, 256))
    plain = TinyPersonDataset(train, root / "images", flip_prob=0.0, sub_size=(320, 256))
    assert (len(cuts) > len(plain)) == (sx * sy > 1)
    assert all(s.corner[2] <= s.image.width and s.corner[3] <= s.image.height for s in cuts.samples)
    image, target = cuts[0]
    assert image.shape[1:] == target["size"]


@pytest.mark.parametrize("scale", [2.0, 1.5, (3.0, 1.6875), (1.0, 2.5), (1.5, 0.75), 0.5])
def test_resized_crop_is_the_crop_of_the_resized_image(scale):
    generator = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (3, 37, 53), dtype=torch.uint8, generator=generator)
    image[:, :, :5] = 255  # saturated edges: the result must stay in range
    sx, sy = scale if isinstance(scale, tuple) else (scale, scale)
    width, height = round(53 * sx), round(37 * sy)
    whole = torchvision.transforms.v2.functional.resize(image, [height, width], antialias=True).float()
    boxes = [(0, 0, width, height), (0, 0, 1, 1), (width - 1, height - 1, width, height)]
    for _ in range(20):
        x1, x2 = sorted(torch.randint(0, width + 1, (2,), generator=generator).tolist())
        y1, y2 = sorted(torch.randint(0, height + 1, (2,), generator=generator).tolist())
        boxes.append((x1, y1, max(x2, x1 + 1), max(y2, y1 + 1)))
    for x1, y1, x2, y2 in boxes:
        crop = resized_crop(image, (width, height), (x1, y1, x2, y2))
        assert crop.dtype == torch.uint8 and crop.shape == (3, y2 - y1, x2 - x1)
        assert (crop.float() - whole[:, y1:y2, x1:x2]).abs().max() <= 1, (x1, y1, x2, y2)
    assert resized_crop(image, (width, height), (3, 2, 3, 9)).shape == (3, 7, 0)


def test_erased_regions_of_a_resized_cut_take_the_whole_regions_mean(synthetic):
    root, train = synthetic
    dataset = TinyPersonDataset(
        train, root / "images", erase=True, normalization=None, flip_prob=0.0, image_scale=1.5
    )
    index, sample = next((i, s) for i, s in enumerate(dataset.samples) if len(s.erase_regions))
    image, _ = dataset[index]
    source = read_image(root / "images" / sample.image.file_name)
    x1, y1, x2, y2 = (int(v) for v in sample.erase_regions[0])
    cx, cy = sample.corner[:2]
    inside = image[:, max(y1 - cy, 0) : y2 - cy, max(x1 - cx, 0) : x2 - cx]
    mean = (
        source[:, round(y1 / 1.5) : round(y2 / 1.5), round(x1 / 1.5) : round(x2 / 1.5)].float().mean((1, 2))
    )
    assert inside.numel() and (inside == inside[:, :1, :1]).all()
    assert (inside[:, 0, 0] - mean).abs().max() <= 3


def test_image_scale_rejects_a_corner_json_and_bad_factors(synthetic, tmp_path):
    root, train = synthetic
    data = load_annotations(train)
    corners = to_corner_set(data, cut_annotation_set(data))
    with pytest.raises(DataError, match="corner json"):
        TinyPersonDataset(corners, root / "images", image_scale=2.0)
    for bad in (0.0, -1.0, float("nan"), (2.0,), (1.0, float("inf"))):
        with pytest.raises(ValueError, match="scale"):
            TinyPersonDataset(train, root / "images", image_scale=bad)


def test_training_on_dense_images_when_asked(synthetic):
    root, train = synthetic
    data = load_annotations(train)
    dense = {i.id for i in data.images if data.annotations_of(i.id).is_dense}
    reference = TinyPersonDataset(train, root / "images", flip_prob=0.0)
    with_dense = TinyPersonDataset(train, root / "images", flip_prob=0.0, skip_dense=False)
    extra = [s for s in with_dense.samples if s.source_id in dense]
    assert extra and len(with_dense) == len(reference) + len(extra)
    assert sum(len(s.boxes) for s in extra) > 100


def test_min_objects_leaves_out_the_items_with_fewer_persons(synthetic):
    root, train = synthetic
    every = TinyPersonDataset(train, root / "images", flip_prob=0.0, skip_dense=False)
    counts = sorted(len(s.boxes) for s in every.samples)
    threshold = counts[len(counts) // 2] + 1
    crowded = TinyPersonDataset(
        train, root / "images", flip_prob=0.0, skip_dense=False, min_objects=threshold
    )
    expected = [s.corner for s in every.samples if len(s.boxes) >= threshold]
    assert 0 < len(crowded) < len(every) and [s.corner for s in crowded.samples] == expected
    whole = TinyPersonDataset(train, root / "images", train=False)
    assert len(TinyPersonDataset(train, root / "images", train=False, min_objects=0)) == len(whole)
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="min_objects must be an int >= 0"):
            TinyPersonDataset(train, root / "images", min_objects=bad)


def test_corner_json_export_gives_the_same_items(synthetic, tmp_path):
    root, train = synthetic
    data = load_annotations(train)
    corner_set = to_corner_set(data, cut_annotation_set(data, erase=True))
    corner_set.save(tmp_path / "corner.json")
    exported = json.loads((tmp_path / "corner.json").read_text())
    assert all(len(img["corner"]) == 4 and img["width"] == 640 for img in exported["images"])
    from_json = TinyPersonDataset(tmp_path / "corner.json", root / "images", flip_prob=0.0)
    on_the_fly = TinyPersonDataset(train, root / "images", erase=True, flip_prob=0.0)
    assert len(from_json) == len(on_the_fly) > 0
    for index in (0, len(on_the_fly) // 2, len(on_the_fly) - 1):
        (a, ta), (b, tb) = from_json[index], on_the_fly[index]
        assert torch.equal(a, b)
        for key in ("boxes", "labels", "boxes_ignore"):
            assert torch.equal(ta[key], tb[key])
        assert (ta["image_id"], ta["crop_offset"]) == (tb["image_id"], tb["crop_offset"])


def test_erase_paints_region_mean():
    image = torch.arange(3 * 20 * 30, dtype=torch.uint8).reshape(3, 20, 30)
    out = paint_mean(image, torch.tensor([[2.0, 3.0, 6.5, 8.0]]))
    region = image[:, 3:8, 2:7].float().mean(dim=(1, 2)).round().to(torch.uint8)
    assert torch.equal(out[:, 3:8, 2:7], region.view(3, 1, 1).expand(3, 5, 5))
    assert torch.equal(out[:, 10:], image[:, 10:])


def test_erase_in_dataset_blanks_uncertain_figures(synthetic):
    root, train = synthetic
    dataset = TinyPersonDataset(train, root / "images", erase=True, normalization=None, flip_prob=0.0)
    sample = next(s for s in dataset.samples if len(s.erase_regions))
    image, _ = dataset[dataset.samples.index(sample)]
    x1, y1, x2, y2 = (int(v) for v in sample.erase_regions[0])
    cx, cy = sample.corner[:2]
    inside = image[:, max(y1 - cy, 0) : y2 - cy, max(x1 - cx, 0) : x2 - cx]
    assert inside.numel() and (inside == inside[:, :1, :1]).all()


def test_flip(synthetic):
    root, train = synthetic
    plain = TinyPersonDataset(train, root / "images", flip_prob=0.0, normalization=None)
    flipped = TinyPersonDataset(train, root / "images", flip_prob=1.0, normalization=None)
    (a, ta), (b, tb) = plain[1], flipped[1]
    assert tb["flipped"] and torch.equal(a.flip(-1), b)
    width = a.shape[-1]
    assert torch.allclose(tb["boxes"][:, [2, 0]], width - ta["boxes"][:, [0, 2]])
    assert torch.equal(tb["boxes"][:, [1, 3]], ta["boxes"][:, [1, 3]])


def test_normalizations():
    pixel = torch.tensor([10, 20, 30], dtype=torch.uint8).view(3, 1, 1)
    rgb = normalize(pixel, "torchvision").flatten()
    torchvision_style = NORMALIZATIONS["torchvision"]
    expected = [
        (v - m) / s
        for v, m, s in zip((10, 20, 30), torchvision_style.mean, torchvision_style.std, strict=True)
    ]
    assert torch.allclose(rgb, torch.tensor(expected))
    bgr = normalize(pixel, "caffe").flatten()
    assert torch.allclose(bgr, torch.tensor([30 - 103.53, 20 - 116.28, 10 - 123.675]))


def test_collate_pads_to_multiple_of_32():
    items = [(torch.ones(3, 500, 640), {"i": 0}), (torch.ones(3, 512, 300), {"i": 1})]
    batch = collate(items)
    assert batch.images.shape == (2, 3, 512, 640)
    assert batch.image_sizes == [(500, 640), (512, 300)]
    assert batch.images[1, :, :, 300:].abs().sum() == 0 and batch.images[0, :, 500:].abs().sum() == 0
    assert [t["i"] for t in batch.targets] == [0, 1]
    assert collate([(torch.ones(3, 33, 65), {})]).images.shape == (1, 3, 64, 96)


def test_loader_with_workers(synthetic):
    root, train = synthetic
    dataset = TinyPersonDataset(train, root / "images")
    images, targets, sizes = next(iter(make_loader(dataset, batch_size=2, num_workers=2, seed=0)))
    assert images.shape[0] == 2 and images.shape[2] % 32 == 0 and images.shape[3] % 32 == 0
    assert images.dtype == torch.float32 and len(targets) == 2 and len(sizes) == 2
    assert targets[0]["boxes"].dtype == torch.float32 and targets[0]["labels"].dtype == torch.int64


def test_missing_image_file_is_reported_up_front(synthetic, tmp_path):
    _, train = synthetic
    with pytest.raises(DataError, match=r"image file\(s\) missing .*train_0000.jpg"):
        TinyPersonDataset(train, tmp_path)


def test_wrong_size_and_undecodable_image(synthetic, tmp_path):
    root, train = synthetic
    coco = json.loads(train.read_text())
    coco["images"][0]["width"] += 8
    (tmp_path / "wrong.json").write_text(json.dumps(coco))
    dataset = TinyPersonDataset(tmp_path / "wrong.json", root / "images", train=False)
    with pytest.raises(DataError, match="train_0000.jpg: decoded size .* does not match"):
        dataset[0]
    (tmp_path / "train_0000.jpg").write_bytes(b"not a jpeg")
    for other in coco["images"][1:]:
        (tmp_path / other["file_name"]).write_bytes(b"")
    broken = TinyPersonDataset(train, tmp_path, train=False)
    with pytest.raises(DataError, match="train_0000.jpg: cannot decode image"):
        broken[0]
