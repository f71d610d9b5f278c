"""Adap RetinaNet and Faster-FPN: training steps, losses against plain-PyTorch references given the
assignment op's output, smoke trainings where the loss falls, and inference."""

import copy
import dataclasses

import pytest
import torch
import torch.nn.functional as F
import torchvision
from cuda_marks import cuda_test

from tinyfast.modeling import AdapRetinaNet, FasterFPN, FasterFPNConfig, RetinaNetConfig
from tinyfast.ops import max_iou_assign
from tinyfast.tiling import TileSettings

HEIGHT, WIDTH = 64, 96
SMALL = dict(backbone="resnet18", pretrained=False, backbone_norm="group", frozen_stages=-1, channels=16)


def retinanet(**overrides) -> AdapRetinaNet:
    return AdapRetinaNet(RetinaNetConfig(**{**SMALL, "stacked_convs": 1, "nms_pre": 100, **overrides}))


def faster_fpn(**overrides) -> FasterFPN:
    settings = dict(
        fc_channels=32,
        rpn_train_nms_pre=300,
        rpn_train_max_proposals=100,
        roi_samples=64,
        nms_pre=100,
        rpn_max_proposals=100,
    )
    return FasterFPN(FasterFPNConfig(**{**SMALL, **settings, **overrides}))


def tiny_persons(generator, count=5):
    xy = torch.rand(count, 2, generator=generator) * torch.tensor([WIDTH - 14.0, HEIGHT - 26.0])
    size = torch.rand(count, 1, generator=generator) * 6 + 6
    boxes = torch.cat([xy, xy + torch.cat([size, size * 2], dim=1)], dim=1)
    return {"boxes": boxes, "labels": torch.zeros(count, dtype=torch.int64)}


def no_persons():
    return {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}


def focal_loss_sum(logits, targets, alpha=0.25, gamma=2.0):
    probability = logits.sigmoid()
    cross_entropy = -(targets * probability.log() + (1 - targets) * (1 - probability).log())
    p_t = probability * targets + (1 - probability) * (1 - targets)
    alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
    return (alpha_t * (1 - p_t) ** gamma * cross_entropy).sum()


def assign_one_image(boxes, gt_boxes, pos_iou, neg_iou, **options):
    """The op on one image alone (the models call it on the whole batch)."""
    assigned, _ = max_iou_assign(
        boxes,
        torch.tensor([len(boxes)]),
        gt_boxes,
        torch.tensor([len(gt_boxes)]),
        pos_iou,
        neg_iou,
        **options,
    )
    return assigned


def reference_encode(boxes, targets, stds=(1.0, 1.0, 1.0, 1.0)):
    coder = torchvision.models.detection._utils.BoxCoder(tuple(1 / s for s in stds))
    return coder.encode_single(targets, boxes)


@pytest.mark.parametrize("build", [retinanet, faster_fpn], ids=["retinanet", "faster_fpn"])
def test_training_step_gives_finite_losses_and_gradients_only_where_trainable(build):
    torch.manual_seed(0)
    model = build(backbone_norm="frozen", frozen_stages=1).train()
    generator = torch.Generator().manual_seed(0)
    losses = model(
        torch.randn(2, 3, HEIGHT, WIDTH, generator=generator), [tiny_persons(generator), no_persons()]
    )
    total = sum(losses.values())
    assert torch.isfinite(total) and all(value.dim() == 0 for value in losses.values())
    total.backward()
    assert model.backbone.stem[0].weight.grad is None
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert all(p.grad is not None for p in trainable)
    with pytest.raises(ValueError, match="needs targets"):
        model(torch.randn(1, 3, HEIGHT, WIDTH))


