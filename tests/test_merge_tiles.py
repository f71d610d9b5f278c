"""tinyfast.ops.merge_tiles against the plain composition: boxes placed in PyTorch, torchvision NMS, top-k."""

import pytest
import torch
from cuda_marks import cuda_test

from bench.workload import tiny_person_merge
from tests.reference.batched_nms import reference_batched_nms
from tests.reference.merge_tiles import reference_merge
from tinyfast.ops import merge_tiles

# ---------------------------------------------------------------------------------------------------------
# The reference composition and data
# ---------------------------------------------------------------------------------------------------------


def run_merge(case, **options):
    names = ("boxes", "scores", "labels", "tile_index", "tiles", "tile_image", "image_sizes")
    return merge_tiles(
        *(case[name] for name in names),
        tile_scales=case["tile_scales"],
        tile_flips=case["tile_flips"],
        **options,
    )


def assert_same_detections(got, expected):
    for name, a, b in zip(("boxes", "scores", "labels", "image_index"), got, expected, strict=True):
        assert torch.equal(a.cpu(), b.cpu()), f"{name} differ: {len(a)} rows, expected {len(b)}"


def workload_case(num_images=2, num_classes=1, seed=0, scale=None, flip=False):
    """The benchmark's workload, optionally as if each tile had been resized and flipped for the detector."""
    generator = torch.Generator().manual_seed(seed)
    w = tiny_person_merge(num_images=num_images, boxes_per_tile=300, seed=seed)
    num_tiles = len(w.tiles)
    scales = torch.ones(num_tiles, 2) if scale is None else torch.full((num_tiles, 2), float(scale))
    flips = torch.rand(num_tiles, generator=generator) < 0.5
    if not flip:
        flips[:] = False
    boxes = w.tile_boxes.clone()
    crop_width = (w.tiles[:, 2] - w.tiles[:, 0])[w.tile_index]
    flipped = flips[w.tile_index]
    boxes[flipped, 0], boxes[flipped, 2] = (
        crop_width[flipped] - w.tile_boxes[flipped, 2],
        (crop_width[flipped] - w.tile_boxes[flipped, 0]),
    )
    return {
        "boxes": boxes * scales[w.tile_index].repeat(1, 2),
        "scores": w.scores,
        "labels": torch.randint(0, num_classes, (len(boxes),), generator=generator),
        "tile_index": w.tile_index,
        "tiles": w.tiles,
        "tile_image": w.tile_image,
        "image_sizes": torch.tensor([[1920.0, 1080.0]]).repeat(num_images, 1),
        "tile_scales": scales,
        "tile_flips": flips,
    }


def single_tile_case(boxes, scores, labels=None, image_size=(100.0, 100.0)):
    n = len(boxes)
    return {
        "boxes": torch.as_tensor(boxes, dtype=torch.float32).reshape(n, 4),
        "scores": torch.as_tensor(scores, dtype=torch.float32),
        "labels": torch.zeros(n, dtype=torch.int64) if labels is None else torch.as_tensor(labels),
        "tile_index": torch.zeros(n, dtype=torch.int64),
        "tiles": torch.tensor([[0.0, 0.0, *image_size]]),
        "tile_image": torch.tensor([0]),
        "image_sizes": torch.tensor([image_size]),
        "tile_scales": torch.ones(1, 2),
        "tile_flips": torch.zeros(1, dtype=torch.bool),
    }


# ---------------------------------------------------------------------------------------------------------
# Same results as the composition
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("class_agnostic", [False, True])
@pytest.mark.parametrize("max_per_image", [None, 0, 50, 1000])
def test_workload_matches_the_composition(class_agnostic, max_per_image):
    case = workload_case(num_images=2, num_classes=3)
    options = dict(class_agnostic=class_agnostic, max_per_image=max_per_image)
    assert_same_detections(run_merge(case, **options), reference_merge(case, **options))


@pytest.mark.parametrize(("scale", "flip"), [(1.0, True), (1.5, False), (0.75, True), (2.0, True)])
def test_scaled_and_flipped_tiles_match_the_composition(scale, flip):
    case = workload_case(num_images=2, num_classes=2, seed=3, scale=scale, flip=flip)
    assert_same_detections(run_merge(case, max_per_image=200), reference_merge(case, max_per_image=200))


PER_BOX = ("boxes", "scores", "labels", "tile_index")


