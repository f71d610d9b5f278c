"""The merge-policy study (tinyfast/study.py): with a detector that finds every painted person exactly, the
caps per image and per evaluation must take away what they can, and the border-aware merge must leave one
box per person; the command line runs on a tiny model and writes its table, json and plot."""

import json

import pytest
import torch
from painted_persons import PaintedPersonDetector, painted_image
from torchvision.io import write_jpeg

from tinyfast.engine.checkpoint import save_checkpoint
from tinyfast.engine.config import DEFAULT_CONFIG, load_config
from tinyfast.modeling.build import build_model
from tinyfast.study import SETTINGS, Setting, label, label_places, main, markdown_table, run_study, spread

FULL_HD = (1920, 1080)
CELL = 48  # one person per cell of a grid: no two persons overlap
PERSON_COUNT = 300
MODEL_TEST_SETTINGS = {"name": "adap_fcos", "nms_pre": 2000, "nms_iou": 0.6, "score_threshold": 0.05}


def scattered_persons(count, seed=0):
    generator = torch.Generator().manual_seed(seed)
    columns, rows = FULL_HD[0] // CELL, FULL_HD[1] // CELL
    cells = torch.randperm(columns * rows, generator=generator)[:count]
    sizes = torch.randint(6, 21, (count, 2), generator=generator)  # all tiny: the tiny recall is the recall
    offsets = (torch.rand(count, 2, generator=generator) * (CELL - sizes)).long()
    x1 = (cells % columns) * CELL + offsets[:, 0]
    y1 = (cells // columns) * CELL + offsets[:, 1]
    return torch.stack([x1, y1, x1 + sizes[:, 0], y1 + sizes[:, 1]], dim=1).tolist()


def ground_truth(persons):
    annotations = [
        {"id": k + 1, "image_id": 0, "category_id": 1, "bbox": [x1, y1, x2 - x1, y2 - y1],
         "area": (x2 - x1) * (y2 - y1), "iscrowd": 0}
        for k, (x1, y1, x2, y2) in enumerate(persons)
    ]  # fmt: skip
    image = {"id": 0, "file_name": "0.jpg", "width": FULL_HD[0], "height": FULL_HD[1]}
    return {"images": [image], "annotations": annotations, "categories": [{"id": 1, "name": "person"}]}


@pytest.fixture(scope="module")
def study():
    persons = scattered_persons(PERSON_COUNT)
    detector = PaintedPersonDetector(score_step=0.002)  # scores 0.9 .. 0.3, cut boxes 0.2 less
    settings = SETTINGS + (Setting(True, 2000, 100, 1000, truncated="drop"),)
    rows = run_study(
        detector, [painted_image(persons, FULL_HD)], [0], ground_truth(persons), MODEL_TEST_SETTINGS, settings
    )
    return {label(row.setting): row for row in rows}, detector


def test_every_setting_gets_a_row_with_its_inference_time(study):
    rows, detector = study
    assert len(rows) == len(SETTINGS) + 1
    assert all(row.seconds_per_image > 0 for row in rows.values())
    assert rows["Y 2000/1000/200"].seconds_per_image == rows["Y 2000/1000/1000"].seconds_per_image
    # the warm-up and one tiled inference per distinct setting, 12 tiles each in batches of 8 and 4
    distinct = len({row.setting.inference for row in rows.values()})
    assert len(detector.calls) == 2 * (1 + distinct)


def test_the_study_tiles_as_its_tiling_options_say():
    persons = scattered_persons(20)
    detector = PaintedPersonDetector(score_step=0.002)
    settings = SETTINGS[:2]
    tiling = {"tile": FULL_HD, "overlap": (0, 0), "scales": (0.5,)}
    rows = run_study(
        detector, [painted_image(persons, FULL_HD)], [0], ground_truth(persons), MODEL_TEST_SETTINGS,
        settings, tiling=tiling,
    )  # fmt: skip
    assert len(rows) == 2
    assert len(detector.calls) == 1 + len(settings)  # one whole-image tile a call, not the 12 of 640x512
    assert all(shape[-2:] == (540, 960) for shape, _ in detector.calls)  # seen at half size


def test_caps_per_image_and_per_evaluation_take_away_recall(study):
    rows, _ = study
    for name, row in rows.items():
        setting = row.setting
        cap = min(setting.max_det, setting.max_per_img) if setting.run_time_crop else setting.max_det
        assert row.metrics["AR50_tiny"] <= min(1.0, cap / PERSON_COUNT) + 1e-9, name
    assert rows["Y 1000/100/200"].metrics["AP50_tiny"] < 0.34
    assert rows["Y 2000/1000/1000"].metrics["AR50_tiny"] == 1.0
    assert rows["N 1000/500/1000"].metrics["AR50_tiny"] == 1.0


def test_dropping_truncated_boxes_leaves_one_exact_box_per_person(study):
    rows, _ = study
    assert rows["Y 2000/1000/1000 drop"].metrics["AP50_tiny"] == pytest.approx(1.0)
    # the reference keeps the truncated duplicates NMS cannot remove; downweighting ranks them lower
    kept, downweighted = rows["Y 2000/1000/1000"], rows["Y 2000/1000/1000 downweight"]
    assert kept.metrics["AP50_tiny"] < downweighted.metrics["AP50_tiny"] < 1.0
    assert rows["Y 2000/100/1000 drop"].metrics["AP50_tiny"] < 0.34  # 100 of 300 persons at most


def test_markdown_table_has_the_reference_columns(study):
    rows, _ = study
    table = markdown_table(list(rows.values()), "caption")
    lines = table.splitlines()
    assert lines[0] == "caption" and lines[2].startswith("| run-time crop | nms_pre | max_per_img | max_det")
    assert len(lines) == 4 + len(rows)
    assert "| N | 1000/crop | 100/crop | 200 | keep |" in table and table.count("| drop |") == 2
    assert lines[4].endswith("| 42.93 |")


def test_spread_picks_images_across_the_set():
    assert spread(2, 8) == [0, 7] and spread(3, 5) == [0, 2, 4] and spread(1, 4) == [0]
    assert spread(9, 4) == [0, 1, 2, 3]


def test_labels_of_coinciding_points_do_not_overlap():
    points = [(1.64, 20.52), (1.64, 20.52), (1.64, 20.52), (1.70, 26.8), (1.70, 26.8), (1.65, 15.5)]
    labels = ["Y 1000/1000/200", "Y 2000/1000/200", "Y 5000/1000/200", "Y 2000/1000/1000 downweight",
              "Y 2000/1000/1000 drop", "Y 1000/100/200"]  # fmt: skip
    places = label_places(points, labels)
    assert len(set(places[:3])) == 3 and places[3] != places[4]
    assert places[3][2] == "right"  # a label at the right edge goes left of its point
    assert places[5] == (4, 2, "left")  # a point alone keeps the first place


def test_command_line_writes_the_table_json_and_plot(tmp_path, capsys):
    persons = [(10, 10, 22, 34), (100, 60, 108, 76)]
    images = tmp_path / "images"
    images.mkdir()
    gt = ground_truth(persons)
    gt["images"] = [{"id": k, "file_name": f"{k}.jpg", "width": 160, "height": 128} for k in range(3)]
    for info in gt["images"]:
        write_jpeg(torch.randint(0, 256, (3, 128, 160), dtype=torch.uint8), str(images / info["file_name"]))
    (tmp_path / "test.json").write_text(json.dumps(gt))
    overrides = [
        f"run_dir={tmp_path / 'run'}",
        f"data.test_annotations={tmp_path / 'test.json'}",
        f"data.test_images={images}",
        f"data.train_annotations={tmp_path / 'test.json'}",  # exists: nothing is generated
        "model.channels=16",
        "model.stacked_convs=1",
        "test.tile=[80, 64]",
        "test.overlap=[0, 0]",
    ]
    config = load_config(DEFAULT_CONFIG, overrides)
    save_checkpoint({"model": build_model(config["model"]).state_dict()}, tmp_path / "run", "epoch_1", 1)

    assert main([str(DEFAULT_CONFIG), *overrides, "--quick"]) == 0
    out = tmp_path / "run" / "policies_fcos_synthetic"
    table = (out / "policies.md").read_text()
    assert "2 images, 2 persons" in table and len(table.splitlines()) == 4 + len(SETTINGS)
    assert "tiles 80x64 overlapping by 0x0" in table  # the config's [test] tiling
    saved = json.loads((out / "policies.json").read_text())
    assert [Setting(**row["setting"]) for row in saved["rows"]] == list(SETTINGS)
    assert (out / "policies.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert table in capsys.readouterr().out


def test_command_line_errors_name_the_problem(tmp_path, capsys):
    assert main([str(DEFAULT_CONFIG), str(tmp_path / "missing.pth")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main([str(DEFAULT_CONFIG), "--images", "0"]) == 2
    assert "argument --images: '0' is not an integer >= 1" in capsys.readouterr().err


def test_a_dense_model_runs_its_network_once_per_tile_batch_with_the_same_rows(monkeypatch):
    config = load_config(DEFAULT_CONFIG, ["model.channels=16", "model.stacked_convs=1"])
    torch.manual_seed(0)
    model = build_model(config["model"]).eval()
    persons = [(20, 30, 30, 50), (200, 100, 212, 118), (150, 200, 158, 214)]
    gt = ground_truth(persons)
    gt["images"] = [{"id": k, "file_name": f"{k}.jpg", "width": 320, "height": 256} for k in range(3)]
    images = [torch.randn(3, 256, 320, generator=torch.Generator().manual_seed(k)) for k in range(3)]
    tiling = {"tile": (160, 128), "overlap": (16, 16), "tile_batch_size": 4}
    study = {"images_per_batch": 2, "tiling": tiling}
    model_settings = config["model"]
    unshared = run_study(model.detect_tiles, images, [0, 1, 2], gt, model_settings, **study)
    networks = []
    tile_outputs = model.tile_outputs
    monkeypatch.setattr(
        model, "tile_outputs", lambda tiles: networks.append(len(tiles)) or tile_outputs(tiles)
    )
    shared = run_study(model, images, [0, 1, 2], gt, model_settings, **study)
    assert [row.metrics for row in shared] == [row.metrics for row in unshared]
    # 9 tiles an image (3 x 3): the warm-up's image, then each batch of images once, not once per setting
    assert networks == [4, 4, 1] + [4, 4, 4, 4, 2] + [4, 4, 1]
    assert all(row.seconds_per_image > 0 for row in shared)
