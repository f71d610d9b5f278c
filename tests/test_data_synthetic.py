import json

import pytest

from tinyfast.data.annotations import load_annotations
from tinyfast.data.synthetic import (
    DENSE_PERSONS,
    IMAGE_SIZES,
    PRESETS,
    SIZE_MIX,
    SOURCE_CROWD_EVERY,
    SOURCE_HEIGHTS,
    SOURCE_IMAGE_SIZES,
    SOURCE_PERSONS,
    generate,
    generate_source,
    main,
    source_statistics,
    statistics,
)


def files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    assert main(["--out", str(root), "--preset", "tiny", "--seed", "0"]) == 0
    return root


def test_deterministic_for_a_seed(tiny, tmp_path):
    generate(tmp_path / "same", "tiny", seed=0)
    generate(tmp_path / "other", "tiny", seed=1)
    a, b, c = files(tiny), files(tmp_path / "same"), files(tmp_path / "other")
    assert len(a) == 8 + 2 and a == b
    assert a["annotations/train.json"] != c["annotations/train.json"]


@pytest.mark.parametrize("preset", ["tiny", "default", "dense"])
def test_statistics_match_the_promises(tiny, tmp_path, preset):
    if preset == "tiny":
        tmp_path = tiny
    else:
        generate(tmp_path, preset, seed=0)
    spec = PRESETS[preset]
    train = json.loads((tmp_path / "annotations/train.json").read_text())
    test = json.loads((tmp_path / "annotations/test.json").read_text())
    stats = statistics(
        {
            "images": train["images"] + test["images"],
            "annotations": train["annotations"]
            + [{**a, "image_id": a["image_id"] + len(train["images"])} for a in test["annotations"]],
        }
    )
    assert stats["images"] == spec.train_images + spec.test_images
    assert statistics(train)["dense_images"] == spec.dense_train
    assert statistics(test)["dense_images"] == spec.dense_test
    assert [tuple(s) for s in stats["image_sizes"]] == sorted(IMAGE_SIZES)
    assert stats["max_per_image"] >= DENSE_PERSONS[0] >= 800
    for measured, (_, _, share) in zip(stats["size_mix"], SIZE_MIX, strict=True):
        assert measured == pytest.approx(share, abs=0.05)
    assert sum(stats["size_mix"]) == pytest.approx(1.0)  # every person is 2-32 px tall
    assert stats["under_20px"] > 0.8
    assert stats["ignore"] >= 1 and stats["uncertain"] >= 1 and stats["logo"] >= 1
    assert stats["sea"] > 0 and stats["earth"] > 0
    # The written files are valid TinyPerson json: every box inside its image, known categories.
    for split in ("train", "test"):
        data = load_annotations(tmp_path / f"annotations/{split}.json")
        for info in data.images:
            anns = data.annotations_of(info.id)
            assert (tmp_path / "images" / info.file_name).is_file()
            assert anns.is_dense == (len(anns) >= DENSE_PERSONS[0])
            assert anns.in_dense_image.all() or not anns.in_dense_image.any()


def test_source_preset_beside_the_tiny_set(tiny, tmp_path):
    root = tmp_path / "both"
    generate(root, "tiny", seed=0)
    before = files(root)
    assert main(["--out", str(root), "--preset", "source", "--seed", "0"]) == 0
    after = files(root)
    assert {k: v for k, v in after.items() if k in before} == before == files(tiny)  # the tiny set untouched
    source = {k: v for k, v in after.items() if k not in before}
    assert len(source) == 48 + 1 and "annotations/source.json" in source
    generate_source(tmp_path / "again", seed=0)
    assert files(tmp_path / "again") == source
    generate_source(tmp_path / "other", seed=1)
    assert files(tmp_path / "other")["annotations/source.json"] != source["annotations/source.json"]
    with pytest.raises(ValueError, match="num_images must be an int >= 1"):
        generate_source(tmp_path / "none", num_images=0)

    coco = json.loads(source["annotations/source.json"])
    stats = source_statistics(coco)
    assert stats["images"] == 48 and [tuple(s) for s in stats["image_sizes"]] == sorted(SOURCE_IMAGE_SIZES)
    low, high = stats["height_range"]
    assert SOURCE_HEIGHTS[0] <= low < 30 and 200 < high <= SOURCE_HEIGHTS[1]
    # Log-uniform heights: the quartiles near 20 * 15^(1/4, 1/2, 3/4) = 39, 77, 152.
    for measured, expected in zip(stats["height_quartiles"], (39.4, 77.5, 152.5), strict=True):
        assert measured == pytest.approx(expected, rel=0.3)
    assert (
        SOURCE_PERSONS[0]
        <= stats["persons_per_image"][0]
        <= stats["persons_per_image"][1]
        < SOURCE_PERSONS[1]
    )
    assert stats["crowds"] == -(-48 // SOURCE_CROWD_EVERY) and stats["surfboards"] > 0

    # Read for pre-training: persons only, crowds as ignore regions, every box inside its image.
    data = load_annotations(root / "annotations/source.json", categories=["person"])
    assert [c["name"] for c in data.categories] == ["person"]
    assert data.num_annotations == stats["persons"] + stats["crowds"]
    for info in data.images:
        targets = data.targets(data.annotations_of(info.id), "all")
        assert len(targets.boxes) >= 1
        assert len(targets.ignore_boxes) == (info.id % SOURCE_CROWD_EVERY == 0)
        assert (root / "images" / info.file_name).is_file()
    assert load_annotations(root / "annotations/source.json").num_annotations == len(coco["annotations"])
