"""tinyfast.ops.fcos_targets against the dense mmdetection 2.x reference (tests/reference/fcos_targets.py)."""

import pytest
import torch
from cuda_marks import cuda_test
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.workload import tiny_person_fcos
from tests.reference.fcos_targets import (
    TINY_PERSON_RANGES,
    TINY_PERSON_STRIDES,
    dense_fcos_targets,
    fcos_points,
)
from tinyfast.ops import fcos_targets

SETTINGS = [
    pytest.param(1.5, True, id="center1.5-norm"),
    pytest.param(1.5, False, id="center1.5"),
    pytest.param(None, True, id="inside-norm"),
    pytest.param(None, False, id="inside"),
]

# ---------------------------------------------------------------------------------------------------------
# Helpers and data
# ---------------------------------------------------------------------------------------------------------


def assert_same_targets(got, expected):
    labels, targets = got
    expected_labels, expected_targets = expected
    assert labels.dtype == torch.int64 and targets.dtype == expected_targets.dtype
    assert labels.shape == expected_labels.shape and targets.shape == expected_targets.shape
    labels, targets = labels.cpu(), targets.cpu()
    differs = (labels != expected_labels) | (targets != expected_targets).any(-1)
    if differs.any():
        image, point = differs.nonzero()[0].tolist()
        pytest.fail(
            f"{int(differs.sum())} points differ; first: image {image} point {point}: got label "
            f"{int(labels[image, point])} {targets[image, point].tolist()}, expected "
            f"{int(expected_labels[image, point])} {expected_targets[image, point].tolist()}"
        )


def assert_matches_reference(*arguments, center_sampling_radius=1.5, norm_on_bbox=True):
    keywords = dict(center_sampling_radius=center_sampling_radius, norm_on_bbox=norm_on_bbox)
    got = fcos_targets(*arguments, **keywords)
    assert_same_targets(got, dense_fcos_targets(*arguments, **keywords))
    return got


def small_pyramid(height=96, width=128, dtype=torch.float32):
    points, level_sizes = fcos_points(height, width, dtype=dtype)
    return points, level_sizes, TINY_PERSON_STRIDES, TINY_PERSON_RANGES


def random_boxes(count, height, width, generator, max_side=40.0, integer=False):
    xy = torch.rand(count, 2, generator=generator) * torch.tensor([width, height]) * 1.2 - 10
    wh = torch.rand(count, 2, generator=generator) ** 2 * max_side
    boxes = torch.cat((xy, xy + wh), 1)
    return boxes.round() if integer else boxes


def batch(boxes_per_image, num_classes=3, generator=None):
    """gt_boxes, gt_labels, gt_counts from a list of [n, 4] tensors."""
    boxes = torch.cat([b.reshape(-1, 4) for b in boxes_per_image]) if boxes_per_image else torch.empty(0, 4)
    generator = generator or torch.Generator().manual_seed(0)
    labels = torch.randint(0, num_classes, (len(boxes),), generator=generator)
    counts = torch.tensor([len(b) for b in boxes_per_image], dtype=torch.int64)
    return boxes, labels, counts, num_classes


def arguments_for(boxes_per_image, height=96, width=128, num_classes=3, dtype=torch.float32):
    return (*small_pyramid(height, width, dtype), *batch(boxes_per_image, num_classes))


# ---------------------------------------------------------------------------------------------------------
# Equality with the reference
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("radius", "norm"), SETTINGS)
def test_tiny_person_like_batch(radius, norm):
    workload = tiny_person_fcos(num_images=2, gts_per_image=150, height=128, width=160, seed=1)
    labels, _ = assert_matches_reference(
        *workload.arguments(), center_sampling_radius=radius, norm_on_bbox=norm
    )
    assert (labels == 0).sum() > 100  # the workload does assign points


@pytest.mark.parametrize(("radius", "norm"), SETTINGS)
@pytest.mark.parametrize("seed", range(4))
def test_random_batches_with_different_counts(seed, radius, norm):
    generator = torch.Generator().manual_seed(seed)
    counts = [0, 1, 37, 200, 5][seed : seed + 3]
    boxes = [random_boxes(n, 96, 128, generator, max_side=[20, 60, 140, 300][seed]) for n in counts]
    assert_matches_reference(*arguments_for(boxes), center_sampling_radius=radius, norm_on_bbox=norm)


