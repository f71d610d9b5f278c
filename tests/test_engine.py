import json
import math

import pytest
import torch
import torchvision

from tinyfast import test as test_cli
from tinyfast import train as train_cli
from tinyfast.data.build import DataConfig, train_dataset
from tinyfast.engine.checkpoint import load_checkpoint, remove_partial_writes, resume_path, save_checkpoint
from tinyfast.engine.config import CONFIG_DIR, DEFAULT_CONFIG, apply_override, load_config
from tinyfast.engine.optim import StepSchedule, linear_scaled_lr, sgd
from tinyfast.engine.trainer import train
from tinyfast.modeling import AdapRetinaNet, FasterFPN
from tinyfast.modeling.build import build_model
from tinyfast.tiling import TileSettings
from tinyfast.utils.precision import resolve_precision


@pytest.mark.parametrize("path", sorted(CONFIG_DIR.glob("*.toml")))
def test_every_config_loads_and_builds_its_model(path):
    config = load_config(path, ["model.pretrained=false"] if "model" in load_config(path) else [])
    if "model" in config:
        assert build_model(config["model"]) is not None


def test_build_model_names_the_unknown_detector_or_setting():
    config = load_config(CONFIG_DIR / "retinanet_synthetic.toml")["model"]
    assert isinstance(build_model(config), AdapRetinaNet)
    with pytest.raises(ValueError, match="'yolo' is not a known detector"):
        build_model({**config, "name": "yolo"})
    with pytest.raises(ValueError, match="model.regress_ranges is not a setting of adap_retinanet"):
        build_model({**config, "regress_ranges": [[-1, 16]]})


def test_min_objects_per_cut_must_be_a_positive_int():
    config = load_config(CONFIG_DIR / "fcos_synthetic.toml")["data"]
    for bad in (0, 2.5, "10"):
        with pytest.raises(ValueError, match="data.min_objects_per_cut must be an int >= 1"):
            train_dataset(DataConfig.from_config({**config, "min_objects_per_cut": bad}))


def test_overrides_are_read_as_toml_values_and_typos_are_errors():
    config = load_config(DEFAULT_CONFIG, ["train.lr=0.02", "train.steps=[3, 4]", "data.root=somewhere/else"])
    assert config["train"]["lr"] == 0.02 and config["train"]["steps"] == [3, 4]
    assert config["data"]["root"] == "somewhere/else"
    with pytest.raises(ValueError, match="unknown key 'train.lrr'"):
        apply_override(config, "train.lrr=1")
    with pytest.raises(ValueError, match="no section 'trian'"):
        apply_override(config, "trian.lr=1")
    with pytest.raises(ValueError, match="key.sub=value"):
        apply_override(config, "train.lr")


