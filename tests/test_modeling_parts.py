"""The pieces the detectors share: anchors, the delta box coder, the random sampler, the dense heads'
per-level selection, the per-tile NMS, the multi-level RoIAlign and the heads' GroupNorm."""

import math

import pytest
import torch
import torchvision
from torchvision.models.detection.anchor_utils import AnchorGenerator as TorchvisionAnchorGenerator
from torchvision.models.detection.image_list import ImageList

from tinyfast.modeling.anchors import AnchorGenerator, octave_scales
from tinyfast.modeling.box_coder import DeltaBoxCoder
from tinyfast.modeling.faster_fpn import multi_level_roi_align
from tinyfast.modeling.layers import GroupNorm
from tinyfast.modeling.postprocess import (
    TileDetections,
    select_level_candidates,
    tile_nms,
    with_tile_settings,
)
from tinyfast.modeling.retinanet import RetinaNetConfig
from tinyfast.modeling.sampler import sample_boxes
from tinyfast.tiling import TileSettings
from tinyfast.utils.tensors import first_of_each_group

STRIDES = (4, 8, 16, 32, 64)
SIZES = [(16, 32), (8, 16), (4, 8), (2, 4), (1, 2)]  # a 64x128 image


def test_adap_retinanet_anchors_on_p2_are_8_10_and_12_7_px_centred_on_the_cell_corners():
    scales = octave_scales(2, 3)
    assert scales == pytest.approx((2, 2 * 2 ** (1 / 3), 2 * 2 ** (2 / 3)))
    generator = AnchorGenerator(STRIDES, scales, (0.5, 1.0, 2.0))
    assert generator.num_anchors == 9
    anchors = generator(SIZES)
    assert [len(a) for a in anchors] == [h * w * 9 for h, w in SIZES]
    square = anchors[0][3:6]  # cell (0, 0), ratio 1, the three scales
    assert (square[:, 2] - square[:, 0]).tolist() == pytest.approx([8.0, 10.0794, 12.6992], abs=1e-4)
    assert torch.equal((square[:, :2] + square[:, 2:]) / 2, torch.zeros(3, 2))
    second_cell = anchors[0][9:18]  # x moves by one stride first
    assert torch.allclose(second_cell - anchors[0][:9], torch.tensor([4.0, 0, 4, 0]).expand(9, 4))
    next_row = anchors[0][32 * 9 : 33 * 9]
    assert torch.allclose(next_row - anchors[0][:9], torch.tensor([0, 4.0, 0, 4]).expand(9, 4))
    tall = anchors[0][6]  # ratio 2 = height / width
    assert float((tall[3] - tall[1]) / (tall[2] - tall[0])) == pytest.approx(2.0)


@pytest.mark.parametrize(
    ("scales", "ratios"), [((2.0,), (0.5, 1.0, 2.0)), (octave_scales(2, 3), (0.5, 1, 2))]
)
def test_anchors_match_torchvision_up_to_its_rounding_of_the_base_anchors(scales, ratios):
    ours = AnchorGenerator(STRIDES, scales, ratios)(SIZES)
    theirs = TorchvisionAnchorGenerator(
        tuple(tuple(stride * scale for scale in scales) for stride in STRIDES),
        (tuple(ratios),) * len(STRIDES),
    )(ImageList(torch.zeros(1, 3, 64, 128), [(64, 128)]), [torch.zeros(1, 1, h, w) for h, w in SIZES])[0]
    ours = torch.cat(ours)
    assert ours.shape == theirs.shape
    assert float((ours - theirs).abs().max()) <= 0.5
    whole = ((ours - ours.round()).abs() < 1e-4).all(dim=1)  # where no rounding happens, identical
    assert bool(whole.any()) and torch.allclose(ours[whole], theirs[whole], atol=1e-4)


def test_anchor_generator_rejects_bad_arguments():
    with pytest.raises(ValueError, match="positive"):
        AnchorGenerator(STRIDES, (0.0,), (1.0,))
    with pytest.raises(ValueError, match="empty"):
        AnchorGenerator(STRIDES, (), (1.0,))
    with pytest.raises(ValueError, match="feature sizes"):
        AnchorGenerator(STRIDES, (2.0,), (1.0,))(SIZES[:2])


def random_boxes(generator, count, size=100.0):
    corner = torch.rand(count, 2, generator=generator) * size
    extent = torch.rand(count, 2, generator=generator) * size / 4 + 0.5
    return torch.cat([corner, corner + extent], dim=1)