def test_retinanet_losses_equal_a_plain_reference_given_the_assignment():
    torch.manual_seed(0)
    model = retinanet().train()
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(2, 3, HEIGHT, WIDTH, generator=generator)
    targets = [tiny_persons(generator), tiny_persons(generator, count=3)]
    targets[1]["boxes"][1] = targets[1]["boxes"][0]  # two identical GTs
    logits, deltas = model.head(model.backbone(images))
    anchors = model.anchor_generator([tuple(level.shape[-2:]) for level in logits])
    losses = model.losses(logits, deltas, anchors, targets)

    anchors = torch.cat(anchors)
    classification, regression, normalizer = 0.0, 0.0, 0
    for image, target in enumerate(targets):
        image_logits = torch.cat([level[image].permute(1, 2, 0).reshape(-1, 1) for level in logits])
        image_deltas = torch.cat([level[image].permute(1, 2, 0).reshape(-1, 4) for level in deltas])
        assigned = assign_one_image(anchors, target["boxes"], 0.5, 0.4, min_pos_iou=0.0)
        positive = assigned >= 0
        assert bool(positive.any()) and bool((assigned == -2).any())
        counted = assigned != -2
        classification = classification + focal_loss_sum(
            image_logits[counted], positive[counted, None].float()
        )
        goal = reference_encode(anchors[positive], target["boxes"][assigned[positive]])
        regression = regression + (image_deltas[positive] - goal).abs().sum()
        normalizer += max(int(positive.sum()), 1)
    assert torch.allclose(losses["loss_cls"], classification / normalizer, rtol=1e-4)
    assert torch.allclose(losses["loss_bbox"], regression / normalizer, rtol=1e-4)


def test_rpn_losses_equal_a_plain_reference_when_every_anchor_is_sampled():
    torch.manual_seed(0)
    model = faster_fpn(rpn_samples=10**6, rpn_positive_fraction=0.5).train()
    generator = torch.Generator().manual_seed(2)
    images = torch.randn(2, 3, HEIGHT, WIDTH, generator=generator)
    gt_boxes = [tiny_persons(generator)["boxes"], torch.zeros(0, 4)]
    objectness, deltas = model.rpn_head(model.backbone(images))
    anchors = model.anchor_generator([tuple(level.shape[-2:]) for level in objectness])
    losses = model.rpn_losses(objectness, deltas, anchors, gt_boxes)

    anchors = torch.cat(anchors)
    classification, regression, normalizer = 0.0, 0.0, 0
    for image, boxes in enumerate(gt_boxes):
        image_objectness = torch.cat([level[image].permute(1, 2, 0).reshape(-1) for level in objectness])
        image_deltas = torch.cat([level[image].permute(1, 2, 0).reshape(-1, 4) for level in deltas])
        assigned = assign_one_image(anchors, boxes, 0.7, 0.3, min_pos_iou=0.3)
        positive, negative = assigned >= 0, assigned == -1
        sampled = positive | negative
        classification = classification + F.binary_cross_entropy_with_logits(
            image_objectness[sampled], positive[sampled].float(), reduction="sum"
        )
        goal = reference_encode(anchors[positive], boxes[assigned[positive]])
        regression = regression + (image_deltas[positive] - goal).abs().sum()
        normalizer += max(int(positive.sum()), 1) + max(int(negative.sum()), 1)
    assert torch.allclose(losses["loss_rpn_cls"], classification / normalizer, rtol=1e-4)
    assert torch.allclose(losses["loss_rpn_bbox"], regression / normalizer, rtol=1e-4)


