"""Predict on one's own images: the CLI end to end on real rpi640 images, the Python API, a run folder as a
model (`tinyfast.test RUN_DIR`)."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_run_overrides
from PIL import Image
from pycocotools.coco import COCO
from torchvision.io import decode_jpeg, encode_jpeg

import tinyfast
from tinyfast import plot as plot_cli
from tinyfast import predict as predict_cli
from tinyfast import test as test_cli
from tinyfast.data.convert import main as convert_main
from tinyfast.engine.checkpoint import load_checkpoint
from tinyfast.engine.config import DEFAULT_CONFIG, load_config
from tinyfast.engine.curves import read_log, tensorboard_available
from tinyfast.engine.trainer import train
from tinyfast.evaluate import main as evaluate_main
from tinyfast.modeling.inference import CompiledNetwork

RPI_VALID = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyperson-rpi640" / "valid"
needs_rpi = pytest.mark.skipif(not RPI_VALID.is_dir(), reason="../shared/data/tinyperson-rpi640 not present")
SHOW = 0.05


@pytest.fixture(scope="module")
def rpi_images(tmp_path_factory) -> Path:
    """Three rpi640 validation images with their YOLO labels and their COCO ground truth (gt.json)."""
    root = tmp_path_factory.mktemp("rpi3")
    (root / "images").mkdir()
    (root / "labels").mkdir()
    for image in sorted((RPI_VALID / "images").glob("*.jpg"))[:3]:
        shutil.copy(image, root / "images")
        shutil.copy(RPI_VALID / "labels" / f"{image.stem}.txt", root / "labels")
    assert convert_main(["yolo", str(root), "--out", str(root / "gt.json")]) == 0
    return root


@pytest.fixture(scope="module")
def tiny_run(tiny_synthetic_set, rpi_images, tmp_path_factory) -> Path:
    """A run folder of a tiny FCOS trained for 8 iterations whose test set is the three rpi640 images
    (score threshold 0: an untrained model keeps candidates to merge)."""
    run = tmp_path_factory.mktemp("tiny_run") / "run"
    overrides = [
        *tiny_run_overrides(tiny_synthetic_set, run),
        f"data.test_annotations={rpi_images / 'gt.json'}",
        f"data.test_images={rpi_images / 'images'}",
        "model.score_threshold=0.0",
        "test.eval_interval=-1",
        "test.images_per_batch=2",
    ]
    train(load_config(DEFAULT_CONFIG, overrides), run, progress=False)
    return run


def test_the_run_folder_config_is_toml_that_reads_back(tiny_run):
    saved = load_checkpoint(tiny_run / "latest.pth")["config"]
    assert load_config(tiny_run / "config.toml") == saved
    assert not (tiny_run / "config.json").exists()


def test_a_run_folder_written_before_a_key_existed_still_loads_with_its_default(tiny_run, tmp_path):
    old = tmp_path / "old_run"
    old.mkdir()
    shutil.copy(tiny_run / "latest.pth", old / "latest.pth")
    lines = (tiny_run / "config.toml").read_text().splitlines()
    newer_keys = ("points", "point_merge_distance", "image_scale", "ema_")
    kept = [line for line in lines if not line.startswith(newer_keys)]
    assert len(kept) == len(lines) - 7  # points(_seed), image_scale(_multiples), ema_decay, ema_ramp_iters
    (old / "config.toml").write_text("\n".join(kept) + "\n")
    detector = tinyfast.load_detector(old)
    assert detector.config["data"]["points"] == "" and detector.config["test"]["point_merge_distance"] == 0.5
    config = detector.config
    assert config["data"]["image_scale_multiples"] == [1.0] and config["train"]["ema_decay"] == 0


@needs_rpi
def test_predict_end_to_end_on_real_images(tiny_run, rpi_images, tmp_path, capsys):
    inputs = tmp_path / "inputs"
    (inputs / "sub").mkdir(parents=True)
    names = sorted(p.name for p in (rpi_images / "images").iterdir())
    shutil.copy(rpi_images / "images" / names[0], inputs)
    shutil.copy(rpi_images / "images" / names[1], inputs / "sub")
    grey = np.asarray(Image.open(rpi_images / "images" / names[2]).convert("L"), dtype=np.uint16) * 257
    Image.fromarray(grey).save(inputs / "grey16.png")  # a 16-bit grey PNG
    (inputs / "notes.txt").write_text("not an image")
    (inputs / "broken.jpg").write_bytes((rpi_images / "images" / names[0]).read_bytes()[:300])
    out = tmp_path / "out"
    code = predict_cli.main(
        [
            str(tiny_run),
            str(inputs),
            "--recursive",
            "--out",
            str(out),
            "--show-threshold",
            str(SHOW),
            "--save-txt",
            "--no-progress",
            "--batch",
            "2",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "read 3 image(s), skipped 2" in captured.out
    assert "notes.txt" in captured.err and "broken.jpg" in captured.err

    summary = json.loads((out / "summary.json").read_text())
    assert summary["images_read"] == 3
    assert sorted(Path(s["input"]).name for s in summary["skipped"]) == ["broken.jpg", "notes.txt"]
    predictions = json.loads((out / "predictions.json").read_text())
    results = json.loads((out / "results.json").read_text())
    file_names = sorted(image["file_name"] for image in predictions["images"])
    assert file_names == sorted([names[0], f"sub/{names[1]}", "grey16.png"])
    coco = COCO(str(out / "predictions.json"))  # a dataset pycocotools loads
    assert len(coco.getAnnIds()) == len(results) > 0
    assert coco.loadRes(str(out / "results.json")) is not None
    detector = tinyfast.load_detector(tiny_run, device="cpu")
    for image in predictions["images"]:
        scores = [a["score"] for a in predictions["annotations"] if a["image_id"] == image["id"]]
        result_scores = [r["score"] for r in results if r["image_id"] == image["id"]]
        assert scores == result_scores
        shown = sum(score >= SHOW for score in scores)
        assert summary["shown_per_image"][image["file_name"]] == shown
        assert image["width"] == image["height"] == 640
        labels = (out / "labels" / image["file_name"]).with_suffix(".txt").read_text().splitlines()
        assert len(labels) == shown
        visual = out / "visuals" / Path(image["file_name"]).with_suffix(".jpg")
        found = {
            "boxes": torch.tensor(
                [
                    [a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                    for a in predictions["annotations"]
                    if a["image_id"] == image["id"]
                ]
            ).reshape(-1, 4),
            "scores": torch.tensor(scores),
        }
        source = inputs / image["file_name"]
        drawn = detector.draw(source, found, threshold=SHOW)
        assert encode_jpeg(drawn, quality=90).numpy().tobytes() == visual.read_bytes()  # what was drawn
        assert decode_jpeg(torch.from_numpy(np.fromfile(visual, np.uint8))).shape == (3, 640, 640)
    assert sum(summary["shown_per_image"].values()) == summary["persons_found"]

    # The results are scored against a ground truth by file name (grey16.png is not one of its images).
    assert evaluate_main([str(rpi_images / "gt.json"), str(out / "results.json"), "--by-file-name"]) == 2
    assert "file_name = 'grey16.png' is not an image of the ground truth" in capsys.readouterr().err
    flat = tmp_path / "flat.json"
    flat.write_text(
        json.dumps(
            [{**r, "file_name": Path(r["file_name"]).name} for r in results if "grey" not in r["file_name"]]
        )
    )
    assert evaluate_main([str(rpi_images / "gt.json"), str(flat), "--by-file-name"]) == 0
    assert "AP" in capsys.readouterr().out


@needs_rpi
def test_load_detector_on_a_run_folder_and_a_checkpoint_matches_tinyfast_test(tiny_run, rpi_images, tmp_path):
    out = tmp_path / "tested"
    assert test_cli.main([str(tiny_run), "--out", str(out), "--no-progress"]) == 0
    tested = json.loads((out / "results_during.json").read_text())
    gt = json.loads((rpi_images / "gt.json").read_text())
    paths = [rpi_images / "images" / image["file_name"] for image in gt["images"]]
    from_folder = tinyfast.load_detector(tiny_run, device="cpu").predict(paths)
    from_checkpoint = tinyfast.load_detector(tiny_run / "latest.pth", device="cpu").predict(
        [tinyfast.engine.predictor.as_rgb_uint8(p) for p in paths], batch_size=1
    )
    for image, ours, theirs in zip(gt["images"], from_folder, from_checkpoint, strict=True):
        expected = [r for r in tested if r["image_id"] == image["id"]]
        assert len(ours["boxes"]) == len(expected) > 0
        assert torch.equal(ours["scores"], torch.tensor([r["score"] for r in expected]))
        xywh = torch.tensor([r["bbox"] for r in expected])
        assert torch.allclose(ours["boxes"][:, :2], xywh[:, :2]) and torch.allclose(
            ours["boxes"][:, 2:] - ours["boxes"][:, :2], xywh[:, 2:]
        )
        for key in ("boxes", "scores", "labels"):
            assert torch.equal(ours[key], theirs[key])


@needs_rpi
def test_test_cli_takes_a_checkpoint_alone_and_overrides(tiny_run, tmp_path, capsys):
    out = tmp_path / "after"
    checkpoint = tiny_run / "latest.pth"
    assert (
        test_cli.main(
            [str(checkpoint), "test.tile=[320, 320]", "--policy", "after", "--out", str(out), "--no-progress"]
        )
        == 0
    )
    assert "AP50" in capsys.readouterr().out and (out / "results_after.json").is_file()
    assert test_cli.main([str(tmp_path), "--no-progress"]) == 2
    assert "not a run folder" in capsys.readouterr().err
    assert test_cli.main([str(DEFAULT_CONFIG), "--no-progress"]) == 2
    assert "give the checkpoint" in capsys.readouterr().err
    assert test_cli.main([str(tmp_path / "no_such_run"), "--no-progress"]) == 2
    assert "neither a run folder, a checkpoint (.pth) nor a config" in capsys.readouterr().err


def test_predict_without_input_is_a_one_line_error(tiny_run, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    for inputs in ([str(empty)], [], [str(tmp_path / "nothing_*.jpg")]):
        done = subprocess.run(
            [sys.executable, "-m", "tinyfast.predict", str(tiny_run), *inputs, "--out", str(tmp_path / "o")],
            capture_output=True,
            text=True,
            env={"PYTHONPATH": str(Path(__file__).resolve().parents[1]), "PATH": "/usr/bin:/bin"},
        )
        assert done.returncode == 2
        assert done.stderr.startswith("error: no input files") and done.stderr.count("\n") == 1
        assert "Traceback" not in done.stderr


def test_predict_names_a_bad_model(tmp_path, capsys):
    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)
    assert predict_cli.main([str(tmp_path / "missing"), str(image), "--out", str(tmp_path / "o")]) == 2
    assert "neither a run folder nor a checkpoint" in capsys.readouterr().err


def test_detector_predicts_tensors_grey_large_and_batched(tiny_run):
    detector = tinyfast.load_detector(tiny_run, device="cpu", overrides=["test.tile_batch_size=3"])
    generator = torch.Generator().manual_seed(0)
    colour = torch.randint(0, 256, (3, 700, 1500), dtype=torch.uint8, generator=generator)
    grey = colour[:1]
    found = detector.predict([colour, grey, colour.float()], batch_size=2)
    assert len(found) == 3
    assert torch.equal(found[0]["boxes"], found[2]["boxes"])  # a 0-255 float tensor is the same image
    (alone,) = detector.predict([colour])
    assert torch.equal(alone["scores"], found[0]["scores"])  # batching does not change the result
    boxes = found[0]["boxes"]
    assert len(boxes) and (boxes[:, 2] <= 1500).all() and (boxes[:, 3] <= 700).all()
    drawn = detector.draw(grey, found[1], threshold=0.0)
    assert drawn.dtype == torch.uint8 and drawn.shape == (3, 700, 1500)
    with pytest.raises(ValueError, match="a list of images"):
        detector.predict(colour)
    with pytest.raises(ValueError, match=r"\[3, H, W\]"):
        detector.predict([torch.zeros(2, 5, 5)])


def test_training_draws_its_curves_and_plot_redraws_them(tiny_run, tmp_path, capsys):
    picture = tiny_run / "curves.png"
    assert picture.is_file() and Image.open(picture).size == (1500, 400)
    steps, evaluations = read_log(tiny_run)
    assert len(steps) == 8 and evaluations == []  # test.eval_interval = -1: no evaluation
    assert plot_cli.main([str(tiny_run), "--out", str(tmp_path / "again.png")]) == 0
    assert Image.open(tmp_path / "again.png").size == (1500, 400)
    assert (tiny_run / "tensorboard").is_dir() == tensorboard_available()
    run = tmp_path / "copy"
    run.mkdir()
    lines = (tiny_run / "log.jsonl").read_text().splitlines()
    evaluation = {"epoch": 1, "iteration": 8, "AP50_tiny": 0.25, "AR50_tiny": 0.5}
    (run / "log.jsonl").write_text("\n".join([*lines, json.dumps(evaluation), '{"epoch": 2, "iter']) + "\n")
    steps, evaluations = read_log(run)  # a half-written last line (a killed run) is left out
    assert len(steps) == 8 and evaluations == [evaluation]
    assert plot_cli.main([str(run)]) == 0 and (run / "curves.png").is_file()
    capsys.readouterr()
    assert plot_cli.main([str(tmp_path / "nothing")]) == 2
    assert "log.jsonl does not exist" in capsys.readouterr().err


@pytest.mark.skipif(not tensorboard_available(), reason="tensorboard is optional")
def test_tensorboard_events_hold_the_logged_scalars(tiny_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tiny_run / "tensorboard"))
    events.Reload()
    assert {"train/loss", "train/lr"} <= set(events.Tags()["scalars"])
    assert len(events.Scalars("train/loss")) == 8


def test_predict_flags_override_the_models_test_settings(tiny_run):
    args = predict_cli.parse_args(
        [
            str(tiny_run),
            "x.jpg",
            "--out",
            "o",
            "--policy",
            "after",
            "--tile",
            "320",
            "256",
            "--overlap",
            "32",
            "32",
            "--scales",
            "1",
            "1.5",
            "--flips",
            "--truncated",
            "drop",
            "--score-threshold",
            "0.2",
            "--max-per-img",
            "50",
            "--tile-batch",
            "4",
            "--precision",
            "bf16",
            "--compile",
        ]
    )
    overrides = predict_cli.overrides_of(args)
    detector = tinyfast.load_detector(tiny_run, device="cpu", overrides=overrides)
    test = detector.config["test"]
    assert (test["policy"], test["tile"], test["overlap"], test["scales"]) == (
        "after",
        [320, 256],
        [32, 32],
        [1, 1.5],
    )
    assert (test["flips"], test["truncated"], test["max_per_img"], test["tile_batch_size"]) == (
        True,
        "drop",
        50,
        4,
    )
    assert detector.config["model"]["score_threshold"] == 0.2
    assert detector.inference.options == {
        "tile": (320, 256),
        "overlap": (32, 32),
        "scales": (1, 1.5),
        "flips": True,
        "tile_batch_size": 4,
    }
    assert detector.inference.policy.truncated == "drop"
    assert test["precision"] == "bf16" and detector.model.inference_dtype is torch.bfloat16
    assert test["compile"] is True and isinstance(detector.model.backbone, CompiledNetwork)
    assert detector.inference.policy.tile_settings.max_per_tile == 50  # "after": the cap is per tile
    assert detector.inference.policy.tile_settings.score_threshold == 0.2
    assert predict_cli.overrides_of(predict_cli.parse_args([str(tiny_run), "--out", "o"])) == []
    with pytest.raises(ValueError, match="test.truncated must be"):
        tinyfast.load_detector(tiny_run, device="cpu", overrides=["test.truncated=sideways"])
