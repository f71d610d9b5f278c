"""bench/real_images.sh on the CPU at a tiny budget: the GPU script's code path (label conversion, a budgeted
bf16 training of each detector, tiled inference on valid images, the table), at sizes CI can afford."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.report import DETECTION_METRICS, DETECTION_SPEEDS

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data" / "tinyperson-rpi640"

# From scratch and small, whatever the shipped rpi640 configs choose: every detector takes these keys.
TINY = [
    "model.backbone=resnet18",
    "model.pretrained=false",
    "model.backbone_norm=batch",
    "model.frozen_stages=-1",
    "model.channels=16",
    "data.sub_size=[160, 128]",
    "train.batch_size=2",
    "train.workers=0",
]


@pytest.mark.skipif(not DATA.is_dir(), reason="the rpi640 images (../shared/data) are not here")
def test_the_real_images_script_trains_each_detector_and_writes_one_table(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    command = ["bash", "bench/real_images.sh", "--budget", "2", "--data", str(DATA), "--valid-images", "2",
               *TINY]  # fmt: skip
    environment = {**os.environ, "PYTHON": sys.executable, "OUT": str(out), "RUNS": str(tmp_path / "runs"),
                   "CUDA_VISIBLE_DEVICES": ""}  # fmt: skip
    finished = subprocess.run(
        command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=1500
    )
    assert finished.returncode == 0, finished.stdout[-4000:] + finished.stderr[-4000:]
    assert "no GPU: the installed build of the ops runs on the CPU" in finished.stdout
    saved = json.loads((out / "real_images.json").read_text())
    assert [row["name"] for row in saved["rows"]] == ["Adap FCOS", "Adap RetinaNet", "Faster-FPN"]
    for row in saved["rows"]:
        assert row["images"] == 2 and row["iterations"] >= 1 and row["training_s"] > 0
        assert all(0 <= row[key] <= 1 or row[key] == -1 for key, _ in DETECTION_METRICS)  # -1: no such GT
        assert all(row[key] > 0 for key, _ in DETECTION_SPEEDS)
        run = tmp_path / "runs" / row["config"].removesuffix("_rpi640")
        assert "train.budget_s = 2: after" in (run / "train.log").read_text()
        assert "torch.bfloat16 autocast" in (run / "train.log").read_text()
    markdown = (out / "real_images.md").read_text()
    lines = markdown.splitlines()
    assert (
        lines[0].startswith("Measured ") and "2 s each (bf16)" in lines[0] and "2 `valid` images" in lines[0]
    )
    header = "|  | AP50 tiny | tiny1 | tiny2 | tiny3 | small | AP50 all | AR50 tiny | training images/s | "
    assert lines[2] == header + "inference images/s |"
    assert [line.split(" | ")[0] for line in lines[4:]] == ["| Adap FCOS", "| Adap RetinaNet", "| Faster-FPN"]
    assert markdown in finished.stdout and markdown in (out / "real_images.log").read_text()
    # Every valid image is scored against the json the converter wrote from its labels.
    valid = json.loads((tmp_path / "runs" / "annotations" / "valid_first2.json").read_text())
    assert len(valid["images"]) == 2 and valid["annotations"]
    assert {a["image_id"] for a in valid["annotations"]} <= {info["id"] for info in valid["images"]}
