"""P2PNet: proposals, the Hungarian matching against brute force, losses that train, inference, config."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from tinyfast.modeling.build import build_model, model_kind, model_settings, policy_for_model
from tinyfast.modeling.p2pnet import P2PNet, P2PNetConfig, cell_proposals, match_points

pytest.importorskip("scipy")

TINY = P2PNetConfig(
    backbone="resnet18",
    pretrained=False,
    backbone_norm="batch",
    frozen_stages=-1,
    channels=16,
    strides=(4, 8),
    point_stride=4,
    stacked_convs=1,
    head_group_norm=True,
)


def brute_force_cost(cost: torch.Tensor) -> float:
    """The least total cost of a one-to-one assignment covering the smaller side, by enumeration."""
    rows, cols = cost.shape
    if rows >= cols:
        return min(
            sum(float(cost[r, c]) for c, r in enumerate(p)) for p in itertools.permutations(range(rows), cols)
        )
    return min(
        sum(float(cost[r, c]) for r, c in enumerate(p)) for p in itertools.permutations(range(cols), rows)
    )


def matching_cost(pred, probs, gt, labels, dw, cw):
    return dw * torch.cdist(pred.double(), gt.double()) - cw * probs.double()[:, labels]


@pytest.mark.parametrize("seed", range(12))
def test_matching_is_one_to_one_and_optimal_against_brute_force(seed):
    generator = torch.Generator().manual_seed(seed)
    num_pred = int(torch.randint(1, 7, (), generator=generator))
    num_gt = int(torch.randint(1, 6, (), generator=generator))
    pred = torch.rand(num_pred, 2, generator=generator) * 20
    if seed % 3 == 0:  # ties: proposals on the same spot, GTs on the same spot
        pred[1:] = pred[0]
    gt = torch.rand(num_gt, 2, generator=generator) * 20
    if seed % 4 == 1:
        gt[:] = gt[0]
    probs = torch.rand(num_pred, 3, generator=generator).softmax(-1)
    labels = torch.randint(0, 2, (num_gt,), generator=generator)
    pred_index, gt_index = match_points(pred, probs, gt, labels, 0.05, 1.0)
    assert len(pred_index) == min(num_pred, num_gt)
    assert len(set(pred_index.tolist())) == len(pred_index) and len(set(gt_index.tolist())) == len(gt_index)
    cost = matching_cost(pred, probs, gt, labels, 0.05, 1.0)
    assert float(cost[pred_index, gt_index].sum()) == pytest.approx(brute_force_cost(cost), abs=1e-9)


def test_matching_takes_the_class_score_into_account_and_handles_empty_and_nan():
    pred = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    gt = torch.tensor([[0.0, 0.0]])
    confident_second = torch.tensor([[0.9, 0.1], [0.1, 0.9]])  # columns: class 0, no object
    labels = torch.tensor([0])
    assert match_points(pred, confident_second, gt, labels, 0.05, 1.0)[0].tolist() == [0]
    assert match_points(pred, confident_second.flip(0), gt, labels, 0.05, 1.0)[0].tolist() == [1]
    assert match_points(pred, confident_second, gt, labels, 10.0, 1.0)[0].tolist() == [0]  # distance wins
    empty = match_points(pred, confident_second, torch.zeros(0, 2), labels[:0], 0.05, 1.0)
    assert [len(i) for i in empty] == [0, 0]
    nan_pred = torch.tensor([[math.nan, 0.0], [3.0, 0.0]])
    pred_index, gt_index = match_points(nan_pred, confident_second, gt, labels, 0.05, 1.0)
    assert pred_index.tolist() == [1] and gt_index.tolist() == [0]


def test_proposals_are_a_regular_grid_inside_each_cell():
    points = cell_proposals(2, 3, 8, 2)
    assert points.shape == (2 * 3 * 4, 2)
    assert points[:4].tolist() == [[2.0, 2.0], [6.0, 2.0], [2.0, 6.0], [6.0, 6.0]]  # cell (0, 0)
    assert points[4:8].tolist() == [
        [10.0, 2.0],
        [14.0, 2.0],
        [10.0, 6.0],
        [14.0, 6.0],
    ]  # cell (0, 1): x first
    assert cell_proposals(1, 1, 4, 1).tolist() == [[2.0, 2.0]]


def toy_batch(seed: int = 0):
    """Two 64x64 images, dark with a few bright 3x3 squares; targets: their centres, labels 0 or 1 (1 for
    the red ones)."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.zeros(2, 3, 64, 64)
    targets = []
    for image in range(2):
        centres = torch.randint(4, 60, (4, 2), generator=generator)
        labels = torch.tensor([0, 1, 0, 1])
        for (x, y), label in zip(centres.tolist(), labels.tolist(), strict=True):
            images[image, :, y - 1 : y + 2, x - 1 : x + 2] = (
                2.0 if label == 0 else torch.tensor([2.0, -1, -1]).view(3, 1, 1)
            )
        targets.append({"points": centres.float() + 0.5, "labels": labels, "boxes": torch.zeros(4, 4)})
    return images, targets


