"""The batched post-processing of the three detectors (one selection per FPN level for all tiles of a batch,
one NMS call for all tiles) against the code it replaced, one tile and one level at a time
(`tests/reference/tile_postprocess.py`): the same boxes, scores and labels in the same order, to the bit.

On the CPU the sigmoid and exp of the batched code run tile by tile (`sigmoid_tile_by_tile`, `exp_in_runs`):
ATen's vectorised exp and its scalar one for the remainder of a SIMD run differ in the last bit (on ~7% of
float32 inputs with AVX512), so the batch a tile comes in would otherwise show in its scores.
"""

import numpy as np
import torch
from cuda_marks import cuda_test

from tests.reference import tile_postprocess as reference
from tinyfast.modeling import AdapFCOS, AdapRetinaNet, FasterFPN, FasterFPNConfig, FCOSConfig, RetinaNetConfig
from tinyfast.tiling import TileSettings

HEIGHT, WIDTH = 64, 96
SMALL = dict(
    backbone="resnet18", pretrained=False, backbone_norm="group", frozen_stages=-1, channels=16, num_classes=2
)
SETTINGS = [
    TileSettings(nms_pre=20, per_tile_nms=False, score_threshold=0.3),  # "during" with a dense head
    TileSettings(nms_pre=50, per_tile_nms=True, max_per_tile=7, score_threshold=0.05),  # "after"
    TileSettings(nms_pre=10**6, per_tile_nms=False, max_per_tile=5, score_threshold=0.0),  # all, capped
    TileSettings(nms_pre=30, per_tile_nms=True, score_threshold=0.999999),  # nothing left
]


def busy_fcos():
    torch.manual_seed(0)
    model = AdapFCOS(FCOSConfig(**SMALL, stacked_convs=1, nms_pre=100))
    with torch.no_grad():  # scores spread over (0, 1), boxes of a few strides that overlap
        torch.nn.init.zeros_(model.head.cls_logits.bias)
        torch.nn.init.normal_(model.head.cls_logits.weight, std=0.5)
        torch.nn.init.constant_(model.head.bbox_pred.bias, 2.0)
    return model


def busy_retinanet():
    torch.manual_seed(0)
    model = AdapRetinaNet(RetinaNetConfig(**SMALL, stacked_convs=1, nms_pre=100))
    with torch.no_grad():
        torch.nn.init.zeros_(model.head.cls_logits.bias)
        torch.nn.init.normal_(model.head.cls_logits.weight, std=0.5)
        torch.nn.init.normal_(model.head.bbox_pred.weight, std=0.05)
    return model


def busy_faster_fpn():
    torch.manual_seed(0)
    model = FasterFPN(FasterFPNConfig(**SMALL, fc_channels=32, nms_pre=100, rpn_max_proposals=60))
    with torch.no_grad():
        torch.nn.init.normal_(model.box_head.cls_score.weight, std=0.3)
        torch.nn.init.normal_(model.box_head.bbox_pred.weight, std=0.05)
    return model


DETECTORS = {
    "fcos": (busy_fcos, reference.dense_detect_tiles),
    "retinanet": (busy_retinanet, reference.dense_detect_tiles),
    "faster_fpn": (busy_faster_fpn, reference.faster_fpn_detect_tiles),
}


def assert_same_detections(found, expected, exact_order=True):
    """The same detections per tile, bit for bit; with `exact_order`, in the same order, else in the same
    order up to exact score ties (the scores in the same order, the rows the same set)."""
    assert len(found) == len(expected)
    for tile, (ours, theirs) in enumerate(zip(found, expected, strict=True)):
        assert ours.keys() == theirs.keys() == {"boxes", "scores", "labels"}, tile
        for key in ours:
            assert ours[key].dtype == theirs[key].dtype and ours[key].shape == theirs[key].shape, (tile, key)
        assert torch.equal(ours["scores"], theirs["scores"]), tile
        if exact_order:
            assert torch.equal(ours["boxes"], theirs["boxes"]), tile
            assert torch.equal(ours["labels"], theirs["labels"]), tile
        else:
            rows = [
                torch.cat([d["boxes"], d["scores"][:, None], d["labels"][:, None].float()], 1).cpu().numpy()
                for d in (ours, theirs)
            ]
            ours_rows, theirs_rows = (r[np.lexsort(r.T[::-1])] for r in rows)
            assert np.array_equal(ours_rows, theirs_rows), tile


def compare_with_the_reference(device: str, exact_order: bool = True) -> list[int]:
    """Every detector, every `SETTINGS` entry, 3 tiles (one all zeros); returns the detection counts."""
    generator = torch.Generator().manual_seed(1)
    tiles = torch.randn(3, 3, HEIGHT, WIDTH, generator=generator)
    tiles[1] = 0
    tiles = tiles.to(device)
    counts = []
    for build, reference_detect_tiles in DETECTORS.values():
        model = build().to(device).eval()
        for settings in SETTINGS:
            found = model.detect_tiles(tiles, settings)
            expected = reference_detect_tiles(model, tiles, settings)
            assert_same_detections(found, expected, exact_order)
            counts.append(sum(len(d["scores"]) for d in found))
        eval_found = model(tiles)  # forward in eval mode: the candidates with the config's settings
        assert len(eval_found) == 3
    return counts


def test_batched_postprocessing_equals_the_per_tile_reference_bit_for_bit():
    counts = compare_with_the_reference("cpu")
    # Each detector finds detections under the first three settings and none under the last.
    assert all(counts[k] > 0 for k in range(len(counts)) if k % len(SETTINGS) != len(SETTINGS) - 1), counts
    assert all(counts[k] == 0 for k in range(len(SETTINGS) - 1, len(counts), len(SETTINGS))), counts


@cuda_test
def test_on_the_gpu_batched_postprocessing_equals_the_per_tile_reference():
    # Batched and per-row top-k may order exactly tied scores differently on a GPU.
    compare_with_the_reference("cuda", exact_order=False)
