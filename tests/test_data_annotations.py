import json
import warnings

import numpy as np
import pytest

from tinyfast.data.annotations import TINYPERSON_CATEGORIES, annotations_from_coco, load_annotations
from tinyfast.data.errors import DataError


def ann(ann_id, bbox, image_id=0, category_id=1, **flags):
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": category_id,
        "bbox": bbox,
        "area": 1.0 if len(bbox) != 4 else bbox[2] * bbox[3],
        "iscrowd": 0,
        "ignore": False,
        "uncertain": False,
        "logo": False,
        "in_dense_image": False,
        **flags,
    }


def write(tmp_path, annotations, images=None, name="ann.json"):
    images = images or [{"id": 0, "file_name": "a.jpg", "width": 1280, "height": 720}]
    path = tmp_path / name
    path.write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": TINYPERSON_CATEGORIES})
    )
    return path


def test_fields_and_tasks(tmp_path):
    path = write(
        tmp_path,
        [
            ann(1, [10, 10, 5, 12]),
            ann(2, [50, 50, 6, 14], category_id=2),
            ann(3, [100, 100, 80, 40], ignore=True),
            ann(4, [200, 200, 4, 9], uncertain=True),
            ann(5, [1100, 20, 150, 40], ignore=True, logo=True),
        ],
    )
    data = load_annotations(path)
    anns = data.annotations_of(0)
    assert anns.ids.tolist() == [1, 2, 3, 4, 5]
    np.testing.assert_allclose(anns.boxes[0], [10, 10, 15, 22])
    assert anns.erase_mask().tolist() == [False, False, True, True, True]
    assert data.classes("all") == ("person",)

    every = data.targets(anns, "all")
    assert len(every.boxes) == 2 and every.labels.tolist() == [0, 0] and len(every.ignore_boxes) == 3
    sea = data.targets(anns, "sea")  # the earth person becomes ignore
    np.testing.assert_allclose(sea.boxes, [[10, 10, 15, 22]])
    assert len(sea.ignore_boxes) == 4
    earth = data.targets(anns, "earth")
    np.testing.assert_allclose(earth.boxes, [[50, 50, 56, 64]])


def test_round_trip(tmp_path):
    original = [
        ann(1, [10.5, 10.25, 5.0, 12.0]),
        ann(9, [0, 0, 3, 7], category_id=2, uncertain=True),
        ann(4, [1, 2, 3, 4], in_dense_image=True),
    ]
    data = load_annotations(write(tmp_path, original))
    again = data.to_coco()
    assert again["categories"] == TINYPERSON_CATEGORIES
    for a, b in zip(
        sorted(original, key=lambda a: a["id"]),
        sorted(again["annotations"], key=lambda a: a["id"]),
        strict=True,
    ):
        for key in a:
            assert b[key] == pytest.approx(a[key]), key
    data.save(tmp_path / "again.json")
    assert load_annotations(tmp_path / "again.json").to_coco() == again


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (ann(7, [10, 10, -5, 12]), "annotation id 7: non-positive box size"),
        (ann(7, [1270, 10, 50, 12]), "annotation id 7: box outside the image"),
        (ann(7, [10, 10, 5, 12], category_id=3), "annotation id 7: unknown category_id"),
        (ann(7, [10, 10, 5, 12], image_id=5), "annotation id 7: unknown image_id"),
        (ann(7, [10, 10, 5]), "annotation id 7: bbox is not 4 numbers"),
        (ann(7, [10, 10, float("nan"), 5]), "annotation id 7: non-finite"),
    ],
)
def test_bad_annotation_names_file_and_id(tmp_path, bad, message):
    path = write(tmp_path, [ann(1, [1, 1, 2, 2]), bad])
    with pytest.raises(DataError, match=message) as info:
        load_annotations(path)
    assert str(path) in str(info.value)