def test_rows_in_any_order_match_the_composition():
    """Shuffled rows: no runs of one tile, images and classes interleaved."""
    case = workload_case(num_images=3, num_classes=3, seed=9)
    order = torch.randperm(len(case["boxes"]), generator=torch.Generator().manual_seed(9))
    shuffled = {name: value[order] if name in PER_BOX else value for name, value in case.items()}
    expected = reference_merge(shuffled, max_per_image=300)
    assert_same_detections(run_merge(shuffled, max_per_image=300), expected)


@pytest.mark.parametrize(
    ("box_dtype", "score_dtype"), [(torch.float64, torch.float64), (torch.float32, torch.float16)]
)
def test_float64_and_float16_inputs_match_the_composition(box_dtype, score_dtype):
    case = workload_case(num_images=2, num_classes=2, seed=6, scale=1.5, flip=True)
    for name in ("boxes", "tiles", "tile_scales", "image_sizes"):
        case[name] = case[name].to(box_dtype)
    case["scores"] = case["scores"].to(score_dtype)
    options = dict(score_threshold=0.3, max_per_image=200)
    assert_same_detections(
        run_merge(case, **options), reference_merge(case, nms=reference_batched_nms, **options)
    )


def test_flip_and_scale_are_undone_exactly():
    case = workload_case(num_images=1, seed=5, scale=2.0, flip=True)
    plain = workload_case(num_images=1, seed=5)
    flipped, expected = run_merge(case, iou_threshold=1.0), run_merge(plain, iou_threshold=1.0)
    torch.testing.assert_close(flipped.boxes, expected.boxes, rtol=0, atol=1e-3)  # mirroring twice rounds
    assert torch.equal(flipped.scores, expected.scores)


def test_score_threshold_keeps_scores_above_it():
    case = workload_case(num_images=2, num_classes=2, seed=1)
    merged = run_merge(case, score_threshold=0.3)
    assert bool((merged.scores > 0.3).all())
    assert_same_detections(merged, reference_merge(case, score_threshold=0.3))


def test_boxes_outside_the_tile_and_image_are_clipped_to_the_image():
    case = single_tile_case([[-20.0, -5.0, 10.0, 10.0], [90.0, 95.0, 130.0, 140.0], [200, 200, 300, 300]],
                            [0.9, 0.8, 0.7])  # fmt: skip
    merged = run_merge(case)
    expected = torch.tensor([[0.0, 0.0, 10, 10], [90.0, 95, 100, 100], [100.0, 100, 100, 100]])
    assert torch.equal(merged.boxes, expected)
    assert_same_detections(merged, reference_merge(case))


def test_empty_input_gives_empty_outputs():
    case = single_tile_case(torch.empty(0, 4), torch.empty(0))
    merged = run_merge(case)
    assert merged.boxes.shape == (0, 4) and merged.scores.shape == (0,)
    assert merged.labels.dtype == merged.image_index.dtype == torch.int64
    assert [len(d["boxes"]) for d in merged.per_image(3)] == [0, 0, 0]


def test_one_box_in_a_one_pixel_image():
    case = single_tile_case([[0.0, 0.0, 1.0, 1.0]], [0.5], image_size=(1.0, 1.0))
    merged = run_merge(case, max_per_image=1000)
    assert merged.boxes.tolist() == [[0.0, 0.0, 1.0, 1.0]] and merged.image_index.tolist() == [0]


def test_ties_are_resolved_by_lower_index_first():
    generator = torch.Generator().manual_seed(2)
    corner = torch.rand(300, 2, generator=generator) * 90
    boxes = torch.cat([corner, corner + 4 + 6 * torch.rand(300, 2, generator=generator)], dim=1)
    case = single_tile_case(boxes, torch.randint(0, 3, (300,), generator=generator).float() / 4)
    assert_same_detections(
        run_merge(case, max_per_image=40), reference_merge(case, max_per_image=40, nms=reference_batched_nms)
    )


def test_class_aware_cap_applies_across_classes():
    case = single_tile_case([[0, 0, 10, 10]] * 4, [0.9, 0.8, 0.7, 0.6], labels=[0, 1, 2, 3])
    merged = run_merge(case, max_per_image=2)
    assert merged.labels.tolist() == [0, 1] and merged.scores.tolist() == pytest.approx([0.9, 0.8])