def test_roi_losses_equal_a_plain_reference_with_the_gts_among_the_proposals():
    torch.manual_seed(0)
    model = faster_fpn(roi_samples=10**6).train()
    generator = torch.Generator().manual_seed(3)
    images = torch.randn(2, 3, HEIGHT, WIDTH, generator=generator)
    gt_boxes = [tiny_persons(generator)["boxes"], tiny_persons(generator, count=2)["boxes"]]
    gt_labels = torch.zeros(7, dtype=torch.int64)
    proposals = [gt[torch.arange(40) % len(gt)] + torch.randn(40, 4, generator=generator) for gt in gt_boxes]
    features = model.backbone(images)
    losses = model.roi_losses(features, proposals, gt_boxes, gt_labels)

    stride_of_level = {0: 4, 1: 8, 2: 16, 3: 32}
    classification, regression, count = 0.0, 0.0, 0
    for image, (boxes, gt) in enumerate(zip(proposals, gt_boxes, strict=True)):
        boxes = torch.cat([gt, boxes])
        assigned = assign_one_image(boxes, gt, 0.5, 0.5, low_quality=False)
        assert bool((assigned[: len(gt)] >= 0).all())  # a GT always matches itself
        side = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).sqrt()
        levels = torch.floor(torch.log2(side / 56 + 1e-6)).clamp(0, 3).long()
        for box, level, target in zip(boxes, levels.tolist(), assigned.tolist(), strict=True):
            roi = torch.cat([torch.tensor([float(image)]), box])[None]
            pooled = torchvision.ops.roi_align(
                features[level], roi, 7, 1 / stride_of_level[level], sampling_ratio=0, aligned=True
            )
            logits, deltas = model.box_head(pooled)
            label = 0 if target >= 0 else 1  # one class; background last
            classification = classification + F.cross_entropy(logits, torch.tensor([label]), reduction="sum")
            if target >= 0:
                goal = reference_encode(box[None], gt[target][None], (0.1, 0.1, 0.2, 0.2))
                regression = regression + (deltas - goal).abs().sum()
            count += 1
    assert torch.allclose(losses["loss_cls"], classification / count, rtol=1e-4)
    assert torch.allclose(losses["loss_bbox"], regression / count, rtol=1e-4)


@pytest.mark.parametrize("build", [retinanet, faster_fpn], ids=["retinanet", "faster_fpn"])
def test_loss_falls_in_a_few_iterations_fitting_one_image(build):
    torch.manual_seed(0)
    model = build(head_group_norm=True) if build is retinanet else build()
    model.train()
    generator = torch.Generator().manual_seed(4)
    images = torch.randn(1, 3, HEIGHT, WIDTH, generator=generator)
    targets = [tiny_persons(generator)]
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(trainable, lr=0.01, momentum=0.9)
    history = []
    for _ in range(10):
        losses = model(images, targets)
        optimizer.zero_grad()
        sum(losses.values()).backward()
        torch.nn.utils.clip_grad_norm_(trainable, 35)
        optimizer.step()
        history.append(sum(value.item() for value in losses.values()))
    assert history[-1] < 0.8 * history[0], history


@pytest.mark.parametrize("build", [retinanet, faster_fpn], ids=["retinanet", "faster_fpn"])
def test_detect_tiles_honours_the_tile_settings(build):
    torch.manual_seed(0)
    model = build(score_threshold=0.0)
    tiles = torch.randn(2, 3, HEIGHT, WIDTH)
    raw = model.detect_tiles(tiles, TileSettings(nms_pre=20, per_tile_nms=False, score_threshold=0.0))
    assert len(raw) == 2
    for found in raw:
        boxes = found["boxes"]
        assert len(boxes) > 0 and len(boxes) == len(found["scores"]) == len(found["labels"])
        assert (boxes[:, 0::2] >= 0).all() and (boxes[:, 0::2] <= WIDTH).all()
        assert (boxes[:, 1::2] >= 0).all() and (boxes[:, 1::2] <= HEIGHT).all()
        assert ((found["scores"] > 0) & (found["scores"] <= 1)).all() and (found["labels"] == 0).all()
    if build is retinanet:  # at most nms_pre anchors per level, all classes of each kept
        assert all(len(found["boxes"]) <= 20 * 5 for found in raw)
    settings = TileSettings(nms_pre=20, per_tile_nms=True, max_per_tile=7, score_threshold=0.0)
    for found in model.detect_tiles(tiles, settings):
        assert 0 < len(found["boxes"]) <= 7
        assert (found["scores"][:-1] >= found["scores"][1:]).all()
        iou = torchvision.ops.box_iou(found["boxes"], found["boxes"]).fill_diagonal_(0)
        assert float(iou.max()) <= model.config.nms_iou
    threshold = float(torch.cat([found["scores"] for found in raw]).median())
    settings = TileSettings(nms_pre=20, per_tile_nms=False, score_threshold=threshold)
    assert all((found["scores"] > threshold).all() for found in model.detect_tiles(tiles, settings))