def test_skip_mode_drops_and_counts(tmp_path):
    path = write(
        tmp_path, [ann(1, [1, 1, 2, 2]), ann(2, [10, 10, -5, 12]), ann(3, [1, 1, 2, 2], category_id=8)]
    )
    with pytest.warns(UserWarning, match="skipped 2 bad annotations"):
        data = load_annotations(path, on_error="skip")
    assert data.num_annotations == 1


def test_small_overshoot_is_tolerated(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = load_annotations(write(tmp_path, [ann(1, [1275.5, 700, 5.2, 20.5])]))
    assert data.num_annotations == 1


def test_malformed_and_missing_json(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"images": [')
    with pytest.raises(DataError, match="broken.json: malformed JSON"):
        load_annotations(path)
    with pytest.raises(DataError, match="not found"):
        load_annotations(tmp_path / "nope.json")
    path.write_text('{"images": []}')
    with pytest.raises(DataError, match="not a COCO json"):
        load_annotations(path)


def test_sea_task_needs_sea_category(tmp_path):
    path = tmp_path / "one.json"
    path.write_text(
        json.dumps({"images": [], "annotations": [], "categories": [{"id": 1, "name": "person"}]})
    )
    data = load_annotations(path)
    with pytest.raises(DataError, match="sea_person"):
        data.task_category_ids("sea")


COCO_CATEGORIES = [
    {"id": 1, "name": "person", "supercategory": "person"},
    {"id": 42, "name": "surfboard", "supercategory": "sports"},
]


def coco_like(annotations):
    images = [{"id": 3, "file_name": "c.jpg", "width": 640, "height": 480}]
    return {"images": images, "annotations": annotations, "categories": COCO_CATEGORIES}


def test_category_filter_keeps_persons_and_crowds_as_ignore(tmp_path):
    # A plain COCO annotation carries no TinyPerson flags; `iscrowd` alone makes a box ignore.
    person = {"id": 1, "image_id": 3, "category_id": 1, "bbox": [10, 10, 40, 90], "iscrowd": 0}
    crowd = {**person, "id": 2, "bbox": [100, 50, 200, 150], "iscrowd": 1}
    board = {**person, "id": 3, "category_id": 42, "bbox": [300, 300, 80, 20]}
    # Left out before validation: a degenerate box of a filtered-out category does not fail the file.
    bad_board = {**board, "id": 4, "bbox": [300, 300, 0, 20]}
    path = tmp_path / "coco.json"
    path.write_text(json.dumps(coco_like([person, crowd, board, bad_board])))

    data = load_annotations(path, categories=["person"])
    assert data.categories == COCO_CATEGORIES[:1]
    anns = data.annotations_of(3)
    assert anns.ids.tolist() == [1, 2] and anns.iscrowd.tolist() == [False, True]
    targets = data.targets(anns, "all")
    np.testing.assert_allclose(targets.boxes, [[10, 10, 50, 100]])
    np.testing.assert_allclose(targets.ignore_boxes, [[100, 50, 300, 200]])

    with pytest.raises(DataError, match="annotation id 4: non-positive box size"):
        load_annotations(path)  # without the filter the bad box is checked
    with pytest.warns(UserWarning, match="skipped 1 bad annotations"):
        both = load_annotations(path, on_error="skip", categories=("person", "surfboard"))
    assert both.num_annotations == 3 and [c["id"] for c in both.categories] == [1, 42]


def test_category_filter_from_a_dict_and_bad_names(tmp_path):
    person = {"id": 1, "image_id": 3, "category_id": 1, "bbox": [10, 10, 40, 90], "iscrowd": 0}
    data = annotations_from_coco(coco_like([person]), categories={"person"})
    assert data.path == "<COCO dict>" and data.num_annotations == 1
    with pytest.raises(DataError, match=r"mine.json: no category named \['dog'\]"):
        annotations_from_coco(coco_like([person]), "mine.json", categories=["person", "dog"])
    for bad in ("person", [], [1]):
        with pytest.raises(ValueError, match="categories must be a non-empty collection"):
            annotations_from_coco(coco_like([person]), categories=bad)
    with pytest.raises(DataError, match="<COCO dict>: not a COCO json"):
        annotations_from_coco([])
