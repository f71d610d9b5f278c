"""CPR: bags, bilinear sampling, the refinement rules on hand-built bags, losses that train, config."""

from __future__ import annotations

import pytest
import torch

from tinyfast.modeling.build import build_model, model_settings
from tinyfast.modeling.cpr import CPR, CPRConfig, bag_offsets, bag_points, refine_bags, sample_at

TINY = CPRConfig(
    backbone="resnet18",
    pretrained=False,
    backbone_norm="batch",
    frozen_stages=-1,
    channels=16,
    strides=(4, 8),
    stacked_convs=1,
    head_group_norm=True,
    bag_radius=2.0,
)


def test_a_bag_is_the_grid_in_the_circle_centred_on_its_point_and_clipped_to_the_image():
    offsets = bag_offsets(2.0)
    expected = {(dx, dy) for dx in range(-2, 3) for dy in range(-2, 3) if dx * dx + dy * dy <= 4}
    assert {tuple(map(int, o)) for o in offsets.tolist()} == expected and len(offsets) == 13
    assert offsets[0].tolist() == [0.0, 0.0]
    assert len(bag_offsets(5.0)) == 81 and len(bag_offsets(0.5)) == 1
    points, valid = bag_points(torch.tensor([[2.0, 30.0]]), 2.0, 4, (40, 50))
    assert points.shape == (1, 13, 2) and points[0, 0].tolist() == [2.0, 30.0]
    assert (valid[0] == (points[0, :, 0] >= 0)).all()  # x = -2 and -6 are outside, y stays in


def test_sampling_is_exact_at_cell_centres_and_bilinear_between():
    maps = torch.arange(12.0).reshape(1, 3, 4)
    centres = torch.tensor([[2.0, 2.0], [6.0, 2.0], [14.0, 10.0]])  # cells (0, 0), (0, 1), (2, 3)
    assert sample_at(maps, centres, 4)[:, 0].tolist() == pytest.approx([0.0, 1.0, 11.0], abs=1e-5)
    between = sample_at(maps, torch.tensor([[4.0, 4.0]]), 4)  # middle of cells (0,0), (0,1), (1,0), (1,1)
    assert float(between) == pytest.approx((0 + 1 + 4 + 5) / 4)


def hand_built_bags():
    """Two objects 10 px apart; bag 0 around (0, 0), bag 1 around (10, 0), 3 points each."""
    annotated = torch.tensor([[0.0, 0.0], [10.0, 0.0]])
    bags = torch.tensor([[[0.0, 0.0], [2.0, 0.0], [6.0, 0.0]], [[10.0, 0.0], [8.0, 0.0], [4.0, 0.0]]])
    return bags, annotated


def test_refinement_is_the_score_weighted_mean_of_the_points_over_the_threshold():
    bags, annotated = hand_built_bags()
    valid = torch.ones(2, 3, dtype=torch.bool)
    scores = torch.tensor([[0.2, 0.6, 0.0], [0.5, 0.04, 0.0]])
    refined, counts = refine_bags(bags, valid, scores, annotated, threshold=0.05)
    assert refined[0].tolist() == pytest.approx([(0.2 * 0 + 0.6 * 2) / 0.8, 0.0])
    assert refined[1].tolist() == pytest.approx([10.0, 0.0])  # 0.04 < 0.05: only its own point counts
    assert counts.tolist() == [2, 1]
    assert refine_bags(bags, valid, scores, annotated, threshold=0.04)[1].tolist() == [2, 2]  # >= counts


def test_refinement_keeps_only_points_nearer_their_own_annotated_point():
    bags, annotated = hand_built_bags()
    valid = torch.ones(2, 3, dtype=torch.bool)
    scores = torch.tensor(
        [[0.1, 0.1, 0.9], [0.1, 0.1, 0.9]]
    )  # (6, 0) is nearer (10, 0), (4, 0) nearer (0, 0)
    refined, counts = refine_bags(bags, valid, scores, annotated, threshold=0.05)
    assert counts.tolist() == [2, 2]
    assert torch.allclose(refined, torch.tensor([[1.0, 0.0], [9.0, 0.0]]))
    # An equidistant point belongs to neither; another image's object (`others`) takes points too.
    tie = refine_bags(
        torch.tensor([[[5.0, 0.0]]]),
        torch.ones(1, 1, dtype=torch.bool),
        torch.ones(1, 1),
        annotated[:1],
        0.05,
        others=annotated,
    )
    assert tie[1].tolist() == [0] and tie[0].tolist() == [[0.0, 0.0]]


