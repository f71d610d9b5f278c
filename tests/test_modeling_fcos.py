import copy
import math
import re
import urllib.error
import warnings

import pytest
import torch
import torchvision
from cuda_marks import cuda_test
from torchvision.models import ResNet18_Weights, WeightsEnum

from tinyfast.modeling import AdapFCOS, BackboneFPN, FCOSConfig
from tinyfast.modeling.backbone import check_pretrained, local_imagenet_weights
from tinyfast.modeling.build import model_settings
from tinyfast.modeling.fcos import distance_iou


def small_config(**overrides) -> FCOSConfig:
    settings = dict(
        backbone="resnet18",
        pretrained=False,
        backbone_norm="group",
        frozen_stages=-1,
        channels=32,
        stacked_convs=2,
        nms_pre=100,
    )
    settings.update(overrides)
    return FCOSConfig(**settings)


def tiny_persons(generator, count=6, height=128, width=160):
    xy = torch.rand(count, 2, generator=generator) * torch.tensor([width - 20.0, height - 30.0])
    size = torch.rand(count, 1, generator=generator) * 8 + 4
    boxes = torch.cat([xy, xy + torch.cat([size, size * 2], dim=1)], dim=1)
    return {"boxes": boxes, "labels": torch.zeros(count, dtype=torch.int64)}


def test_backbone_gives_p2_to_p6_and_freezes_the_stem_and_first_stage():
    backbone = BackboneFPN("resnet18", out_channels=32, pretrained=False)
    features = backbone(torch.zeros(1, 3, 128, 160))
    assert [tuple(f.shape) for f in features] == [
        (1, 32, 32, 40),
        (1, 32, 16, 20),
        (1, 32, 8, 10),
        (1, 32, 4, 5),
        (1, 32, 2, 3),
    ]
    assert not any(p.requires_grad for p in backbone.stem.parameters())
    assert not any(p.requires_grad for p in backbone.stages[0].parameters())
    assert all(p.requires_grad for p in backbone.stages[1].parameters())


