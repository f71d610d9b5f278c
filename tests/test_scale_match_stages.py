"""The reference's Scale Match configs: pre-training on a COCO-format source with SM or MSM, then
fine-tuning from it; each shipped pair loads, and a few iterations of each stage run on synthetic sets."""

import shutil

import pytest

from tinyfast.data.synthetic import generate_source
from tinyfast.engine.config import load_config, shipped_configs
from tinyfast.engine.trainer import train

PAIRS = [
    (f"{detector}_{kind}_coco_pretrain", f"{detector}_{kind}_tinyperson_finetune")
    for detector in ("faster_fpn", "retinanet_clip")
    for kind in ("sm", "msm")
]


@pytest.mark.parametrize(("pretrain", "finetune"), PAIRS)
def test_the_shipped_pairs_pretrain_on_coco_persons_and_fine_tune_from_the_pretrained_run(pretrain, finetune):
    assert {pretrain, finetune} <= set(shipped_configs())
    first, second = load_config(pretrain), load_config(finetune)
    data = first["data"]
    assert data["scale_match"] == pretrain.split("_")[-3] and data["train_categories"] == ["person"]
    assert data["train_annotations"].endswith("data/coco/annotations/instances_train2017.json")
    assert data["scale_match_target"].endswith("data/tiny_set/annotations/tiny_set_train.json")
    assert second["model"]["init_from"] == first["run_dir"]
    assert second["data"]["scale_match"] == "none"
    assert second["data"]["train_annotations"].endswith("data/tiny_set/annotations/tiny_set_train.json")
    assert first["model"]["name"] == second["model"]["name"]
    assert (
        first["train"]["grad_clip"]
        == second["train"]["grad_clip"]
        == (1.0 if pretrain.startswith("retinanet_clip") else 0.0)
    )


@pytest.fixture(scope="module")
def sets(tiny_synthetic_set, tmp_path_factory):
    """The tiny target set with a 4-image COCO-like source set beside it."""
    root = tmp_path_factory.mktemp("stages") / "data"
    shutil.copytree(tiny_synthetic_set, root)
    generate_source(root, num_images=4, seed=0)
    return root


SMALL_MODEL = ["model.backbone=resnet18", "model.channels=16", "model.pretrained=false"]
SMOKE = ["train.epochs=1", "train.max_iters_per_epoch=2", "train.batch_size=2", "train.workers=0",
         "train.warmup_iters=1", "test.eval_interval=-1", "data.sub_size=[160, 128]"]  # fmt: skip


def small_head(name: str) -> list[str]:
    return ["model.fc_channels=32"] if name.startswith("faster_fpn") else ["model.stacked_convs=1"]


@pytest.mark.parametrize(
    ("pretrain", "finetune"), [PAIRS[0], PAIRS[3]], ids=["faster_fpn_sm", "retinanet_clip_msm"]
)
def test_a_few_iterations_of_each_stage(pretrain, finetune, sets, tmp_path):
    first_run, second_run = tmp_path / "pretrain", tmp_path / "finetune"
    first = load_config(pretrain, [
        f"run_dir={first_run}", f"data.root={sets}", "data.train_annotations=annotations/source.json",
        "data.train_images=images", "data.test_annotations=annotations/test.json", "data.test_images=images",
        "data.scale_match_target=annotations/train.json", *SMALL_MODEL, *small_head(pretrain),
        "model.backbone_norm=batch", "model.frozen_stages=-1", *SMOKE,
    ])  # fmt: skip
    train(first, first_run, progress=False)
    assert (first_run / "latest.pth").is_file()
    second = load_config(finetune, [
        f"run_dir={second_run}", f"data.root={sets}", "data.train_annotations=annotations/train.json",
        "data.train_images=images", "data.test_annotations=annotations/test.json", "data.test_images=images",
        "data.min_objects_per_cut=1", f"model.init_from={first_run}", *SMALL_MODEL, *small_head(finetune),
        *SMOKE,
    ])  # fmt: skip
    assert second["model"]["backbone_norm"] == "frozen"  # the backbone must come whole from the first stage
    train(second, second_run, progress=False)
    line = next(line for line in (second_run / "train.log").read_text().splitlines() if "init_from" in line)
    assert f"model.init_from {first_run / 'latest.pth'}: loaded" in line
    # Every tensor of the model loads (BatchNorm's num_batches_tracked has no place in frozen BatchNorm).
    assert "of another shape" not in line and "not in the checkpoint" not in line