def test_rpn_proposals_equal_a_plain_reference():
    torch.manual_seed(0)
    model = faster_fpn().eval()
    generator = torch.Generator().manual_seed(5)
    images = torch.randn(2, 3, HEIGHT, WIDTH, generator=generator)
    with torch.no_grad():
        for parameter in model.rpn_head.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.05)
        objectness, deltas = model.rpn_head(model.backbone(images))
    anchors = model.anchor_generator([tuple(level.shape[-2:]) for level in objectness])
    nms_pre, keep = 30, 50
    proposals = model.proposals(objectness, deltas, anchors, (HEIGHT, WIDTH), nms_pre, keep)

    coder = torchvision.models.detection._utils.BoxCoder((1.0, 1.0, 1.0, 1.0))
    for image in range(2):
        boxes, scores = [], []
        for level, level_anchors in enumerate(anchors):
            level_scores = objectness[level][image].permute(1, 2, 0).reshape(-1).sigmoid()
            level_deltas = deltas[level][image].permute(1, 2, 0).reshape(-1, 4)
            top = level_scores.argsort(descending=True)[:nms_pre]
            decoded = coder.decode_single(level_deltas[top], level_anchors[top])
            decoded = torchvision.ops.clip_boxes_to_image(decoded, (HEIGHT, WIDTH))
            valid = (decoded[:, 2] > decoded[:, 0]) & (decoded[:, 3] > decoded[:, 1])
            decoded, level_scores = decoded[valid], level_scores[top][valid]
            kept = torchvision.ops.nms(decoded, level_scores, 0.7)
            boxes.append(decoded[kept])
            scores.append(level_scores[kept])
        best = torch.cat(scores).argsort(descending=True)[:keep]
        expected = torch.cat(boxes)[best]
        assert proposals[image].shape == expected.shape and len(expected) > 10
        assert torch.allclose(proposals[image], expected, atol=1e-4)


def test_faster_fpn_needs_the_five_fpn_levels():
    with pytest.raises(ValueError, match="strides"):
        FasterFPN(dataclasses.replace(FasterFPNConfig(**SMALL), strides=(4, 8, 16, 32)))


def test_retinanet_on_three_levels_trains_and_detects():
    torch.manual_seed(0)
    model = retinanet(strides=(4, 8, 16)).train()
    assert len(model.backbone.stages) == 3
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(2, 3, HEIGHT, WIDTH)
    losses = model(images, [tiny_persons(generator), tiny_persons(generator)])
    sum(losses.values()).backward()
    assert all(torch.isfinite(v) for v in losses.values())
    found = model.eval()(images)
    assert len(found) == 2 and all(f["boxes"].shape[1] == 4 for f in found)


@cuda_test
@pytest.mark.parametrize("build", [retinanet, faster_fpn])
def test_on_the_gpu_training_and_detection_match_the_cpu(build, monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    torch.manual_seed(0)
    model = build().train()
    generator = torch.Generator().manual_seed(2)
    targets = [tiny_persons(generator), no_persons()]
    images = torch.randn(2, 3, HEIGHT, WIDTH, generator=generator)
    gpu = copy.deepcopy(model).cuda()
    losses = gpu(images.cuda(), [{key: value.cuda() for key, value in t.items()} for t in targets])
    if build is retinanet:  # Faster-FPN samples anchors and proposals at random: its losses differ by device
        reference = model(images, targets)
        for name, value in losses.items():
            torch.testing.assert_close(value.cpu(), reference[name].detach(), rtol=1e-3, atol=1e-4)
    sum(losses.values()).backward()
    assert all(p.grad is None or p.grad.isfinite().all() for p in gpu.parameters())

    settings = TileSettings(nms_pre=50, per_tile_nms=True, score_threshold=0.0)
    with torch.no_grad():
        on_cpu = model.eval().detect_tiles(images, settings)
        on_gpu = gpu.eval().detect_tiles(images.cuda(), settings)
    for cpu_tile, gpu_tile in zip(on_cpu, on_gpu, strict=True):
        assert gpu_tile["boxes"].device.type == "cuda" and len(gpu_tile["scores"]) > 0
        top_cpu = cpu_tile["scores"].sort(descending=True).values[:5]
        top_gpu = gpu_tile["scores"].cpu().sort(descending=True).values[:5]
        torch.testing.assert_close(top_gpu, top_cpu, rtol=1e-3, atol=1e-4)