@pytest.mark.parametrize("stds", [(1.0, 1.0, 1.0, 1.0), (0.1, 0.1, 0.2, 0.2)])
def test_box_coder_matches_torchvision_and_round_trips(stds):
    generator = torch.Generator().manual_seed(0)
    anchors, targets = random_boxes(generator, 200), random_boxes(generator, 200)
    coder = DeltaBoxCoder(stds)
    reference = torchvision.models.detection._utils.BoxCoder(tuple(1 / s for s in stds))
    deltas = coder.encode(anchors, targets)
    assert torch.allclose(deltas, reference.encode_single(targets, anchors), rtol=1e-5, atol=1e-5)
    assert torch.allclose(coder.decode(anchors, deltas), targets, atol=1e-4)
    assert torch.allclose(coder.decode(anchors, deltas), reference.decode_single(deltas, anchors), atol=1e-4)


def test_box_coder_clamps_sizes_clips_to_the_image_and_broadcasts_classes():
    coder = DeltaBoxCoder((0.1, 0.1, 0.2, 0.2))
    anchor = torch.tensor([[10.0, 10.0, 20.0, 20.0]])
    huge = coder.decode(anchor, torch.tensor([[0.0, 0.0, 100.0, 100.0]]))
    assert float(huge[0, 2] - huge[0, 0]) == pytest.approx(10 * 1000 / 16, rel=1e-4)  # log ratio clamped
    clipped = coder.decode(anchor, torch.tensor([[0.0, 0.0, 100.0, 100.0]]), image_size=(30, 40))
    assert clipped.tolist() == [[0.0, 0.0, 40.0, 30.0]]
    per_class = coder.decode(anchor[:, None], torch.zeros(1, 3, 4))
    assert per_class.shape == (1, 3, 4) and torch.equal(per_class[0], anchor.expand(3, 4))
    with pytest.raises(ValueError, match="stds"):
        DeltaBoxCoder((1.0, 1.0, 0.0, 1.0))


def test_sampler_draws_at_most_the_positive_share_then_fills_with_negatives():
    torch.manual_seed(0)
    # image 0: 30 positives, 100 negatives, 10 ignored; image 1: 2 positives, 5 negatives
    assigned = torch.cat(
        [
            torch.tensor([3] * 30 + [-1] * 100 + [-2] * 10)[torch.randperm(140)],
            torch.tensor([0, 1] + [-1] * 5),
        ]
    )
    positive, negative = sample_boxes(assigned, [140, 7], num=40, positive_fraction=0.25)
    assert (assigned[positive] >= 0).all() and (assigned[negative] == -1).all()
    assert len(set(positive.tolist())) == len(positive) and len(set(negative.tolist())) == len(negative)
    first = positive < 140
    assert int(first.sum()) == 10 and int((negative < 140).sum()) == 30
    assert sorted(positive[~first].tolist()) == [140, 141] and len(negative[negative >= 140]) == 5
    again, _ = sample_boxes(assigned, [140, 7], num=40, positive_fraction=0.25)
    assert set(again[again < 140].tolist()) != set(positive[first].tolist())  # random draws


def test_sampler_handles_empty_images_and_rejects_bad_arguments():
    positive, negative = sample_boxes(torch.zeros(0, dtype=torch.int64), [0, 0], 8, 0.5)
    assert positive.shape == negative.shape == (0,)
    with pytest.raises(ValueError, match="counts"):
        sample_boxes(torch.zeros(3, dtype=torch.int64), [2], 8, 0.5)
    with pytest.raises(ValueError, match="positive_fraction"):
        sample_boxes(torch.zeros(3, dtype=torch.int64), [3], 8, 1.5)


@pytest.mark.parametrize("with_quality", [False, True])
def test_level_candidates_keep_the_top_locations_then_threshold_the_raw_score(with_quality):
    generator = torch.Generator().manual_seed(0)
    scores = torch.rand(2, 500, 3, generator=generator)
    quality = torch.rand(2, 500, generator=generator) if with_quality else None
    tile, location, label, score = select_level_candidates(scores, 50, 0.3, quality)
    ranking = scores * (quality[..., None] if with_quality else 1)
    assert (tile[1:] >= tile[:-1]).all()
    for image in range(2):
        mine = tile == image
        top = set(ranking[image].max(1).values.argsort(descending=True)[:50].tolist())
        expected = {(p, k) for p in top for k in range(3) if scores[image, p, k] > 0.3}
        assert set(zip(location[mine].tolist(), label[mine].tolist(), strict=True)) == expected
    assert torch.equal(score, ranking[tile, location, label])
    everything, _, _, _ = select_level_candidates(scores, -1, 0.0)
    assert len(everything) == 2 * 1500
    empty = select_level_candidates(torch.zeros(2, 0, 1), 10, 0.05)
    assert all(len(part) == 0 for part in empty)
    assert all(len(part) == 0 for part in select_level_candidates(torch.zeros(0, 7, 1), 3, 0.05))