@pytest.mark.parametrize(("radius", "norm"), SETTINGS)
def test_integer_boxes_put_points_on_edges_and_distances_on_range_ends(radius, norm):
    # Points sit at stride // 2 + k * stride: integer corners hit them, and integer distances hit 16, 32, ...
    generator = torch.Generator().manual_seed(7)
    boxes = [random_boxes(300, 96, 128, generator, max_side=70, integer=True) for _ in range(2)]
    assert_matches_reference(*arguments_for(boxes), center_sampling_radius=radius, norm_on_bbox=norm)


@pytest.mark.parametrize(("radius", "norm"), SETTINGS)
def test_more_than_a_thousand_gts(radius, norm):
    generator = torch.Generator().manual_seed(3)
    boxes = [random_boxes(1200, 48, 64, generator, max_side=24), random_boxes(1100, 48, 64, generator)]
    assert_matches_reference(
        *arguments_for(boxes, height=48, width=64), center_sampling_radius=radius, norm_on_bbox=norm
    )


@pytest.mark.parametrize(("radius", "norm"), SETTINGS)
def test_identical_gts_go_to_the_first(radius, norm):
    box = torch.tensor([[10.0, 12.0, 30.0, 40.0]])
    boxes, _, counts, _ = batch([box.repeat(1000, 1), box.repeat(3, 1)])
    labels = torch.arange(len(boxes)) % 5
    arguments = (*small_pyramid(), boxes, labels, counts, 5)
    got, _ = assert_matches_reference(*arguments, center_sampling_radius=radius, norm_on_bbox=norm)
    assert set(got[0].unique().tolist()) == {0, 5}  # GT 0 of image 0 wins
    assert set(got[1].unique().tolist()) == {labels[1000].item(), 5}  # GT 0 of image 1 wins


def test_the_smallest_area_wins_then_the_first():
    # Nested boxes around point (18, 18) of stride 4 (max distance <= 16 for the inner ones).
    boxes = torch.tensor(
        [[2.0, 2.0, 34.0, 34.0], [8.0, 8.0, 28.0, 28.0], [9.0, 7.0, 29.0, 27.0], [10.0, 10.0, 26, 26]]
    )
    labels = torch.tensor([0, 1, 2, 3])
    points = torch.tensor([[18.0, 18.0]])
    arguments = (points, [1], [4], [(-1, 16)], boxes, labels, torch.tensor([4]), 4)
    got_labels, got_targets = assert_matches_reference(*arguments)
    assert got_labels.tolist() == [[3]]
    assert got_targets.tolist() == [[[2.0, 2.0, 2.0, 2.0]]]
    boxes[3] = torch.tensor([9.0, 7.0, 29.0, 27.0])  # same area as GT 1 and 2: the first of them wins
    assert assert_matches_reference(*arguments)[0].tolist() == [[1]]


@pytest.mark.parametrize(("distance", "level_assigned"), [(16.0, [True, True]), (15.5, [True, False])])
def test_regress_range_ends_are_inclusive(distance, level_assigned):
    # mmdetection 2.x: lo <= max(l, t, r, b) <= hi. The same point at two levels with ranges (-1, 16)
    # and (16, 32): a max distance of exactly 16 is in both.
    boxes = torch.tensor([[40.0 - distance, 36.0, 44.0, 44.0]])
    points = torch.tensor([[40.0, 40.0], [40.0, 40.0]])
    arguments = (points, [1, 1], [4, 8], [(-1, 16), (16, 32)], boxes, torch.tensor([0]), torch.tensor([1]), 1)
    labels, _ = assert_matches_reference(*arguments, center_sampling_radius=None)
    assert (labels[0] == 0).tolist() == level_assigned


