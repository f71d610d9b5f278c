"""Point supervision end to end: point targets in the data layer (cut by point, flipped), P2PNet and CPR
trained through the engine and the CLIs (train, test, refine), and the errors of a mismatched config."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tinyfast import evaluate as evaluate_cli
from tinyfast import predict as predict_cli
from tinyfast import refine as refine_cli
from tinyfast import test as test_cli
from tinyfast import train as train_cli
from tinyfast.data.dataset import TinyPersonDataset
from tinyfast.data.points import centre_points, generate_coarse_points, training_points
from tinyfast.engine.config import CONFIG_DIR

pytest.importorskip("scipy")


def test_training_items_carry_the_points_of_the_objects_whose_point_is_in_the_cut(tiny_synthetic_set):
    path = tiny_synthetic_set / "annotations" / "train.json"
    annotations = training_points(path, "centre")
    full = {a["id"]: a for a in centre_points(path)["annotations"]}
    kept = TinyPersonDataset(annotations, tiny_synthetic_set / "images", sub_size=(320, 256), flip_prob=0.0)
    flipped = TinyPersonDataset(
        annotations, tiny_synthetic_set / "images", sub_size=(320, 256), flip_prob=1.0
    )
    for index in (0, 7, len(kept) - 1):
        sample = kept.samples[index]
        _, target = kept[index]
        x1, y1, x2, y2 = sample.corner
        points = target["points"]
        assert points.dtype == torch.float32 and points.shape == (len(target["labels"]), 2)
        anns = annotations.annotations_of(sample.image.id)
        positive = annotations.positives(anns, "all")
        centres = np.array([full[i]["point"] for i in anns.ids[positive]]).reshape(-1, 2)
        inside = (centres[:, 0] >= x1) & (centres[:, 0] <= x2) & (centres[:, 1] >= y1) & (centres[:, 1] <= y2)
        assert np.allclose(points.numpy(), centres[inside] - [x1, y1], atol=1e-4)  # by point, not by box
        _, mirrored = flipped[index]
        assert torch.allclose(mirrored["points"][:, 0], (x2 - x1) - points[:, 0])
        assert torch.equal(mirrored["points"][:, 1], points[:, 1])


def test_resized_training_images_resize_their_points_too(tiny_synthetic_set):
    path = tiny_synthetic_set / "annotations" / "train.json"
    annotations = training_points(path, "centre")
    whole = dict(train=False, cut=False, skip_dense=False)
    plain = TinyPersonDataset(annotations, tiny_synthetic_set / "images", **whole)
    halved = TinyPersonDataset(annotations, tiny_synthetic_set / "images", image_scale=(0.5, 0.25), **whole)
    _, target = plain[1]
    _, resized = halved[1]
    height, width = target["size"]
    factors = torch.tensor([resized["size"][1] / width, resized["size"][0] / height])
    assert torch.allclose(resized["points"], target["points"] * factors, atol=1e-4)


def tiny_overrides(root, run, test_json):
    return [
        f"run_dir={run}",
        f"data.root={root}",
        f"data.train_annotations={root / 'annotations' / 'train.json'}",
        f"data.test_annotations={test_json}",
        f"data.train_images={root / 'images'}",
        f"data.test_images={root / 'images'}",
        "data.synthetic_preset=tiny",
        "data.sub_size=[128, 128]",
        "data.min_objects_per_cut=1",
        "model.channels=8",
        "model.stacked_convs=1",
        "train.epochs=1",
        "train.max_iters_per_epoch=2",
        "train.batch_size=2",
        "train.workers=0",
        "train.warmup_iters=1",
        "test.images_per_batch=1",
    ]


@pytest.fixture
def one_test_image(tiny_synthetic_set, tmp_path):
    coco = json.loads((tiny_synthetic_set / "annotations" / "test.json").read_text())
    coco["images"] = [image for image in coco["images"] if image["width"] == 1280]
    kept = {image["id"] for image in coco["images"]}
    coco["annotations"] = [a for a in coco["annotations"] if a["image_id"] in kept]
    path = tmp_path / "test_one.json"
    path.write_text(json.dumps(coco))
    return path


def test_p2pnet_trains_and_tests_with_point_ap(tiny_synthetic_set, one_test_image, tmp_path, capsys):
    run = tmp_path / "p2pnet"
    overrides = [*tiny_overrides(tiny_synthetic_set, run, one_test_image), "model.score_threshold=0.0"]
    config = str(CONFIG_DIR / "p2pnet_synthetic.toml")
    assert train_cli.main([config, *overrides, "--no-progress"]) == 0
    assert "Location eval: (AP/AR) @[ dis=1.0" in capsys.readouterr().out
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert {"loss_cls", "loss_points"} <= set(log[0]) and 0 <= log[-1]["AP1.0_tiny"] <= 1
    results = json.loads((run / "results_points.json").read_text())
    assert results and {"image_id", "category_id", "point", "score"} == set(results[0])
    points = np.array([r["point"] for r in results])
    assert (points >= 0).all() and (points[:, 0] <= 1280).all() and (points[:, 1] <= 720).all()
    assert test_cli.main([str(run), "--out", str(tmp_path / "tested"), "--no-progress"]) == 0
    tested = json.loads((tmp_path / "tested" / "metrics_points.json").read_text())
    assert tested == json.loads((run / "metrics_points.json").read_text())
    # predict finds points in image files, scored by file name as tinyfast.test scored them.
    image = json.loads(one_test_image.read_text())["images"][0]["file_name"]
    out = tmp_path / "predicted"
    argv = [str(run), str(tiny_synthetic_set / "images" / image), "--out", str(out), "--no-progress"]
    assert predict_cli.main([*argv, "--save-txt", "--show-threshold", "0"]) == 0
    predicted = json.loads((out / "results.json").read_text())
    assert predicted and {"image_id", "file_name", "category_id", "point", "score"} == set(predicted[0])
    expected = np.array(sorted([*r["point"], r["score"]] for r in results))
    found = np.array(sorted([*r["point"], r["score"]] for r in predicted))
    assert found.shape == expected.shape and np.allclose(found, expected, atol=1e-3)
    assert all(
        "point" in a and "bbox" not in a
        for a in json.loads((out / "predictions.json").read_text())["annotations"]
    )
    rows = (out / "labels" / image).with_suffix(".txt").read_text().splitlines()
    assert len(rows) == len(predicted) and len(rows[0].split()) == 3
    assert (out / "visuals" / image).with_suffix(".jpg").is_file()
    capsys.readouterr()
    assert (
        evaluate_cli.main([str(one_test_image), str(out / "results.json"), "--points", "--by-file-name"]) == 0
    )
    assert "dis=1.0" in capsys.readouterr().out


def test_cpr_trains_and_refines_the_training_points(tiny_synthetic_set, one_test_image, tmp_path, capsys):
    run = tmp_path / "cpr"
    config = str(CONFIG_DIR / "cpr_synthetic.toml")
    assert (
        train_cli.main([config, *tiny_overrides(tiny_synthetic_set, run, one_test_image), "--no-progress"])
        == 0
    )
    assert "mean distance to the box centres" in capsys.readouterr().out
    metrics = json.loads((run / "metrics_refine.json").read_text())
    assert metrics["refined_points"] > 0 and metrics["mean_distance_input"] > 0
    out = tmp_path / "refined.json"
    assert refine_cli.main([str(run), "--out", str(out), "--no-progress"]) == 0
    assert "px before" in capsys.readouterr().out
    refined = json.loads(out.read_text())
    source = json.loads((tiny_synthetic_set / "annotations" / "train.json").read_text())
    assert [a["id"] for a in refined["annotations"]] == [a["id"] for a in source["annotations"]]
    assert all(len(a["point"]) == 2 for a in refined["annotations"])
    assert predict_cli.main([str(run), str(tiny_synthetic_set / "images"), "--out", str(tmp_path / "p")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "refines the annotated points" in error
    report = json.loads((tmp_path / "refined_report.json").read_text())
    assert 0 <= report["refined_share"] <= 1
    # The refined json trains the localiser as it is (data.points = "annotated").
    annotations = training_points(out, "annotated")
    assert annotations.num_annotations == len(source["annotations"])
    # With data.image_scale the images are refined resized, and the points written back in the json's pixels:
    # each within the bag's circle (5 cells of 4 px at half size) of its coarse point.
    halved = tmp_path / "refined_half.json"
    assert refine_cli.main([str(run), "data.image_scale=0.5", "--out", str(halved), "--no-progress"]) == 0
    coarse = {a["id"]: a["point"] for a in generate_coarse_points(source, seed=0)["annotations"]}
    moved = [
        np.hypot(*np.subtract(a["point"], coarse[a["id"]]))
        for a in json.loads(halved.read_text())["annotations"]
    ]
    assert max(moved) <= 5 * 4 / 0.5 + 1e-3


def test_a_config_whose_points_do_not_fit_its_model_stops_with_one_line(tmp_path, capsys):
    assert (
        train_cli.main([str(CONFIG_DIR / "p2pnet_synthetic.toml"), f"run_dir={tmp_path}", "data.points="])
        == 2
    )
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "model.name = 'p2pnet' is trained on points: set data.points" in error
    assert train_cli.main([f"run_dir={tmp_path}", "data.points=coarse"]) == 2
    assert "data.points = 'coarse' is for the point models" in capsys.readouterr().err
    assert train_cli.main([f"run_dir={tmp_path}", "data.points=boxes"]) == 2
    assert "data.points must be one of" in capsys.readouterr().err
    assert refine_cli.main([str(tmp_path / "missing"), "--out", str(tmp_path / "r.json")]) == 2
    assert "neither a run folder nor a checkpoint" in capsys.readouterr().err