@pytest.mark.parametrize("name", ["resnet18", "regnet_x_400mf", "regnet_y_400mf", "regnet_y_800mf"])
def test_fewer_levels_stop_the_network_at_the_stage_the_last_level_needs(name):
    full = BackboneFPN(name, out_channels=16, pretrained=False, norm="group")
    three = BackboneFPN(name, out_channels=16, pretrained=False, norm="group", strides=(4, 8, 16))
    images = torch.zeros(2, 3, 128, 160)
    assert [tuple(f.shape) for f in full(images)] == [(2, 16, 128 // s, 160 // s) for s in (4, 8, 16, 32)] + [
        (2, 16, 2, 3)
    ]
    assert [tuple(f.shape) for f in three(images)] == [(2, 16, 128 // s, 160 // s) for s in (4, 8, 16)]
    assert len(three.stages) == 3
    assert sum(p.numel() for p in three.parameters()) < sum(p.numel() for p in full.parameters()) / 2


def test_bad_backbone_settings_name_the_setting():
    with pytest.raises(ValueError, match="backbone must be one of"):
        BackboneFPN("resnet19", pretrained=False)
    with pytest.raises(ValueError, match="strides must be the first levels"):
        BackboneFPN("resnet18", pretrained=False, strides=(4, 8, 16, 32, 64, 128))
    with pytest.raises(ValueError, match="strides must be the first levels"):
        AdapFCOS(small_config(strides=(8, 16, 32), regress_ranges=((-1, 32), (32, 64), (64, math.inf))))
    with pytest.raises(ValueError, match="regress_ranges must have one"):
        AdapFCOS(small_config(strides=(4, 8, 16)))


def test_fcos_on_three_levels_trains_and_detects():
    torch.manual_seed(0)
    config = small_config(
        backbone="regnet_y_400mf", strides=(4, 8, 16), regress_ranges=((-1, 16), (16, 32), (32, math.inf))
    )
    model = AdapFCOS(config).train()
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(2, 3, 128, 160)
    losses = model(images, [tiny_persons(generator), tiny_persons(generator)])
    sum(losses.values()).backward()
    assert all(torch.isfinite(v) for v in losses.values())
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    found = model.eval()(images)
    assert len(found) == 2 and all(f["boxes"].shape[1] == 4 for f in found)


def _network_unreachable(*args, **kwargs):
    raise urllib.error.URLError("[Errno 101] Network is unreachable")


def test_missing_pretrained_weights_offline_warn_and_fall_back_to_random_init(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setattr(torch.hub, "urlopen", _network_unreachable)
    where = re.escape(f"put resnet18-f37072fd.pth there (from {ResNet18_Weights.IMAGENET1K_V1.url})")
    with pytest.warns(
        UserWarning,
        match=f"not in {re.escape(str(tmp_path / 'checkpoints'))} .*Network is unreachable"
        f".*random initialisation.*{where}",
    ):
        assert local_imagenet_weights("resnet18") is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        BackboneFPN("resnet18", pretrained=False)


def test_distance_iou_is_the_iou_of_the_decoded_boxes():
    generator = torch.Generator().manual_seed(3)
    predicted = torch.rand(200, 4, generator=generator) * 10
    target = torch.rand(200, 4, generator=generator) * 10
    predicted[:20] = target[:20]  # identical
    predicted[20:40, [0, 2]] = 0  # zero width
    target[40:50] = 0  # zero-area target
    predicted[50:60] = 0  # both zero-area
    target[60:70] = target[60:70] * 1e6  # huge
    predicted, target = predicted.double(), target.double()
    point = torch.rand(200, 2, generator=generator, dtype=torch.float64) * 50

    def boxes(distances):
        return torch.cat([point - distances[:, :2], point + distances[:, 2:]], dim=1)

    expected = torchvision.ops.box_iou(boxes(predicted), boxes(target)).diagonal().nan_to_num(0.0)
    torch.testing.assert_close(distance_iou(predicted, target), expected)
    assert torch.equal(distance_iou(target[:20], target[:20]), torch.ones(20, dtype=torch.float64))


def losses_of_plain_and_changed(**change):
    """The losses of one small batch under the default settings and under `change`, same weights."""
    generator = torch.Generator().manual_seed(2)
    targets = [tiny_persons(generator, height=64, width=96)]
    images = torch.randn(1, 3, 64, 96, generator=generator)
    torch.manual_seed(0)
    plain = AdapFCOS(small_config(channels=16, stacked_convs=1)).train()
    changed = AdapFCOS(small_config(channels=16, stacked_convs=1, **change)).train()
    changed.load_state_dict(plain.state_dict())
    return plain(images, targets), changed(images, targets), changed


def test_iou_quality_target_changes_only_the_quality_loss_and_leaves_the_boxes_alone():
    reference, losses, iou = losses_of_plain_and_changed(quality_target="iou")
    for name in ("loss_cls", "loss_bbox"):
        torch.testing.assert_close(losses[name], reference[name])
    assert torch.isfinite(losses["loss_centerness"])
    assert not torch.allclose(losses["loss_centerness"], reference["loss_centerness"])
    losses["loss_centerness"].backward()
    assert iou.head.bbox_pred.weight.grad is None or not iou.head.bbox_pred.weight.grad.any()
    assert iou.head.centerness.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="quality_target"):
        model_settings({"name": "adap_fcos", "quality_target": "giou"})


def test_training_step_gives_finite_losses_and_gradients_only_where_trainable():
    torch.manual_seed(0)
    model = AdapFCOS(small_config(backbone_norm="frozen", frozen_stages=1)).train()
    generator = torch.Generator().manual_seed(0)
    targets = [
        tiny_persons(generator),
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},
    ]
    losses = model(torch.randn(2, 3, 128, 160), targets)
    assert set(losses) == {"loss_cls", "loss_bbox", "loss_centerness"}
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    assert model.backbone.stem[0].weight.grad is None
    assert model.head.cls_logits.weight.grad is not None


def test_loss_bbox_weight_scales_the_box_loss_alone():
    reference, losses, _ = losses_of_plain_and_changed(loss_bbox_weight=2.5)
    assert reference["loss_bbox"] > 0
    torch.testing.assert_close(losses["loss_bbox"], 2.5 * reference["loss_bbox"])
    for name in ("loss_cls", "loss_centerness"):
        torch.testing.assert_close(losses[name], reference[name])


def test_under_autocast_the_losses_are_float32_and_close_to_float32_training():
    torch.manual_seed(0)
    model = AdapFCOS(small_config(channels=16, stacked_convs=1)).train()
    generator = torch.Generator().manual_seed(1)
    targets = [tiny_persons(generator, height=64, width=96) for _ in range(2)]
    images = torch.randn(2, 3, 64, 96)
    reference = model(images, targets)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert model.head(model.backbone(images))[0][0].dtype == torch.bfloat16  # the head's logits are half
        losses = model(images, targets)
    for name, value in losses.items():
        assert value.dtype == torch.float32 and torch.isfinite(value)
        torch.testing.assert_close(value, reference[name], rtol=0.05, atol=0.01)
    sum(losses.values()).backward()
    assert torch.isfinite(model.head.cls_logits.weight.grad).all()


@cuda_test
@pytest.mark.parametrize("dtype", [None, torch.bfloat16, torch.float16])
def test_a_training_step_on_the_gpu_matches_the_cpu_within_its_precision(dtype):
    torch.manual_seed(0)
    model = AdapFCOS(small_config(channels=16, stacked_convs=1)).train()
    generator = torch.Generator().manual_seed(1)
    targets = [tiny_persons(generator, height=64, width=96) for _ in range(2)]
    images = torch.randn(2, 3, 64, 96)
    reference = model(images, targets)
    gpu = copy.deepcopy(model).cuda()
    gpu_targets = [{key: value.cuda() for key, value in target.items()} for target in targets]
    with torch.autocast("cuda", dtype=dtype, enabled=dtype is not None):
        losses = gpu(images.cuda(), gpu_targets)
    tolerance = {"rtol": 1e-3, "atol": 1e-4} if dtype is None else {"rtol": 0.05, "atol": 0.01}
    for name, value in losses.items():
        assert value.dtype == torch.float32
        torch.testing.assert_close(value.cpu(), reference[name].detach(), **tolerance)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype is torch.float16)
    initial_scale = scaler.get_scale() if scaler.is_enabled() else 1.0
    scaler.scale(sum(losses.values())).backward()
    scaler.step(torch.optim.SGD(gpu.parameters(), lr=0.01))
    scaler.update()
    finite = all(torch.isfinite(p.grad).all() for p in gpu.parameters() if p.grad is not None)
    assert finite or scaler.get_scale() < initial_scale  # an overflow: the scaler skipped the step, backs off


def test_loss_falls_when_fitting_one_image():
    torch.manual_seed(0)
    model = AdapFCOS(small_config()).train()
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(1, 3, 128, 160, generator=generator)
    targets = [tiny_persons(generator)]
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(trainable, lr=0.01, momentum=0.9)
    history = []
    for _ in range(40):
        losses = model(images, targets)
        optimizer.zero_grad()
        sum(losses.values()).backward()
        torch.nn.utils.clip_grad_norm_(trainable, 35)
        optimizer.step()
        history.append({name: value.item() for name, value in losses.items()})
    assert history[-1]["loss_cls"] < 0.8 * history[0]["loss_cls"]
    assert history[-1]["loss_centerness"] < 0.95 * history[0]["loss_centerness"]
    assert sum(history[-1].values()) < 0.9 * sum(history[0].values())


def test_inference_gives_candidates_inside_the_image():
    torch.manual_seed(0)
    model = AdapFCOS(small_config(score_threshold=0.0)).eval()
    detections = model(torch.randn(2, 3, 128, 160))
    assert len(detections) == 2
    for found in detections:
        assert found["boxes"].shape[1] == 4 and len(found["boxes"]) == len(found["scores"]) == len(
            found["labels"]
        )
        assert len(found["boxes"]) <= 100 * 5  # nms_pre per level
        assert (found["boxes"][:, 0::2] >= 0).all() and (found["boxes"][:, 0::2] <= 160).all()
        assert (found["boxes"][:, 1::2] >= 0).all() and (found["boxes"][:, 1::2] <= 128).all()
        assert ((found["scores"] >= 0) & (found["scores"] <= 1)).all()


def test_missing_pretrained_weights_are_downloaded_through_torchvision_with_progress(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    calls = []

    def download(weights, progress):  # stands in for the network: what the weights API would write
        calls.append((weights, progress))
        (tmp_path / "checkpoints").mkdir(exist_ok=True)
        (tmp_path / "checkpoints" / "resnet18-f37072fd.pth").touch()

    monkeypatch.setattr(WeightsEnum, "get_state_dict", download)
    assert local_imagenet_weights("resnet18") is ResNet18_Weights.IMAGENET1K_V1
    assert calls == [(ResNet18_Weights.IMAGENET1K_V1, True)]
    assert local_imagenet_weights("resnet18") is ResNet18_Weights.IMAGENET1K_V1  # now cached: no download
    assert len(calls) == 1


def test_frozen_backbone_without_pretrained_weights_stops_before_training(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setattr(torch.hub, "urlopen", _network_unreachable)
    names = r"model.backbone_norm = 'frozen' and model.frozen_stages = 1 .*model.pretrained"
    with pytest.raises(ValueError, match=f"{names} = false"):
        check_pretrained(
            {"backbone": "resnet18", "pretrained": False, "backbone_norm": "frozen", "frozen_stages": 1}
        )
    with (
        pytest.warns(UserWarning, match="could not be downloaded"),
        pytest.raises(ValueError, match=f"{names} = true but they are not available"),
    ):
        check_pretrained(
            {"backbone": "resnet18", "pretrained": True, "backbone_norm": "frozen", "frozen_stages": 1}
        )
    with pytest.raises(ValueError, match="model.frozen_stages = 0"):  # trained BatchNorm, frozen stem
        check_pretrained(
            {"backbone": "resnet18", "pretrained": False, "backbone_norm": "batch", "frozen_stages": 0}
        )
    check_pretrained(
        {"backbone": "resnet18", "pretrained": False, "backbone_norm": "batch", "frozen_stages": -1}
    )
