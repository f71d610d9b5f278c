"""Fault suite, evaluation: a ground truth or results json with a field of the wrong type is a ValueError
naming the entry and the field (bool is not a number, a string is not a box or a number, a flag is 0/1),
never a silently different metric; the valid inputs around them still evaluate."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinyfast import evaluate as evaluate_cli
from tinyfast.evaluation import evaluate
from tinyfast.evaluation.coco_format import load_ground_truth, load_results

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def ground_truth() -> dict:
    return {
        "images": [{"id": 0}, {"id": 1}],
        "categories": [{"id": 1, "name": "person"}],
        "annotations": [
            {"id": 1, "image_id": 0, "category_id": 1, "bbox": [10, 10, 8, 8], "area": 64, "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [5, 5, 4, 4], "area": 16, "ignore": True},
        ],
    }


def results() -> list[dict]:
    return [
        {"image_id": 0, "category_id": 1, "bbox": [10, 10, 8, 8], "score": 0.9},
        {"image_id": 1, "category_id": 1, "bbox": [50, 50, 8, 8], "score": 0.4},
    ]


def test_the_valid_inputs_evaluate():
    metrics = evaluate(ground_truth(), results(), miss_rate=False)
    assert metrics["AP50_all"] == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("bbox", "1234", r"results\[1\]\.bbox = '1234' is not \[x, y, w, h\]"),
        (
            "bbox",
            ["1", "2", "3", "4"],
            r"results\[1\]\.bbox = \['1', '2', '3', '4'\] is not \[x, y, w, h\] of",
        ),
        ("bbox", [1, 2, True, 4], r"results\[1\]\.bbox = \[1, 2, True, 4\] is not \[x, y, w, h\] of numbers"),
        ("bbox", {"x": 1}, r"results\[1\]\.bbox = \{'x': 1\} is not"),
        ("score", "0.5", r"results\[1\]\.score = '0.5' is not a number"),
        ("score", True, r"results\[1\]\.score = True is not a number"),
        ("score", None, r"results\[1\]\.score = None is not a number"),
        ("image_id", True, r"results\[1\]\.image_id = True is not an id of the ground truth's images"),
        (
            "image_id",
            "0",
            r"results\[1\]\.image_id = '0' is not an id of the ground truth's images \(they are",
        ),
        ("image_id", 0.0, r"results\[1\]\.image_id = 0.0 is not an id"),
        ("category_id", False, r"results\[1\]\.category_id = False is not an id of the ground truth's categ"),
    ],
)
def test_results_fields_of_the_wrong_type_are_errors_naming_entry_and_field(field, value, message):
    bad = results()
    bad[1][field] = value
    with pytest.raises(ValueError, match=message):
        evaluate(ground_truth(), bad, miss_rate=False)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda gt: gt["annotations"][0].update(iscrowd="no"),
            r"annotations\[0\]\.iscrowd = 'no' is not 0, 1",
        ),
        (lambda gt: gt["annotations"][0].update(iscrowd=2), r"annotations\[0\]\.iscrowd = 2 is not 0, 1"),
        (
            lambda gt: gt["annotations"][1].update(ignore="false"),
            r"annotations\[1\]\.ignore = 'false' is not",
        ),
        (
            lambda gt: gt["annotations"][1].update(uncertain=None),
            r"annotations\[1\]\.uncertain = None is not",
        ),
        (lambda gt: gt["annotations"][0].update(area="64"), r"annotations\[0\]\.area = '64' is not a number"),
        (lambda gt: gt["annotations"][0].update(bbox="1234"), r"annotations\[0\]\.bbox = '1234' is not"),
        (lambda gt: gt["annotations"][0].update(image_id=True), r"annotations\[0\]\.image_id = True is not"),
        (
            lambda gt: gt["images"][1].update(id="1"),
            r"images\[1\]\.id = '1' and images\[0\]\.id = 0: ids must",
        ),
        (
            lambda gt: gt["images"][1].update(id=True),
            r"images\[1\]\.id = True is not an integer or string id",
        ),
        (
            lambda gt: gt["categories"][0].update(id=1.0),
            r"categories\[0\]\.id = 1.0 is not an integer or str",
        ),
        (lambda gt: gt.update(images={"id": 0}), r"the ground truth's 'images' must be a list, got dict"),
        (lambda gt: gt["annotations"].append(None), r"annotations\[2\] = None is not an object"),
        (lambda gt: gt["images"].append(7), r"images\[2\] = 7 is not an object"),
    ],
)
def test_ground_truth_fields_of_the_wrong_type_are_errors_naming_entry_and_field(change, message):
    bad = ground_truth()
    change(bad)
    with pytest.raises(ValueError, match=message):
        evaluate(bad, results(), miss_rate=False)


@pytest.mark.parametrize("document", [None, [], 5, True, [{"images": []}]])
def test_a_ground_truth_that_is_not_an_object_is_an_error(document, tmp_path):
    with pytest.raises(ValueError, match="the ground truth must be a json object"):
        load_ground_truth(document)
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(document))
    with pytest.raises(ValueError, match=f"{path}: the ground truth must be a json object"):
        load_ground_truth(path)


def test_flags_as_json_writes_them_count_and_strings_ids_work_throughout():
    gt = ground_truth()
    gt["annotations"][0]["iscrowd"] = False
    gt["annotations"][1]["ignore"] = 1
    assert evaluate(gt, results(), miss_rate=False) == evaluate(ground_truth(), results(), miss_rate=False)
    named = copy.deepcopy(gt)
    for entry in named["images"]:
        entry["id"] = f"img{entry['id']}"
    for entry in named["annotations"]:
        entry["image_id"] = f"img{entry['image_id']}"
    found = [{**r, "image_id": f"img{r['image_id']}"} for r in results()]
    assert evaluate(named, found, miss_rate=False) == evaluate(gt, results(), miss_rate=False)
    with pytest.raises(ValueError, match=r"results\[0\]\.image_id = 0 is not an id .* \(they are strs\)"):
        evaluate(named, results(), miss_rate=False)


def test_numpy_numbers_and_arrays_built_in_memory_are_numbers_and_boxes():
    gt = ground_truth()
    gt["annotations"][0].update(bbox=np.array([10.0, 10, 8, 8]), area=np.float32(64), iscrowd=np.int64(0))
    gt["annotations"][1]["ignore"] = np.bool_(True)
    found = [
        {**r, "bbox": np.array(r["bbox"], np.float32), "score": np.float64(r["score"])} for r in results()
    ]
    found[0]["image_id"] = np.int64(0)
    assert evaluate(gt, found, miss_rate=False) == evaluate(ground_truth(), results(), miss_rate=False)
    found[1]["bbox"] = np.array(["1", "2", "3", "4"])
    with pytest.raises(ValueError, match=r"results\[1\]\.bbox = array\(\['1', '2', '3', '4'\].* of numbers"):
        evaluate(gt, found, miss_rate=False)


# Values that are not of a field's type (json can hold all of them).
NOT_A_NUMBER = st.one_of(
    st.booleans(), st.none(), st.text(max_size=5), st.lists(st.integers(), max_size=2), st.just({})
)
NOT_AN_INT_ID = st.one_of(NOT_A_NUMBER, st.floats(allow_nan=False), st.text(min_size=1, max_size=5))
NOT_A_BOX = st.one_of(
    st.booleans(),
    st.none(),
    st.text(max_size=8),
    st.integers(),
    st.lists(st.floats(0, 10), max_size=3),
    st.lists(st.floats(0, 10), min_size=5, max_size=6),
    st.tuples(st.floats(0, 10), NOT_A_NUMBER, st.floats(0, 10), st.floats(0, 10)).map(list),
)
FIELD_VALUES = {
    "bbox": NOT_A_BOX,
    "score": NOT_A_NUMBER,
    "image_id": NOT_AN_INT_ID,
    "category_id": NOT_AN_INT_ID,
}


@FUZZ
@given(
    data=st.data(),
    field=st.sampled_from(sorted(FIELD_VALUES)),
    count=st.integers(1, 30),
)
def test_fuzz_one_results_field_of_a_wrong_type_is_an_error_naming_it(data, field, count):
    found = [
        {"image_id": i % 2, "category_id": 1, "bbox": [i, i, 4.0, 4.0], "score": 1.0 / (i + 1)}
        for i in range(count)
    ]
    index = data.draw(st.integers(0, count - 1))
    value = data.draw(FIELD_VALUES[field])
    found[index][field] = value
    gt = load_ground_truth(ground_truth())
    with pytest.raises(ValueError) as raised:
        load_results(found, gt)
    assert f"results[{index}].{field}" in str(raised.value)


@FUZZ
@given(
    data=st.data(),
    field=st.sampled_from(["bbox", "area", "iscrowd", "ignore", "image_id", "category_id"]),
)
def test_fuzz_one_ground_truth_field_of_a_wrong_type_is_an_error_naming_it(data, field):
    gt = ground_truth()
    index = data.draw(st.integers(0, len(gt["annotations"]) - 1))
    strategies = {
        "bbox": NOT_A_BOX,
        "area": NOT_A_NUMBER,
        "iscrowd": st.one_of(st.text(max_size=3), st.none(), st.integers(2, 9), st.floats(0.1, 0.9)),
        "ignore": st.one_of(st.text(max_size=3), st.none(), st.integers(-5, -1), st.lists(st.booleans())),
        "image_id": NOT_AN_INT_ID,
        "category_id": NOT_AN_INT_ID,
    }
    gt["annotations"][index][field] = data.draw(strategies[field])
    with pytest.raises(ValueError) as raised:
        load_ground_truth(gt)
    assert f"annotations[{index}].{field}" in str(raised.value)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--max-dets", "0"], "argument --max-dets: '0' is not an integer >= 1"),
        (["--max-dets", "-3"], "argument --max-dets: '-3' is not an integer >= 1"),
        (["--max-dets", "ten"], "argument --max-dets: 'ten' is not an integer >= 1"),
    ],
)
def test_evaluate_cli_refuses_a_max_dets_below_one(argv, message, tmp_path, capsys):
    gt, found = tmp_path / "gt.json", tmp_path / "results.json"
    gt.write_text(json.dumps(ground_truth()))
    found.write_text(json.dumps(results()))
    assert evaluate_cli.main([str(gt), str(found), *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert evaluate_cli.main([str(gt), str(found), "--max-dets", "1"]) == 0
    assert "AP" in capsys.readouterr().out


def test_evaluate_cli_names_the_file_and_the_entry_of_bad_results(tmp_path, capsys):
    gt, found = tmp_path / "gt.json", tmp_path / "results.json"
    gt.write_text(json.dumps(ground_truth()))
    bad = results()
    bad[1]["bbox"] = "1234"
    found.write_text(json.dumps(bad))
    assert evaluate_cli.main([str(gt), str(found)]) == 2
    assert capsys.readouterr().err == f"error: {found}: results[1].bbox = '1234' is not [x, y, w, h]\n"
    found.write_text('[{"image_id": 0, "category_id": 1, "bbox": [1, 2, 3, 4], "score": NaN')
    assert evaluate_cli.main([str(gt), str(found)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: results {found} is not valid json") and err.count("\n") == 1