def test_tile_settings_override_the_config_and_tile_nms_suppresses_and_caps():
    config = with_tile_settings(RetinaNetConfig(), TileSettings(nms_pre=None, score_threshold=0.2))
    assert (config.nms_pre, config.score_threshold) == (2000, 0.2)
    boxes = torch.tensor([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30], [0, 0, 10, 10.0]])
    scores, labels = torch.tensor([0.9, 0.8, 0.7, 0.6]), torch.tensor([0, 0, 0, 1])
    # Tile 0 holds the four boxes, tile 1 the same four (with scores lowered) and tile 2 none: the NMS and
    # the cap work tile by tile although one call handles the batch.
    found = TileDetections(
        torch.cat([boxes, boxes]),
        torch.cat([scores, scores - 0.5]),
        torch.cat([labels, labels]),
        torch.tensor([0] * 4 + [1] * 4),
        3,
    )
    kept, kept_1, kept_2 = tile_nms(found, TileSettings(per_tile_nms=True), 0.5, 2).per_tile()
    assert kept["scores"].tolist() == pytest.approx([0.9, 0.7, 0.6])  # class 1 is not suppressed by class 0
    assert kept_1["scores"].tolist() == pytest.approx([0.4, 0.2, 0.1]) and len(kept_2["boxes"]) == 0
    capped, capped_1, _ = tile_nms(found, TileSettings(per_tile_nms=False, max_per_tile=2), 0.5, 2).per_tile()
    assert capped["scores"].tolist() == pytest.approx([0.9, 0.8])
    assert capped_1["scores"].tolist() == pytest.approx([0.4, 0.3])
    untouched, untouched_1, _ = tile_nms(found, TileSettings(per_tile_nms=False), 0.5, 2).per_tile()
    assert len(untouched["boxes"]) == len(untouched_1["boxes"]) == 4


def test_first_of_each_group_ranks_rows_within_their_group():
    groups = torch.tensor([0, 0, 0, 2, 2, 3])
    assert first_of_each_group(groups, 2).tolist() == [True, True, False, True, True, True]
    assert first_of_each_group(groups, 0).tolist() == [False] * 6
    assert len(first_of_each_group(torch.zeros(0, dtype=torch.int64), 5)) == 0
    # rows in any order (as the point merge caps points ranked by score): ranks count earlier rows only
    mixed = torch.tensor([3, 0, 3, 1, 0, 3, 0])
    assert first_of_each_group(mixed, 2).tolist() == [True, True, True, True, True, False, False]


def test_multi_level_roi_align_pools_each_roi_on_the_fpn_level_of_its_size():
    generator = torch.Generator().manual_seed(0)
    features = [torch.randn(2, 3, 64 // s, 80 // s, generator=generator) for s in STRIDES[:4]]
    sides = torch.tensor([4.0, 40, 55.9, 56, 111, 112, 224, 300, 800])
    rois = torch.stack([torch.arange(9) % 2, 5 + 0 * sides, 3 + 0 * sides, 5 + sides, 3 + sides], 1).float()
    pooled = multi_level_roi_align(features, rois, STRIDES[:4], 7)
    # the reference's mapping (mmdetection's SingleRoIExtractor, finest_scale 56)
    levels = torch.floor(torch.log2(sides / 56 + 1e-6)).clamp(0, 3).long()
    assert levels.tolist() == [0, 0, 0, 0, 0, 1, 2, 2, 3]
    for index, level in enumerate(levels.tolist()):
        expected = torchvision.ops.roi_align(
            features[level], rois[index : index + 1], 7, 1 / STRIDES[level], sampling_ratio=0, aligned=True
        )
        assert torch.equal(pooled[index : index + 1], expected), index
    assert multi_level_roi_align(features, rois[:0], STRIDES[:4], 7).shape == (0, 3, 7, 7)
    assert not math.isnan(float(pooled.sum()))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_group_norm_of_a_channels_last_tensor_is_torchs_and_stays_channels_last(dtype):
    torch.manual_seed(0)
    ours, reference = GroupNorm(4, 8), torch.nn.GroupNorm(4, 8)
    with torch.no_grad():
        ours.weight.uniform_(0.5, 2), ours.bias.uniform_(-1, 1)
    reference.load_state_dict(ours.state_dict())
    image = (torch.randn(2, 8, 5, 7) * 3 + 1).to(dtype)
    for memory_format in (torch.channels_last, torch.contiguous_format):
        x = image.clone().contiguous(memory_format=memory_format).requires_grad_()
        y = image.clone().requires_grad_()
        out, expected = ours(x), reference(y)
        assert out.is_contiguous(memory_format=memory_format) and out.dtype == dtype
        tolerance = {"atol": 2e-2, "rtol": 2e-2} if dtype == torch.bfloat16 else {}
        torch.testing.assert_close(out, expected, **tolerance)
        weights = torch.randn_like(expected)
        (out * weights).sum().backward(), (expected * weights).sum().backward()
        torch.testing.assert_close(x.grad, y.grad, **tolerance)
        torch.testing.assert_close(ours.weight.grad, reference.weight.grad, **tolerance)
        ours.zero_grad(), reference.zero_grad()
