import json

import pytest

from tinyfast.data.annotations import load_annotations
from tinyfast.data.synthetic import DENSE_PERSONS, IMAGE_SIZES, PRESETS, SIZE_MIX, generate, main, statistics


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
