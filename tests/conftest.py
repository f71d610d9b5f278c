import os
from pathlib import Path

import pytest

# ultralytics (the optional YOLO adapter's tests) checks the network when imported and installs missing
# plugins on use unless told not to: these machines are offline, and tests must not reach out.
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "false")


@pytest.fixture(scope="session")
def tiny_synthetic_set(tmp_path_factory) -> Path:
    """The tiny synthetic set (6 training, 2 test images), written once per session; copy it to change it."""
    from tinyfast.data.synthetic import generate

    root = tmp_path_factory.mktemp("tiny_synthetic")
    generate(root, "tiny", seed=0)
    return root


def _data_overrides(root: Path) -> list[str]:
    return [
        f"data.root={root}",
        f"data.train_annotations={root / 'annotations' / 'train.json'}",
        f"data.test_annotations={root / 'annotations' / 'test.json'}",
        f"data.train_images={root / 'images'}",
        f"data.test_images={root / 'images'}",
    ]


@pytest.fixture
def data_overrides():
    """`data_overrides(root)`: the config overrides that point the data paths at a synthetic set in `root`."""
    return _data_overrides


def tiny_run_overrides(root: Path, run_dir: Path) -> list[str]:
    """Config overrides for training runs of a few iterations on the CPU: the synthetic set in `root`, a
    16-channel ResNet-18 FCOS on every non-empty 160x128 cut, 8 iterations, run folder `run_dir`."""
    return [
        f"run_dir={run_dir}",
        *_data_overrides(root),
        "data.synthetic_preset=tiny",
        "data.sub_size=[160, 128]",
        "data.min_objects_per_cut=1",
        "model.channels=16",
        "model.stacked_convs=1",
        "model.nms_pre=50",
        "train.epochs=1",
        "train.max_iters_per_epoch=8",
        "train.batch_size=2",
        "train.workers=0",
        "train.warmup_iters=5",
    ]


@pytest.fixture
def smoke_overrides(tiny_synthetic_set, tmp_path) -> list[str]:
    """`tiny_run_overrides` on the tiny synthetic set, run folder `tmp_path / "run"`."""
    return tiny_run_overrides(tiny_synthetic_set, tmp_path / "run")