def test_bad_config_files_are_errors_naming_the_file(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_config(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[train\nlr = ")
    with pytest.raises(ValueError, match="broken.toml is not valid TOML"):
        load_config(broken)


def test_schedule_warms_up_linearly_then_steps():
    optimizer = sgd(
        torch.nn.Linear(2, 2), lr=0.01, momentum=0.9, weight_decay=1e-4, bias_lr_mult=2, bias_decay_mult=0
    )
    assert optimizer.param_groups[1]["lr"] == 0.02 and optimizer.param_groups[1]["weight_decay"] == 0
    schedule = StepSchedule(optimizer, steps=[8, 11], warmup="linear", warmup_iters=500, warmup_ratio=1 / 3)
    assert schedule.factor(0, 0) == pytest.approx(1 / 3)
    assert schedule.factor(0, 250) == pytest.approx(2 / 3)
    assert schedule.factor(0, 500) == 1
    assert schedule.factor(8, 10_000) == pytest.approx(0.1)
    assert schedule.factor(11, 10_000) == pytest.approx(0.01)
    schedule.set(8, 10_000)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.001)
    assert optimizer.param_groups[1]["lr"] == pytest.approx(0.002)


def test_checkpoints_keep_the_last_k_of_each_kind_and_leave_no_temporary_files(tmp_path):
    for epoch in range(1, 5):
        save_checkpoint({"epoch": epoch}, tmp_path, f"iter_{10 * epoch - 5}", keep_last=2)
        save_checkpoint({"epoch": epoch}, tmp_path, f"epoch_{epoch}", keep_last=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "epoch_3.pth",
        "epoch_4.pth",
        "iter_25.pth",
        "iter_35.pth",
        "latest.pth",
    ]
    assert load_checkpoint(tmp_path / "latest.pth")["epoch"] == 4
    with pytest.raises(ValueError, match="does not exist"):
        load_checkpoint(tmp_path / "epoch_1.pth")
    with pytest.raises(ValueError, match="epoch_N or iter_N"):
        save_checkpoint({}, tmp_path, "best", keep_last=2)


def test_partial_writes_are_removed_and_resume_finds_its_checkpoint(tmp_path):
    (tmp_path / ".epoch_2.pth.abc123.tmp").write_bytes(b"half a checkpoint")
    assert [p.name for p in remove_partial_writes(tmp_path)] == [".epoch_2.pth.abc123.tmp"]
    assert not list(tmp_path.iterdir())
    assert resume_path(tmp_path, None, auto_resume=True) is None  # nothing to resume: a fresh start
    save_checkpoint({}, tmp_path, "epoch_1", keep_last=1)
    assert resume_path(tmp_path, None, auto_resume=False) is None
    assert resume_path(tmp_path, None, auto_resume=True) == tmp_path / "latest.pth"
    assert resume_path(tmp_path, "auto", auto_resume=False) == tmp_path / "latest.pth"
    assert resume_path(tmp_path, tmp_path / "epoch_1.pth", auto_resume=False) == tmp_path / "epoch_1.pth"
    with pytest.raises(ValueError, match="checkpoint to resume from .*epoch_7.pth does not exist"):
        resume_path(tmp_path, tmp_path / "epoch_7.pth", auto_resume=True)


def test_linear_lr_scaling():
    assert linear_scaled_lr(0.01, reference_batch=4, world_size=2, batch_size=2) == 0.01
    assert linear_scaled_lr(0.01, reference_batch=4, world_size=1, batch_size=2) == 0.005
    assert linear_scaled_lr(0.01, reference_batch=4, world_size=8, batch_size=2) == 0.04
    with pytest.raises(ValueError, match="train.reference_batch"):
        linear_scaled_lr(0.01, reference_batch=0, world_size=1, batch_size=2)


def test_mixed_precision_settings_per_device():
    assert resolve_precision("bf16", torch.device("cpu"), "train.amp") is torch.bfloat16
    assert resolve_precision("fp16", torch.device("cuda", 0), "train.amp") is torch.float16
    assert resolve_precision("bf16", torch.device("cuda", 0), "train.amp") is torch.bfloat16
    assert resolve_precision("fp32", torch.device("cuda", 0), "train.amp") is None
    with pytest.raises(ValueError, match="train.amp must be one of"):
        resolve_precision("fp8", torch.device("cpu"), "train.amp")


def test_training_smoke_run_then_the_saved_model_reloads_with_the_same_detections(smoke_overrides, tmp_path):
    config = load_config(DEFAULT_CONFIG, [*smoke_overrides, "train.amp=bf16", "test.precision=bf16"])
    model, metrics = train(config, tmp_path / "run", progress=False)
    assert 0 <= metrics["AP50_tiny"] <= 1
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert log[0]["iteration"] == 1 and "AP50_tiny" in log[-1]
    assert (tmp_path / "run" / "results_during.json").is_file()
    assert (
        "train.amp = 'bf16': torch.bfloat16 autocast, channels last"
        in (tmp_path / "run" / "train.log").read_text()
    )

    reloaded = build_model(config["model"])
    reloaded.load_state_dict(load_checkpoint(tmp_path / "run" / "latest.pth")["model"])
    device = next(model.parameters()).device  # the trained model stays on the run's device (a GPU)
    reloaded.to(device)
    tiles = torch.randn(2, 3, 128, 160, device=device)
    settings = TileSettings(nms_pre=50, per_tile_nms=True, score_threshold=0.0)
    for ours, theirs in zip(
        model.detect_tiles(tiles, settings), reloaded.detect_tiles(tiles, settings), strict=True
    ):
        for key in ("boxes", "scores", "labels"):
            assert torch.equal(ours[key], theirs[key])


def test_cli_argument_errors(tmp_path, capsys):
    assert train_cli.main(["train.no_such_key=1"]) == 2
    assert "unknown key" in capsys.readouterr().err
    assert train_cli.main([str(tmp_path / "missing.toml")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert test_cli.main([str(DEFAULT_CONFIG), str(tmp_path / "missing.pth")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert test_cli.main([str(DEFAULT_CONFIG), "x.pth", "--policy", "sideways"]) == 2
    assert "argument --policy: invalid choice: 'sideways'" in capsys.readouterr().err
    assert train_cli.main([f"run_dir={tmp_path}", "--resume-from", str(tmp_path / "gone.pth")]) == 2
    assert "gone.pth does not exist" in capsys.readouterr().err
    assert not (tmp_path / "config.toml").exists()  # stopped before anything else
    assert train_cli.main(["--resume", "--resume-from", "x.pth"]) == 2
    assert "not allowed with argument --resume" in capsys.readouterr().err
    other_model = tmp_path / "run" / "epoch_1.pth"
    other_model.parent.mkdir()
    save_checkpoint({"model": {"not_a_weight": torch.zeros(1)}}, other_model.parent, "epoch_1", 1)
    assert test_cli.main([str(DEFAULT_CONFIG), str(other_model)]) == 2
    assert "does not hold a model of this config" in capsys.readouterr().err


@pytest.fixture
def one_test_image(tiny_synthetic_set, tmp_path):
    """The tiny synthetic set's test annotations cut down to its 1280x720 image: 6 tiles (x in {0, 540, 640},
    y in {0, 208})."""
    coco = json.loads((tiny_synthetic_set / "annotations" / "test.json").read_text())
    image = coco["images"][1]
    assert (image["width"], image["height"]) == (1280, 720)
    coco["images"] = [image]
    coco["annotations"] = [a for a in coco["annotations"] if a["image_id"] == image["id"]]
    path = tmp_path / "test_one.json"
    path.write_text(json.dumps(coco))
    return path


SMALL_DETECTORS = {
    "retinanet_synthetic.toml": ["model.stacked_convs=1"],
    "faster_fpn_synthetic.toml": [
        "model.fc_channels=32",
        "model.rpn_train_nms_pre=200",
        "model.rpn_train_max_proposals=100",
        "model.roi_samples=64",
        "model.rpn_max_proposals=50",
    ],
}


@pytest.mark.parametrize("config_name", sorted(SMALL_DETECTORS))
def test_detector_trains_and_tests_through_the_clis_with_both_policies(
    config_name, tiny_synthetic_set, data_overrides, one_test_image, tmp_path, capsys
):
    run = tmp_path / "run"
    overrides = [
        f"run_dir={run}",
        *data_overrides(tiny_synthetic_set),
        f"data.test_annotations={one_test_image}",
        "data.sub_size=[160, 128]",
        "model.channels=16",
        "model.nms_pre=50",
        "model.score_threshold=0.0",  # an untrained model: keep every candidate to merge
        "train.epochs=1",
        "train.max_iters_per_epoch=8",
        "train.batch_size=2",
        "train.workers=0",
        "train.warmup_iters=2",
        "test.images_per_batch=1",
        *SMALL_DETECTORS[config_name],
    ]
    config = str(CONFIG_DIR / config_name)
    assert train_cli.main([config, *overrides, "--no-progress"]) == 0
    assert "AP50" in capsys.readouterr().out
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert all(math.isfinite(value) for record in log[:-1] for key, value in record.items() if "loss" in key)
    assert 0 <= log[-1]["AP50_tiny"] <= 1

    expected_class = FasterFPN if config_name.startswith("faster") else AdapRetinaNet
    assert isinstance(build_model(load_config(config, overrides)["model"]), expected_class)
    during = json.loads((run / "results_during.json").read_text())
    checkpoint = str(run / "latest.pth")
    assert test_cli.main([config, checkpoint, *overrides, "--policy", "after", "--no-progress"]) == 0
    after = json.loads((run / "results_after.json").read_text())
    for results, cap in ((during, 1000), (after, 6 * 200)):
        assert 0 < len(results) <= cap
        xywh = torch.tensor([r["bbox"] for r in results])
        boxes = torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], dim=1)
        assert (xywh >= 0).all() and (boxes[:, 2] <= 1280 + 1e-3).all() and (boxes[:, 3] <= 720 + 1e-3).all()
        assert float(boxes[:, 2].max()) > 640  # boxes of the second tile column, shifted back
        overlaps = (
            torchvision.ops.box_iou(boxes, boxes).fill_diagonal_(0).nan_to_num(0)
        )  # 0/0: zero-area boxes
        assert float(overlaps.max()) <= 0.5 + 1e-4  # one class: both policies' NMS 0.5 on the full image


def test_a_frozen_backbone_without_pretrained_weights_stops_before_training(tmp_path, capsys):
    frozen = ["model.backbone_norm=frozen", "model.frozen_stages=1"]  # the default run has pretrained = false
    assert train_cli.main([f"run_dir={tmp_path / 'run'}", *frozen, "--no-progress"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "model.pretrained = false" in error
    assert "model.backbone_norm = 'frozen'" in error and "model.frozen_stages = 1" in error
    assert not (tmp_path / "run" / "config.toml").exists()  # stopped before the run began
