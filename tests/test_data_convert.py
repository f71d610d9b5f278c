import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from tinyfast.data.annotations import load_annotations
from tinyfast.data.convert import import_yolo, main
from tinyfast.data.errors import DataError

RPI_VALID = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyperson-rpi640" / "valid"


def make_yolo(root, rows, size=(200, 100)):
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    Image.new("RGB", size).save(root / "images" / "a.jpg")
    Image.new("RGB", (50, 40)).save(root / "images" / "b.png")  # no label file: no persons
    (root / "labels" / "a.txt").write_text("\n".join(rows) + "\n")
    return root


def test_rows_of_both_formats_and_deliberate_rejections(tmp_path):
    root = make_yolo(
        tmp_path / "set",
        [
            "0 0.5 0.5 0.1 0.2",  # box: 20x20 px at (90, 40)
            "0 0.1 0.1 0.15 0.1 0.15 0.3 0.1 0.3 0.1 0.1",  # closed polygon: 10x20 px at (20, 10)
            "0 0.5 0.5 0.1 0.2",  # duplicate
            "0 0.5 0.5 0.9 0.02",  # 180x2 px sliver: degenerate
            "0 0.5 0.5 0 0.1",  # zero width: degenerate
            "0 1.5 0.5 0.1 0.1",  # outside
            "0 0.5 abc 0.1 0.1",  # malformed
            "0 0.5 0.5 0.1",  # malformed (field count)
            "",
        ],
    )
    coco, report = import_yolo(root, ["person"])
    assert [(i["file_name"], i["width"], i["height"]) for i in coco["images"]] == [
        ("a.jpg", 200, 100),
        ("b.png", 50, 40),
    ]
    assert report.rows == 8 and report.boxes == 2 and report.images_without_labels == 1
    assert dict(report.rejected) == {"duplicate": 1, "degenerate": 2, "outside": 1, "malformed": 2}
    assert report.examples["outside"] == ["a.txt:6"]
    bboxes = [a["bbox"] for a in coco["annotations"]]
    assert bboxes == [pytest.approx([90, 40, 20, 20]), pytest.approx([20, 10, 10, 20])]
    assert coco["info"]["rejected_rows"] == dict(report.rejected)


def test_unknown_class_is_an_error(tmp_path):
    root = make_yolo(tmp_path / "set", ["1 0.5 0.5 0.1 0.2"])
    with pytest.raises(DataError, match=r"a.txt:1: class 1 has no name"):
        import_yolo(root, ["person"])
    assert main(["yolo", str(root), "--out", str(tmp_path / "x.json")]) == 2


def test_cli_writes_loadable_json(tmp_path):
    root = make_yolo(tmp_path / "set", ["0 0.5 0.5 0.1 0.2", "1 0.2 0.5 0.1 0.2"])
    out = tmp_path / "ann.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tinyfast.data.convert",
            "yolo",
            str(root),
            "--out",
            str(out),
            "--names",
            "sea_person",
            "earth_person",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "2 boxes" in result.stdout
    data = load_annotations(out)
    assert data.num_annotations == 2 and len(data.targets(data.annotations_of(0), "sea").boxes) == 1


@pytest.mark.skipif(not RPI_VALID.is_dir(), reason="../shared/data/tinyperson-rpi640 not present")
def test_rpi640_valid(tmp_path):
    out = tmp_path / "valid.json"
    assert main(["yolo", str(RPI_VALID), "--out", str(out)]) == 0
    coco = json.loads(out.read_text())
    report = coco["info"]["rejected_rows"]
    assert len(coco["images"]) == 153
    assert all((i["width"], i["height"]) == (640, 640) for i in coco["images"])
    # The README's 11,047 counts one empty string per file after the final newline (153 files):
    # the files hold 10,894 rows. 80 `cx cy w h` rows in two files are 27-623 px wide, 1-14 px high
    # strips, and 5 polygon rows are as wide; 4 rows repeat an earlier row of the same image.
    assert report == {"degenerate": 85, "duplicate": 4}
    assert len(coco["annotations"]) == 10_894 - 85 - 4 == 10_805
    data = load_annotations(out)
    assert data.num_annotations == 10_805


def test_corners_command_exports_the_reference_layout(tmp_path):
    full = {
        "images": [{"id": 4, "file_name": "a.jpg", "width": 1280, "height": 720}],
        "annotations": [
            {"id": 0, "image_id": 4, "category_id": 1, "bbox": [600, 10, 10, 20], "area": 200.0},
            {
                "id": 1,
                "image_id": 4,
                "category_id": 1,
                "bbox": [100, 600, 50, 40],
                "area": 2000.0,
                "ignore": True,
            },
        ],
        "categories": [{"id": 1, "name": "sea_person"}],
    }
    (tmp_path / "full.json").write_text(json.dumps(full))
    assert main(["corners", str(tmp_path / "full.json"), "--out", str(tmp_path / "corner.json")]) == 0
    corner = json.loads((tmp_path / "corner.json").read_text())
    assert [i["corner"] for i in corner["images"]] == [
        [0, 0, 640, 512],
        [590, 0, 1230, 512],
        [0, 208, 640, 720],
    ]
    assert all(i["file_name"] == "a.jpg" and i["origin_image_id"] == 4 for i in corner["images"])
    assert [a["bbox"] for a in corner["annotations"]] == [
        [600, 10, 10, 20],
        [10, 10, 10, 20],
        [100, 392, 50, 40],
    ]
    assert corner["annotations"][2]["ignore"] is True
    assert (
        main(["corners", str(tmp_path / "full.json"), "--erase", "--out", str(tmp_path / "erased.json")]) == 0
    )
    erased = json.loads((tmp_path / "erased.json").read_text())
    assert len(erased["images"]) == 2 and erased["images"][0].get("erase_regions") is None