def test_zero_area_inverted_and_outside_gts_assign_nothing():
    boxes = torch.tensor(
        [
            [20.0, 20.0, 20.0, 50.0],  # zero width
            [20.0, 20.0, 50.0, 20.0],  # zero height
            [50.0, 50.0, 20.0, 20.0],  # inverted
            [-80.0, -80.0, -10.0, -10.0],  # outside the image
            [500.0, 500.0, 600.0, 700.0],
        ]
    )
    labels, targets = assert_matches_reference(*arguments_for([boxes]), center_sampling_radius=None)
    assert (labels == 3).all() and (targets == 0).all()


@pytest.mark.parametrize(("radius", "norm"), SETTINGS)
def test_gts_on_and_across_the_image_border(radius, norm):
    boxes = torch.tensor(
        [
            [0.0, 0.0, 12.0, 12.0],
            [120.0, 90.0, 128.0, 96.0],
            [-5.0, 30.0, 10.0, 60.0],
            [100.0, -20.0, 140.0, 20.0],
        ]
    )
    boxes = torch.cat((boxes, torch.tensor([[0.0, 0.0, 128.0, 96.0]])))  # the whole image
    assert_matches_reference(
        *arguments_for([boxes, boxes[:4]]), center_sampling_radius=radius, norm_on_bbox=norm
    )


@pytest.mark.parametrize(("radius", "norm"), SETTINGS)
def test_huge_gts_among_tiny_ones(radius, norm):
    # Huge GTs span more grid cells than a GT is listed in: they go to the image's list of large GTs.
    generator = torch.Generator().manual_seed(11)
    tiny = random_boxes(400, 96, 128, generator, max_side=6)
    huge = torch.tensor([[0.0, 0.0, 128.0, 96.0], [-50.0, 10.0, 90.0, 80.0], [30.0, 0.0, 40.0, 96.0]])
    boxes = torch.cat((tiny[:200], huge, tiny[200:]))
    assert_matches_reference(*arguments_for([boxes]), center_sampling_radius=radius, norm_on_bbox=norm)


def test_gts_of_area_1e8_and_above_as_mmdetection():
    # mmdetection's INF = 1e8 marks non-candidates, then the smallest area == INF means background: a GT of
    # area exactly 1e8 is never assigned, a larger one only when no GT of its image is a non-candidate.
    points = torch.tensor([[5000.0, 5000.0]])
    boxes = torch.tensor([[0.0, 0.0, 10000.0, 10000.0], [0.0, 0.0, 9999.0, 10000.0]])
    arguments = (points, [1], [64], [(-1, float("inf"))], boxes, torch.tensor([0, 1]), torch.tensor([2]), 2)
    labels, _ = assert_matches_reference(*arguments, center_sampling_radius=None)
    assert labels.tolist() == [[1]]
    labels, _ = assert_matches_reference(arguments[0], *arguments[1:4], boxes[:1], torch.tensor([0]),
                                         torch.tensor([1]), 2, center_sampling_radius=None)  # fmt: skip
    assert labels.tolist() == [[2]]

    huge = torch.tensor([[0.0, 0.0, 20000.0, 10000.0]])  # area 2e8
    far = torch.tensor([[30000.0, 0.0, 30010.0, 10.0]])  # a non-candidate of the point
    common = (points, [1], [64], [(-1, float("inf"))])
    lone = (*common, huge, torch.tensor([0]), torch.tensor([1]), 2)
    labels, targets = assert_matches_reference(*lone, center_sampling_radius=None)
    assert labels.tolist() == [[0]] and targets.abs().sum() > 0
    beside_another = (*common, torch.cat((huge, far)), torch.tensor([0, 1]), torch.tensor([2]), 2)
    labels, _ = assert_matches_reference(*beside_another, center_sampling_radius=None)
    assert labels.tolist() == [[2]]
    # Two images: the lone huge GT of image 1 is assigned, the one of image 0 has a non-candidate beside it.
    two_images = (*common, torch.cat((huge, far, huge)), torch.tensor([0, 1, 1]), torch.tensor([2, 1]), 2)
    labels, _ = assert_matches_reference(*two_images, center_sampling_radius=None)
    assert labels.tolist() == [[2], [1]]