@pytest.mark.slow
def test_100k_detections_in_one_image():
    generator = torch.Generator().manual_seed(4)
    persons = torch.rand(500, 2, generator=generator) * torch.tensor([1900.0, 1060.0])
    centres = torch.cat([persons, persons + 12], dim=1).repeat_interleave(200, dim=0)
    boxes = centres + torch.randn(centres.shape, generator=generator)
    scores = torch.randperm(len(boxes), generator=generator) / len(boxes)
    case = single_tile_case(boxes, scores, image_size=(1920.0, 1080.0))
    merged = run_merge(case, max_per_image=1000)
    assert_same_detections(merged, reference_merge(case, max_per_image=1000))


# ---------------------------------------------------------------------------------------------------------
# Truncated boxes
# ---------------------------------------------------------------------------------------------------------


def two_tile_case():
    """A 200x100 image, tiles [0, 120) and [80, 200): a person at x 110..130 is cut by the first tile's
    right side (truncated box 110..120) and complete in the second tile (30..50 in its coordinates)."""
    return {
        "boxes": torch.tensor([[110.0, 40, 120, 60], [30.0, 40, 50, 60], [10.0, 10, 20, 30]]),
        "scores": torch.tensor([0.9, 0.6, 0.5]),
        "labels": torch.zeros(3, dtype=torch.int64),
        "tile_index": torch.tensor([0, 1, 0]),
        "tiles": torch.tensor([[0.0, 0.0, 120.0, 100.0], [80.0, 0.0, 200.0, 100.0]]),
        "tile_image": torch.tensor([0, 0]),
        "image_sizes": torch.tensor([[200.0, 100.0]]),
        "tile_scales": torch.ones(2, 2),
        "tile_flips": torch.zeros(2, dtype=torch.bool),
    }


def test_by_default_the_truncated_box_wins_when_it_scores_higher():
    merged = run_merge(two_tile_case())  # IoU 0.5 exactly: not suppressed either way
    assert merged.boxes[0].tolist() == [110.0, 40.0, 120.0, 60.0]


def test_drop_lets_the_complete_box_from_the_other_tile_win():
    merged = run_merge(two_tile_case(), truncated="drop")
    assert merged.boxes.tolist() == [[110.0, 40.0, 130.0, 60.0], [10.0, 10.0, 20.0, 30.0]]


def test_downweight_multiplies_the_truncated_score():
    merged = run_merge(two_tile_case(), truncated="downweight", truncated_factor=0.5, iou_threshold=0.6)
    assert merged.scores.tolist() == pytest.approx([0.6, 0.5, 0.45])


def test_a_box_at_an_image_border_is_not_truncated():
    case = two_tile_case()
    case["boxes"][1] = torch.tensor([100.0, 40.0, 120.0, 60.0])  # at the image's right border, in tile 1
    case["boxes"][0] = torch.tensor([100.0, 40.0, 110.0, 60.0])  # untouched by any internal border
    assert len(run_merge(case, truncated="drop", iou_threshold=1.0).boxes) == 3


# ---------------------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c["scores"].__setitem__(1, float("nan")), "scores must be finite"),
        (lambda c: c["boxes"].__setitem__((0, 0), float("inf")), "boxes must be finite"),
        (lambda c: c["labels"].__setitem__(0, -1), "labels must be >= 0"),
        (lambda c: c["tile_index"].__setitem__(0, 7), "tile_index must be in"),
        (lambda c: c.__setitem__("tile_image", torch.tensor([0, 3])), "tile_image must be in"),
        (lambda c: c.__setitem__("tile_scales", torch.zeros(2, 2)), "tile_scales must be finite and > 0"),
        (lambda c: c.__setitem__("scores", torch.ones(2)), r"scores must have shape \[3\]"),
        (lambda c: c.__setitem__("tiles", torch.ones(2, 3)), "tiles must have shape"),
        (lambda c: c.__setitem__("labels", torch.zeros(3)), "labels must be an integer tensor"),
        (lambda c: c.__setitem__("tile_flips", torch.zeros(2)), "tile_flips must be a bool tensor"),
        (lambda c: c.__setitem__("tile_flips", torch.tensor([0, 1])), "tile_flips must be a bool"),
        (lambda c: c.__setitem__("tile_index", [0, 0, 1]), "tile_index must be a torch.Tensor"),
    ],
)
def test_bad_input_raises_value_error_naming_the_argument(change, message):
    case = two_tile_case()
    change(case)
    with pytest.raises(ValueError, match=message):
        run_merge(case)


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ({"iou_threshold": float("nan")}, "iou_threshold"),
        ({"iou_threshold": -0.1}, "iou_threshold"),
        ({"max_per_image": -2}, "max_per_image"),
        ({"truncated": "maybe"}, "truncated"),
        ({"truncated_iof": 0.0}, "truncated_iof"),
        ({"truncated_factor": 2.0}, "truncated_factor"),
        ({"truncated": 1}, "truncated"),
        ({"iou_threshold": True}, "iou_threshold"),
        ({"iou_threshold": "0.5"}, "iou_threshold"),
        ({"score_threshold": False}, "score_threshold"),
        ({"max_per_image": 2.7}, "max_per_image"),
        ({"max_per_image": "3"}, "max_per_image"),
        ({"max_per_image": True}, "max_per_image"),
        ({"class_agnostic": "no"}, "class_agnostic"),
        ({"class_agnostic": 0}, "class_agnostic"),
    ],
)
def test_bad_options_raise_value_error(option, message):
    with pytest.raises(ValueError, match=message):
        run_merge(two_tile_case(), **option)