@pytest.mark.parametrize("class_loss", ["softmax", "focal"])
def test_losses_are_finite_and_decrease_over_a_few_steps_with_several_classes(class_loss):
    torch.manual_seed(0)
    model = P2PNet(P2PNetConfig(**{**TINY.__dict__, "num_classes": 2, "class_loss": class_loss})).train()
    images, targets = toy_batch()
    targets = [{key: t[key] for key in ("points", "labels")} for t in targets]  # no boxes: points only
    optimizer = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    totals = []
    for _ in range(25):
        losses = model(images, targets)
        assert set(losses) == {"loss_cls", "loss_points"}
        total = sum(losses.values())
        assert torch.isfinite(total)
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        totals.append(float(total.detach()))
    assert sum(totals[-5:]) / 5 < 0.7 * sum(totals[:5]) / 5


def plain_focal(logits: torch.Tensor, targets: torch.Tensor, alpha: float, gamma: float) -> torch.Tensor:
    p = logits.double().sigmoid()
    t = targets.double()
    cross_entropy = -(t * p.log() + (1 - t) * (1 - p).log())
    p_t = p * t + (1 - p) * (1 - t)
    return (cross_entropy * (1 - p_t) ** gamma * (alpha * t + (1 - alpha) * (1 - t))).sum()


def test_focal_class_loss_is_the_sigmoid_focal_loss_of_the_matched_proposals_per_point():
    torch.manual_seed(1)
    config = P2PNetConfig(**{**TINY.__dict__, "num_classes": 2, "class_loss": "focal", "focal_gamma": 1.5})
    model = P2PNet(config).train()
    images, targets = toy_batch()
    with torch.no_grad():
        initial, _ = model.predict_proposals(images)
    assert initial.shape[-1] == 2  # no no-object logit: one sigmoid per class
    start = model.class_probs(initial)
    assert abs(float(start.median()) - 0.01) < 0.001 and float(start.max()) < 0.05  # the focal prior
    torch.manual_seed(2)
    with torch.no_grad():  # away from the prior, so that the matching depends on the scores
        model.head.cls_logits.bias.normal_(-2.0, 1.0)
        logits, points = model.predict_proposals(images)
    losses = model(images, targets)
    expected, num_points = torch.zeros((), dtype=torch.float64), 0
    for image, target in enumerate(targets):
        pred, gt = match_points(
            points[image], logits[image].sigmoid(), target["points"], target["labels"], 0.05, 1.0
        )
        one_hot = torch.zeros_like(logits[image])
        one_hot[pred, target["labels"][gt]] = 1.0
        expected += plain_focal(logits[image], one_hot, 0.25, 1.5)
        num_points += len(gt)
    assert torch.allclose(losses["loss_cls"].double(), expected / num_points, rtol=1e-4)


def test_an_image_without_points_trains_and_a_target_without_points_is_a_clear_error():
    model = P2PNet(TINY).train()
    images, targets = toy_batch()
    empty = [{"points": torch.zeros(0, 2), "labels": torch.zeros(0, dtype=torch.long)}] * 2
    losses = model(images, empty)
    assert float(losses["loss_points"]) == 0 and torch.isfinite(losses["loss_cls"])
    with pytest.raises(ValueError, match="trained on points.*set data.points"):
        model(images, [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets])


@pytest.mark.parametrize("class_loss", ["softmax", "focal"])
def test_inference_gives_points_scores_labels_and_sizes_inside_each_image(class_loss):
    settings = {"score_threshold": 0.0, "max_points": 50, "class_loss": class_loss}
    model = P2PNet(P2PNetConfig(**{**TINY.__dict__, **settings}))
    images = torch.randn(2, 3, 64, 96)
    found = model.locate(images, [(64, 96), (40, 30)])
    for result, (height, width) in zip(found, [(64, 96), (40, 30)], strict=True):
        assert set(result) == {"points", "scores", "labels", "sizes"}
        assert len(result["points"]) == 50 and (result["sizes"] == 4).all()
        assert (result["points"][:, 0] <= width).all() and (result["points"][:, 1] <= height).all()
        assert (result["points"] >= 0).all() and (result["scores"][:-1] >= result["scores"][1:]).all()
    model.eval()
    assert len(model(images)) == 2


def test_config_is_registered_and_checked():
    settings = {"name": "p2pnet", "backbone": "resnet18", "pretrained": False, "strides": [4, 8, 16]}
    assert isinstance(build_model({**settings, "backbone_norm": "batch"}), P2PNet)
    assert model_kind(settings) == "localiser" and model_kind({"name": "adap_fcos"}) == "detector"
    with pytest.raises(ValueError, match="'p2pnet' is a point model: tiled inference with a box merge"):
        policy_for_model("during", settings)
    with pytest.raises(ValueError, match=r"model.point_stride must be an int in \[4, 8\], got 16"):
        model_settings({**settings, "point_stride": 16})
    with pytest.raises(ValueError, match="model.point_stride must be 4 or 8 and one of model.strides"):
        model_settings({**settings, "point_stride": 6})
    with pytest.raises(ValueError, match="model.point_stride must be 4 or 8"):
        model_settings({**settings, "strides": [4], "point_stride": 8})
    with pytest.raises(ValueError, match="model.no_object_weight must be a finite number > 0"):
        model_settings({**settings, "no_object_weight": 0})