def test_coordinates_far_beyond_float_range_of_the_grid():
    boxes = torch.tensor([[-3e38, -3e38, 3e38, 3e38], [10.0, 10.0, 30.0, 30.0], [1e30, 1e30, 2e30, 2e30]])
    assert_matches_reference(*arguments_for([boxes]), center_sampling_radius=None)
    assert_matches_reference(*arguments_for([boxes]))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_dtypes(dtype):
    generator = torch.Generator().manual_seed(5)
    boxes, labels, counts, num_classes = batch([random_boxes(80, 96, 128, generator) for _ in range(2)])
    points, level_sizes, strides, ranges = small_pyramid()
    arguments = (points.to(dtype), level_sizes, strides, ranges, boxes.to(dtype), labels, counts, num_classes)
    _, targets = assert_matches_reference(*arguments)
    assert targets.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)


def test_empty_inputs():
    points, level_sizes, strides, ranges = small_pyramid()
    no_gts = (torch.empty(0, 4), torch.empty(0, dtype=torch.int64))
    for counts in ([0, 0, 0], []):
        labels, targets = assert_matches_reference(
            points, level_sizes, strides, ranges, *no_gts, torch.tensor(counts, dtype=torch.int64), 2
        )
        assert labels.shape == (len(counts), len(points)) and targets.shape == (len(counts), len(points), 4)
    boxes = torch.tensor([[0.0, 0.0, 50.0, 50.0]])
    labels, targets = fcos_targets(
        torch.empty(0, 2),
        [0, 0],
        [4, 8],
        [(-1, 16), (16, 32)],
        boxes,
        torch.tensor([0]),
        torch.tensor([1]),
        1,
    )
    assert labels.shape == (1, 0) and targets.shape == (1, 0, 4)


def test_a_level_without_points_and_non_contiguous_inputs():
    generator = torch.Generator().manual_seed(9)
    points, level_sizes, strides, ranges = small_pyramid()
    boxes, labels, counts, num_classes = batch([random_boxes(60, 96, 128, generator)])
    points_t = points.t().contiguous().t()
    boxes_t = boxes.t().contiguous().t()
    assert not points_t.is_contiguous() and not boxes_t.is_contiguous()
    sizes = [level_sizes[0], 0, *level_sizes[1:]]
    assert_matches_reference(points_t, sizes, (4, 6, 8, 16, 32, 64), (*ranges[:1], (0, 8), *ranges[1:]),
                             boxes_t, labels, counts, num_classes)  # fmt: skip


@st.composite
def small_fcos_problems(draw):
    """Boxes on a coarse integer lattice: edge hits, equal areas, identical boxes and range ends abound."""
    num_images = draw(st.integers(1, 3))
    counts = [draw(st.integers(0, 12)) for _ in range(num_images)]
    coordinate = st.integers(-4, 36).map(lambda v: 2.0 * v)
    boxes = [[draw(coordinate) for _ in range(4)] for _ in range(sum(counts))]
    labels = [draw(st.integers(0, 2)) for _ in boxes]
    radius = draw(st.sampled_from([None, 0.5, 1.5, 3.0]))
    return (
        torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        torch.tensor(labels, dtype=torch.int64),
        torch.tensor(counts, dtype=torch.int64),
        radius,
        draw(st.booleans()),
    )


@settings(max_examples=150, deadline=None)
@given(small_fcos_problems())
def test_property_equals_the_reference(problem):
    boxes, labels, counts, radius, norm = problem
    points, level_sizes = fcos_points(64, 64, strides=(4, 8, 16))
    arguments = (
        points,
        level_sizes,
        (4, 8, 16),
        ((-1, 8), (8, 24), (24, float("inf"))),
        boxes,
        labels,
        counts,
        3,
    )
    assert_matches_reference(*arguments, center_sampling_radius=radius, norm_on_bbox=norm)


# ---------------------------------------------------------------------------------------------------------
# The registered op
# ---------------------------------------------------------------------------------------------------------