def test_refinement_falls_back_to_the_annotated_point():
    bags, annotated = hand_built_bags()
    scores = torch.full((2, 3), 0.9)
    invalid = torch.zeros(2, 3, dtype=torch.bool)
    refined, counts = refine_bags(bags, invalid, scores, annotated, threshold=0.05)
    assert torch.equal(refined, annotated) and counts.tolist() == [0, 0]
    refined, counts = refine_bags(
        bags, torch.ones(2, 3, dtype=torch.bool), torch.zeros(2, 3), annotated, 0.05
    )
    assert torch.equal(refined, annotated) and counts.tolist() == [0, 0]
    empty = refine_bags(
        torch.zeros(0, 3, 2), torch.zeros(0, 3, dtype=torch.bool), torch.zeros(0, 3), torch.zeros(0, 2), 0.05
    )
    assert empty[0].shape == (0, 2) and empty[1].shape == (0,)
    # A point at the same place as the bag's own annotated point (a duplicate click) is its own.
    same = refine_bags(
        bags[:1],
        torch.ones(1, 3, dtype=torch.bool),
        torch.full((1, 3), 0.5),
        annotated[:1],
        0.05,
        others=torch.cat([annotated[:1], annotated[:1]]),
    )
    assert same[1].tolist() == [3]


def toy_batch(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    images = torch.zeros(2, 3, 64, 64)
    targets = []
    for image in range(2):
        centres = torch.randint(6, 58, (3, 2), generator=generator)
        for x, y in centres.tolist():
            images[image, :, y - 2 : y + 3, x - 1 : x + 2] = 2.0
        clicks = centres.float() + torch.randint(-2, 3, (3, 2), generator=generator)
        targets.append({"points": clicks, "labels": torch.zeros(3, dtype=torch.long)})
    return images, targets


def test_losses_are_finite_and_decrease_over_a_few_steps():
    torch.manual_seed(0)
    model = CPR(TINY).train()
    images, targets = toy_batch()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    totals = []
    for _ in range(25):
        losses = model(images, targets)
        assert set(losses) == {"loss_mil", "loss_negative", "loss_point"}
        total = sum(losses.values())
        assert torch.isfinite(total)
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        totals.append(float(total.detach()))
    assert sum(totals[-5:]) / 5 < 0.7 * sum(totals[:5]) / 5
    refined = model.refine(
        images, [(64, 64)] * 2, [t["points"] for t in targets], [t["labels"] for t in targets]
    )
    for (points, counts), target in zip(refined, targets, strict=True):
        assert points.shape == target["points"].shape and counts.shape == (3,)
        assert ((points - target["points"]).norm(dim=1) <= 2 * 4 + 1e-4).all()  # within the bag's circle


def test_no_points_and_bad_targets():
    model = CPR(TINY).train()
    images, _ = toy_batch()
    empty = [{"points": torch.zeros(0, 2), "labels": torch.zeros(0, dtype=torch.long)}] * 2
    losses = model(images, empty)
    assert all(torch.isfinite(v) for v in losses.values()) and float(losses["loss_mil"]) == 0
    with pytest.raises(ValueError, match="CPR is trained on points"):
        model(images, [{"boxes": torch.zeros(1, 4), "labels": torch.zeros(1, dtype=torch.long)}] * 2)
    with pytest.raises(ValueError, match="refine\\(\\) refines points"):
        model(images)


def test_config_is_registered_and_checked():
    settings = {"name": "cpr", "backbone": "resnet18", "pretrained": False, "backbone_norm": "batch"}
    assert isinstance(build_model(settings), CPR)
    with pytest.raises(ValueError, match="model.bag_radius must be a finite number > 0"):
        model_settings({**settings, "bag_radius": 0})
    with pytest.raises(ValueError, match="model.refine_threshold must be a finite number in \\[0, 1\\]"):
        model_settings({**settings, "refine_threshold": 1.5})
    with pytest.raises(ValueError, match="CPR runs on the stride-4 level"):
        build_model({**settings, "strides": [8]})