def test_inputs_on_different_devices_raise_value_error():
    case = two_tile_case()
    case["labels"] = case["labels"].to("meta")
    with pytest.raises(ValueError, match="device"):
        run_merge(case)


def test_opcheck():
    case = two_tile_case()
    names = ("boxes", "scores", "labels", "tile_index", "tiles", "tile_scales", "tile_flips", "tile_image",
             "image_sizes")  # fmt: skip
    for cap in (10, None):
        args = (*(case[name] for name in names), -float("inf"), 0.5, False, cap, "drop", 0.7, 0.5)
        torch.library.opcheck(torch.ops.tinyfast.merge_tiles.default, args)


def test_the_raw_op_checks_its_options():
    case = two_tile_case()
    names = ("boxes", "scores", "labels", "tile_index", "tiles", "tile_scales", "tile_flips", "tile_image",
             "image_sizes")  # fmt: skip
    tensors = tuple(case[name] for name in names)
    with pytest.raises(ValueError, match="max_per_image"):
        torch.ops.tinyfast.merge_tiles(*tensors, -float("inf"), 0.5, False, -1, "keep", 0.7, 0.5)
    with pytest.raises(ValueError, match="truncated"):
        torch.ops.tinyfast.merge_tiles(*tensors, -float("inf"), 0.5, False, None, "maybe", 0.7, 0.5)


def test_torch_compile_full_graph_with_dynamic_shapes():
    def merged_boxes(case):
        detections = run_merge(case, score_threshold=0.05, max_per_image=100, truncated="downweight")
        return detections.boxes * 2, detections.scores

    torch._dynamo.reset()
    compiled = torch.compile(merged_boxes, backend="aot_eager", fullgraph=True, dynamic=True)
    for num_images in (1, 2):  # another number of boxes and tiles: the same dynamic-shape graph
        case = workload_case(num_images=num_images, seed=num_images)
        for got, expected in zip(compiled(case), merged_boxes(case), strict=True):
            assert torch.equal(got, expected)


# ---------------------------------------------------------------------------------------------------------
# CUDA
# ---------------------------------------------------------------------------------------------------------


@cuda_test
@pytest.mark.parametrize("truncated", ["keep", "downweight", "drop"])
@pytest.mark.parametrize("class_agnostic", [False, True])
def test_cuda_matches_cpu(truncated, class_agnostic):
    case = workload_case(num_images=3, num_classes=2, seed=7, scale=1.25, flip=True)
    options = dict(class_agnostic=class_agnostic, max_per_image=300, truncated=truncated, score_threshold=0.1)
    on_gpu = run_merge({k: v.cuda() for k, v in case.items()}, **options)
    assert all(t.is_cuda for t in on_gpu)
    assert_same_detections(on_gpu, run_merge(case, **options))


@cuda_test
def test_cuda_inputs_without_scales_and_flips_get_the_defaults_on_their_device():
    case = workload_case(num_images=2, seed=8)
    names = ("boxes", "scores", "labels", "tile_index", "tiles", "tile_image", "image_sizes")
    on_gpu = merge_tiles(*(case[name].cuda() for name in names), max_per_image=100)
    assert all(t.is_cuda for t in on_gpu)
    assert_same_detections(on_gpu, run_merge(case, max_per_image=100))