def opcheck_inputs():
    generator = torch.Generator().manual_seed(2)
    points, level_sizes, strides, ranges = small_pyramid(32, 48)
    boxes, labels, counts, _ = batch(
        [random_boxes(30, 32, 48, generator), random_boxes(3, 32, 48, generator)]
    )
    lo, hi = [float(r[0]) for r in ranges], [float(r[1]) for r in ranges]
    common = (level_sizes, [float(s) for s in strides], lo, hi)
    return [
        (points, *common, boxes, labels, counts, 3, 1.5, True),
        (points.double(), *common, boxes.double(), labels, counts, 3, 0.0, False),
        (
            points,
            *common,
            torch.empty(0, 4),
            torch.empty(0, dtype=torch.int64),
            torch.tensor([0, 0]),
            1,
            1.5,
            True,
        ),
    ]


@pytest.mark.parametrize("args", opcheck_inputs())
def test_opcheck(args):
    torch.library.opcheck(torch.ops.tinyfast.fcos_targets.default, args)


# ---------------------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------------------


def good_arguments():
    points, level_sizes, strides, ranges = small_pyramid(32, 48)
    boxes = torch.tensor([[1.0, 2.0, 20.0, 30.0], [5.0, 5.0, 9.0, 9.0]])
    return dict(
        points=points,
        level_sizes=level_sizes,
        strides=strides,
        regress_ranges=ranges,
        gt_boxes=boxes,
        gt_labels=torch.tensor([0, 1]),
        gt_counts=torch.tensor([1, 1]),
        num_classes=2,
    )


BAD_ARGUMENTS = [
    ("points", torch.zeros(10, 3)),
    ("points", torch.zeros(10, 2, dtype=torch.int64)),
    ("points", [[0.0, 0.0]]),
    ("level_sizes", [1, 2, 3, 4, 5]),
    ("level_sizes", [-1, 100, 20, 6, 3]),
    ("strides", [4, 8, 16, 32]),
    ("strides", [4, 8, 0, 32, 64]),
    ("strides", [4, 8, float("nan"), 32, 64]),
    ("regress_ranges", [(-1, 16)] * 4),
    ("regress_ranges", [(-1, 16, 3)] * 5),
    ("regress_ranges", [(-1, float("nan"))] * 5),
    ("gt_boxes", torch.zeros(2, 5)),
    ("gt_boxes", torch.zeros(2, 4, dtype=torch.int32)),
    ("gt_boxes", torch.tensor([[1.0, 2.0, float("nan"), 30.0], [5.0, 5.0, 9.0, 9.0]])),
    ("gt_boxes", torch.tensor([[1.0, 2.0, 20.0, float("inf")], [5.0, 5.0, 9.0, 9.0]])),
    ("gt_labels", torch.tensor([0])),
    ("gt_labels", torch.tensor([0.0, 1.0])),
    ("gt_labels", torch.tensor([0, 2])),
    ("gt_labels", torch.tensor([-1, 0])),
    ("gt_counts", torch.tensor([2, 1])),
    ("gt_counts", torch.tensor([3, -1])),
    ("gt_counts", torch.tensor([[1, 1]])),
    ("gt_counts", [1, 1]),
    ("num_classes", 0),
    ("num_classes", 2.0),
    ("num_classes", True),
    ("num_classes", "2"),
    ("level_sizes", [1.0, 2, 3, 4, 5]),
    ("strides", [4, 8, True, 32, 64]),
    ("regress_ranges", [(-1, "16")] * 5),
    ("regress_ranges", 16),
    ("center_sampling_radius", True),
    ("center_sampling_radius", "1.5"),
    ("norm_on_bbox", "no"),
    ("norm_on_bbox", 1),
]


@pytest.mark.parametrize(("name", "value"), BAD_ARGUMENTS)
def test_bad_arguments_raise_value_error_naming_them(name, value):
    arguments = good_arguments() | {name: value}
    with pytest.raises(ValueError, match=name):
        fcos_targets(**arguments)


def test_inputs_on_different_devices_raise_value_error():
    arguments = good_arguments() | {"gt_labels": torch.tensor([0, 1], device="meta")}
    with pytest.raises(ValueError, match="device"):
        fcos_targets(**arguments)


def test_non_finite_points_and_radius_raise_value_error():
    arguments = good_arguments()
    arguments["points"] = arguments["points"].clone()
    arguments["points"][3, 0] = float("nan")
    with pytest.raises(ValueError, match="points"):
        fcos_targets(**arguments)
    with pytest.raises(ValueError, match="center_sampling_radius"):
        fcos_targets(**good_arguments(), center_sampling_radius=float("nan"))


