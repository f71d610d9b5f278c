"""Fault suite, readers: every reader of a file x corrupt files (empty, truncated, random bytes, text in a
wrong encoding, another format) raises one ValueError naming the file; images of every depth and format
the tool lists are read right, or refused with a message."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from faulty_files import CORRUPTIONS, write_png16, write_png_bomb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from torchvision.io import ImageReadMode, decode_image

from tinyfast.data import DataError, TinyPersonDataset
from tinyfast.data.annotations import load_annotations
from tinyfast.data.convert import import_yolo
from tinyfast.data.transforms import MAX_IMAGE_PIXELS, image_size, normalize, read_image
from tinyfast.engine.checkpoint import load_checkpoint, save_checkpoint
from tinyfast.engine.config import DEFAULT_CONFIG, load_config
from tinyfast.evaluation.coco_format import load_ground_truth, load_results


def _scaled(pixels16: np.ndarray) -> np.ndarray:
    return np.round(pixels16.astype(np.float64) * 255 / 65535).astype(np.uint8)


def test_16_bit_pngs_grey_and_rgb_are_scaled_to_the_8_bit_range(tmp_path):
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 65536, (7, 9), dtype=np.uint16)
    grey[0, :3] = [0, 65535, 32896]  # the ends and a value that rounds up
    rgb = rng.integers(0, 65536, (5, 6, 3), dtype=np.uint16)
    image = read_image(write_png16(tmp_path / "grey16.png", grey))
    assert image.dtype == torch.uint8 and image.shape == (3, 7, 9)
    for channel in image:
        np.testing.assert_array_equal(channel.numpy(), _scaled(grey))
    image = read_image(write_png16(tmp_path / "rgb16.png", rgb))
    np.testing.assert_array_equal(image.permute(1, 2, 0).numpy(), _scaled(rgb))
    assert float(normalize(image, "torchvision").abs().max()) < 3  # 0-255 statistics, not up to ~1100


def test_8_bit_images_read_as_torchvision_decodes_them_and_bmp_as_pil_does(tiny_synthetic_set, tmp_path):
    jpeg = tiny_synthetic_set / "images" / "train_0000.jpg"
    assert torch.equal(read_image(jpeg), decode_image(str(jpeg), mode=ImageReadMode.RGB))
    pixels = np.random.default_rng(1).integers(0, 256, (6, 10, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "a.bmp")
    Image.fromarray(pixels[..., 0]).save(tmp_path / "grey.bmp")
    np.testing.assert_array_equal(read_image(tmp_path / "a.bmp").permute(1, 2, 0).numpy(), pixels)
    assert torch.equal(read_image(tmp_path / "grey.bmp"), torch.from_numpy(pixels[..., 0]).expand(3, 6, 10))
    Image.fromarray(pixels).save(tmp_path / "a.tif")
    np.testing.assert_array_equal(read_image(tmp_path / "a.tif").permute(1, 2, 0).numpy(), pixels)
    assert image_size(tmp_path / "a.bmp") == (10, 6)


def test_a_decompression_bomb_is_refused_before_decoding(tmp_path):
    bomb = write_png_bomb(tmp_path / "bomb.png")
    assert bomb.stat().st_size < 1_000_000 and 12_000**2 > MAX_IMAGE_PIXELS
    for reader in (read_image, image_size):
        with pytest.raises(DataError, match=r"bomb.png: image has 12000x12000 pixels, more than 100000000"):
            reader(bomb)
    huge = write_png_bomb(tmp_path / "huge.png", 20_000, 20_000)  # above PIL's own limit too
    with pytest.raises(DataError, match="huge.png: image has too many pixels"):
        read_image(huge)


def test_the_dataset_and_the_converter_read_16_bit_and_bmp_images(tiny_synthetic_set, tmp_path):
    """Every reader goes through read_image: the training set sees a 16-bit PNG as its 8-bit version."""
    coco = json.loads((tiny_synthetic_set / "annotations" / "train.json").read_text())
    info = coco["images"][0]
    eight_bit = decode_image(str(tiny_synthetic_set / "images" / info["file_name"]), mode=ImageReadMode.RGB)
    sixteen = eight_bit.permute(1, 2, 0).numpy().astype(np.uint16) * 257  # exactly 8-bit values x 257
    write_png16(tmp_path / "a.png", sixteen)
    coco["images"] = [{**info, "file_name": "a.png"}]
    coco["annotations"] = [a for a in coco["annotations"] if a["image_id"] == info["id"]]
    (tmp_path / "a.json").write_text(json.dumps(coco))
    dataset = TinyPersonDataset(tmp_path / "a.json", tmp_path, train=False, normalization=None)
    image, _ = dataset[0]
    assert torch.equal(image, eight_bit.float())

    yolo = tmp_path / "yolo"
    (yolo / "images").mkdir(parents=True)
    (yolo / "labels").mkdir()
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(yolo / "images" / "b.bmp")
    (yolo / "labels" / "b.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    converted, _ = import_yolo(yolo, ["person"])
    assert converted["images"][0]["width"] == 30 and len(converted["annotations"]) == 1
    write_png_bomb(yolo / "images" / "c.png")
    with pytest.raises(DataError, match="c.png: image has 12000x12000 pixels"):
        import_yolo(yolo, ["person"])


def _good_files(tmp_path, tiny_synthetic_set) -> dict[str, tuple]:
    """reader name -> (reader, a good file for it)."""
    gt = tiny_synthetic_set / "annotations" / "test.json"
    coco = json.loads(gt.read_text())
    results = tmp_path / "good_results.json"
    results.write_text(json.dumps([{"image_id": 0, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.5}]))
    save_checkpoint({"model": {"w": torch.ones(3)}}, tmp_path, "epoch_1", 1)
    ground_truth = load_ground_truth(coco)
    return {
        "read_image": (read_image, tiny_synthetic_set / "images" / "train_0000.jpg"),
        "image_size": (image_size, tiny_synthetic_set / "images" / "train_0000.jpg"),
        "load_annotations": (load_annotations, gt),
        "load_checkpoint": (load_checkpoint, tmp_path / "epoch_1.pth"),
        "load_config": (load_config, DEFAULT_CONFIG),
        "load_ground_truth": (load_ground_truth, gt),
        "load_results": (lambda path: load_results(path, ground_truth), results),
    }


READERS = [
    "read_image",
    "image_size",
    "load_annotations",
    "load_checkpoint",
    "load_config",
    "load_ground_truth",
    "load_results",
]
# A TOML file cut short or emptied may still be valid TOML: the config schema judges what it holds. A
# truncated image keeps its header, all that image_size reads (read_image finds the missing half).
NOT_A_FAULT_FOR = {"load_config": {"empty", "truncated"}, "image_size": {"truncated"}}


@pytest.mark.parametrize(
    ("reader_name", "corruption"),
    [(r, c) for r in READERS for c in sorted(CORRUPTIONS) if c not in NOT_A_FAULT_FOR.get(r, ())],
)
def test_every_reader_names_the_file_of_a_corrupt_input(
    reader_name, corruption, tiny_synthetic_set, tmp_path
):
    reader, good = _good_files(tmp_path, tiny_synthetic_set)[reader_name]
    reader(good)  # the good file reads
    bad = tmp_path / f"bad_{corruption.replace(' ', '_')}{good.suffix}"
    bad.write_bytes(CORRUPTIONS[corruption](good.read_bytes()))
    with pytest.raises(ValueError) as raised:
        reader(bad)
    message = str(raised.value)
    assert bad.name in message and "\n" not in message.strip()


@pytest.mark.parametrize("reader_name", READERS)
def test_every_reader_names_a_missing_file_or_a_folder(reader_name, tiny_synthetic_set, tmp_path):
    reader, _ = _good_files(tmp_path, tiny_synthetic_set)[reader_name]
    for path in (tmp_path / "missing.file", tmp_path):
        with pytest.raises((ValueError, OSError)) as raised:
            reader(path)
        assert str(path) in str(raised.value)


def test_a_label_file_that_is_not_utf_8_is_an_error_naming_it_and_a_bom_is_not_part_of_the_first_row(
    tmp_path,
):
    root = tmp_path / "yolo"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    Image.fromarray(np.zeros((100, 100, 3), np.uint8)).save(root / "images" / "a.png")
    (root / "labels" / "a.txt").write_bytes(b"\xef\xbb\xbf0 0.5 0.5 0.1 0.1\n0 0.2 0.2 0.1 0.1\n")
    coco, report = import_yolo(root, ["person"])
    assert len(coco["annotations"]) == 2 and not report.rejected
    for corruption in ("utf-16 text", "latin-1 text", "random bytes"):
        (root / "labels" / "a.txt").write_bytes(CORRUPTIONS[corruption](b"0 0.5 0.5 0.1 0.1\n"))
        with pytest.raises(DataError, match=r"a.txt: not a UTF-8 text file"):
            import_yolo(root, ["person"])


def test_an_image_listed_by_the_converter_that_is_corrupt_is_an_error_naming_it(tiny_synthetic_set, tmp_path):
    root = tmp_path / "yolo"
    (root / "images").mkdir(parents=True)
    good = (tiny_synthetic_set / "images" / "train_0000.jpg").read_bytes()
    for corruption in ("empty", "random bytes", "another format"):
        (root / "images" / "a.bmp").write_bytes(CORRUPTIONS[corruption](good))
        with pytest.raises(DataError, match="a.bmp: cannot decode image"):
            import_yolo(root, ["person"])
    shutil.copy(tiny_synthetic_set / "images" / "train_0000.jpg", root / "images" / "a.bmp")  # misnamed
    assert len(import_yolo(root, ["person"])[0]["images"]) == 1


MAGIC = {
    "none": b"",
    "png": b"\x89PNG\r\n\x1a\n",
    "png header": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
    "jpeg": b"\xff\xd8\xff\xe0",
    "bmp": b"BM",
    "tiff": b"II*\x00",
    "gif": b"GIF89a",
    "checkpoint": b"tinyfast-checkpoint 1 sha256=" + b"0" * 64 + b"\n",
    "zip": b"PK\x03\x04",
}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(magic=st.sampled_from(sorted(MAGIC)), body=st.binary(max_size=600))
def test_fuzz_garbage_after_a_known_signature_is_a_value_error_naming_the_file(magic, body, tmp_path):
    path = tmp_path / "fuzzed.bin"
    path.write_bytes(MAGIC[magic] + body)
    for reader in (read_image, load_checkpoint):
        with pytest.raises(ValueError, match="fuzzed.bin"):
            reader(path)


LABEL_TOKENS = st.one_of(
    st.sampled_from(["0", "1", "nan", "-nan", "inf", "-inf", "1e309", "0.5", "-0.2", "1.5", "x", "\ufeff0"]),
    st.floats(-0.5, 1.5).map(str),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.lists(LABEL_TOKENS, min_size=0, max_size=9).map(" ".join), max_size=6))
def test_fuzz_label_rows_become_boxes_or_counted_rejections_and_strict_json(rows, tmp_path):
    root = tmp_path / "yolo"
    if not root.exists():
        (root / "images").mkdir(parents=True)
        (root / "labels").mkdir()
        Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(root / "images" / "a.png")
    (root / "labels" / "a.txt").write_text("\n".join(rows), encoding="utf-8")
    coco, report = import_yolo(root, ["person", "other"])  # classes 0 and 1 have names: nothing stops it
    assert report.rows == report.boxes + sum(report.rejected.values())
    assert report.rows == sum(1 for row in rows if row.split())
    text = json.dumps(coco, allow_nan=False)  # raises on NaN or Infinity
    for annotation in json.loads(text)["annotations"]:
        x, y, w, h = annotation["bbox"]
        assert w > 0 and h > 0 and 0 <= x and x + w <= 50 + 1e-9 and 0 <= y and y + h <= 40 + 1e-9