def test_torch_compile_full_graph_with_dynamic_shapes():
    def targets(points, gt_boxes, gt_labels, gt_counts, level_sizes, strides, ranges):
        labels, bbox_targets = fcos_targets(points, level_sizes, strides, ranges, gt_boxes + 0.5, gt_labels,
                                            gt_counts, 3, center_sampling_radius=1.5)  # fmt: skip
        return labels, bbox_targets * 2

    torch._dynamo.reset()
    compiled = torch.compile(targets, backend="aot_eager", fullgraph=True, dynamic=True)
    generator = torch.Generator().manual_seed(12)
    points, level_sizes, strides, ranges = small_pyramid()
    for per_image in ([30, 5], [12, 0, 7]):  # other numbers of GTs and images: the same graph
        boxes, labels, counts, _ = batch([random_boxes(n, 96, 128, generator) for n in per_image])
        arguments = (points, boxes, labels, counts, level_sizes, strides, ranges)
        for got, expected in zip(compiled(*arguments), targets(*arguments), strict=True):
            assert torch.equal(got, expected)


def test_the_op_checks_its_arguments_too():
    arguments = good_arguments()
    with pytest.raises(ValueError, match="level_sizes"):
        torch.ops.tinyfast.fcos_targets(
            arguments["points"], [1, 2], [4.0, 8.0], [-1.0, 16.0], [16.0, 32.0], arguments["gt_boxes"],
            arguments["gt_labels"], arguments["gt_counts"], 2, 1.5, True,
        )  # fmt: skip


# ---------------------------------------------------------------------------------------------------------
# CUDA against CPU (bit-identical: the same rules, the same float operations)
# ---------------------------------------------------------------------------------------------------------


def to_cuda(arguments):
    return tuple(a.cuda() if isinstance(a, torch.Tensor) else a for a in arguments)


@cuda_test
@pytest.mark.parametrize(("radius", "norm"), SETTINGS)
def test_cuda_matches_cpu_on_the_tiny_person_workload(radius, norm):
    arguments = tiny_person_fcos(num_images=2, gts_per_image=800).arguments()
    keywords = dict(center_sampling_radius=radius, norm_on_bbox=norm)
    on_cuda = fcos_targets(*to_cuda(arguments), **keywords)
    assert on_cuda[0].device.type == "cuda"
    assert_same_targets(on_cuda, fcos_targets(*arguments, **keywords))


@cuda_test
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_matches_the_reference_on_adversarial_sets(dtype):
    generator = torch.Generator().manual_seed(13)
    box = torch.tensor([[10.0, 12.0, 30.0, 40.0]])
    boxes = [
        random_boxes(1200, 96, 128, generator, max_side=70, integer=True),
        torch.empty(0, 4),
        torch.cat((box.repeat(50, 1), torch.tensor([[0.0, 0.0, 128.0, 96.0], [20.0, 20.0, 20.0, 60.0]]))),
    ]
    arguments = arguments_for(boxes, dtype=dtype)
    for radius in (None, 1.5):
        on_cuda = fcos_targets(*to_cuda(arguments), center_sampling_radius=radius)
        assert_same_targets(on_cuda, dense_fcos_targets(*arguments, center_sampling_radius=radius))


@cuda_test
def test_cuda_bad_boxes_raise_value_error():
    arguments = good_arguments()
    arguments["gt_boxes"] = torch.tensor([[1.0, 2.0, float("nan"), 30.0], [5.0, 5.0, 9.0, 9.0]])
    with pytest.raises(ValueError, match="gt_boxes"):
        fcos_targets(**{k: v.cuda() if isinstance(v, torch.Tensor) else v for k, v in arguments.items()})


@cuda_test
def test_cuda_opcheck():
    for args in opcheck_inputs():
        torch.library.opcheck(
            torch.ops.tinyfast.fcos_targets.default,
            tuple(a.cuda() if isinstance(a, torch.Tensor) else a for a in args),
        )
