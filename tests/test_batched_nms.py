"""tinyfast.ops.batched_nms against torchvision and against a plain greedy reference."""

import math
import time

import numpy as np
import pytest
import torch
import torchvision
from cuda_marks import cuda_test
from hypothesis import given, settings
from hypothesis import strategies as st
from torchvision.ops.boxes import _batched_nms_vanilla

from bench.workload import tiny_person_merge
from tests.reference.batched_nms import reference_batched_nms
from tinyfast.ops import batched_nms, cuda_available_in_build

# ---------------------------------------------------------------------------------------------------------
# Oracles and data
# ---------------------------------------------------------------------------------------------------------


def assert_same_keep(got, expected):
    assert got.dtype == torch.int64
    got, expected = got.cpu(), expected.cpu()
    if torch.equal(got, expected):
        return
    pairs = zip(got.tolist(), expected.tolist(), strict=False)
    first = next((i for i, (a, b) in enumerate(pairs) if a != b), min(len(got), len(expected)))
    pytest.fail(
        f"keep differs: {len(got)} kept, expected {len(expected)}; first difference at position {first}: "
        f"got {got[first : first + 5].tolist()}, expected {expected[first : first + 5].tolist()}"
    )


def assert_matches_torchvision(boxes, scores, idxs, iou_threshold):
    """Distinct scores only: then torchvision's keep is unique."""
    ours = batched_nms(boxes, scores, idxs, iou_threshold)
    assert_same_keep(ours, _batched_nms_vanilla(boxes, scores, idxs, iou_threshold))
    return ours


def seeded(seed):
    return torch.Generator().manual_seed(seed)


def distinct_scores(n, generator):
    return torch.randperm(n, generator=generator).float() / max(n, 1)


def random_boxes(n, generator, extent=1000.0, max_size=100.0):
    corner = torch.rand(n, 2, generator=generator) * extent
    size = torch.rand(n, 2, generator=generator) * max_size
    return torch.cat([corner, corner + size], dim=1)


def clustered_tiny_boxes(clusters, per_cluster, generator, extent=4000.0):
    """Tiny boxes (8-20 px) jittered around cluster centres: much suppression, few kept boxes.

    torchvision's CPU NMS costs (kept boxes) x N, so large sets stay fast for it only when few boxes survive.
    """
    corner = torch.rand(clusters, 2, generator=generator) * extent
    size = 8 + 12 * torch.rand(clusters, 2, generator=generator)
    centres = torch.cat([corner, corner + size], dim=1).repeat_interleave(per_cluster, dim=0)
    return centres + 1.5 * torch.randn(centres.shape, generator=generator)


def tiny_person_lattice(rows, cols, generator, pitch=12.0):
    """Persons of 8-20 px on a regular lattice (neighbours overlap), each detected 1-3 times with jitter.

    Coordinates lie on a 1/8 px grid, so torchvision's coordinate-offset trick is exact on them.
    """
    ys, xs = torch.meshgrid(torch.arange(rows) * pitch, torch.arange(cols) * pitch, indexing="ij")
    corner = torch.stack([xs.flatten(), ys.flatten()], dim=1)
    size = 8 + 12 * torch.rand(len(corner), 2, generator=generator)
    persons = torch.cat([corner, corner + size], dim=1)
    detections = persons.repeat_interleave(torch.randint(1, 4, (len(persons),), generator=generator), dim=0)
    jittered = detections + torch.randn(detections.shape, generator=generator)
    return (jittered * 8).round() / 8


def borderline_pairs(count, iou_threshold, generator):
    """Pairs of boxes (one group each) whose exact IoU is within a few float32 ulps of the threshold.

    Which pairs suppress then depends on the rounding of every step: the order of the operations, a fused
    multiply-add, comparing in float32 instead of float64 all change the keep of many of these pairs.
    """
    corner = torch.rand(count, 2, generator=generator) * 1000
    size = 4 + 28 * torch.rand(count, 2, generator=generator)
    first = torch.cat([corner, corner + size], dim=1)
    # Shifting a box by d along x gives IoU (w - d) / (w + d): solve for the threshold, then nudge x2.
    shift = size[:, 0] * (1 - iou_threshold) / (1 + iou_threshold)
    second = first + torch.stack([shift, torch.zeros_like(shift)] * 2, dim=1)
    ulps = torch.randint(-3, 4, (count,), generator=generator, dtype=torch.int32)
    second[:, 2] = (second[:, 2].view(torch.int32) + ulps).view(torch.float32)
    boxes = torch.stack([first, second], dim=1).reshape(-1, 4)
    return boxes, torch.arange(count).repeat_interleave(2)


# ---------------------------------------------------------------------------------------------------------
# Exactness against torchvision (distinct scores)
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("max_per_group", [None, 0, 3])
def test_empty_input_gives_an_empty_int64_keep(max_per_group):
    keep = batched_nms(
        torch.empty(0, 4), torch.empty(0), torch.empty(0, dtype=torch.int64), 0.5, max_per_group
    )
    assert keep.dtype == torch.int64
    assert keep.shape == (0,)


def test_one_box_is_kept():
    keep = batched_nms(torch.tensor([[1.0, 2.0, 3.0, 4.0]]), torch.tensor([0.3]), torch.tensor([7]), 0.5)
    assert_same_keep(keep, torch.tensor([0]))


def test_many_identical_boxes_keep_only_the_best_of_each_group():
    generator = seeded(1)
    boxes = torch.tensor([[10.0, 20.0, 30.0, 50.0]]).repeat(500, 1)
    idxs = torch.randint(0, 3, (500,), generator=generator)
    keep = assert_matches_torchvision(boxes, distinct_scores(500, generator), idxs, 0.5)
    assert len(keep) == 3


@pytest.mark.parametrize("iou_threshold", [0.0, 0.3, 0.5, 0.9, 1.0])
def test_nested_boxes(iou_threshold):
    sides = torch.arange(1, 201, dtype=torch.float32)
    concentric = torch.stack([-sides, -sides, sides, sides], dim=1)
    in_a_corner = torch.stack([torch.zeros_like(sides), torch.zeros_like(sides), sides, 0.5 * sides], dim=1)
    boxes = torch.cat([concentric, in_a_corner])
    generator = seeded(2)
    scores = distinct_scores(len(boxes), generator)
    idxs = torch.randint(0, 2, (len(boxes),), generator=generator)
    keep = assert_matches_torchvision(boxes, scores, idxs, iou_threshold)
    assert_same_keep(keep, reference_batched_nms(boxes, scores, idxs, iou_threshold))


def test_zero_area_and_inverted_boxes_never_suppress_and_are_never_suppressed():
    generator = seeded(3)
    normal = random_boxes(300, generator, extent=100.0, max_size=40.0)
    x1, y1, x2, y2 = normal[:150].unbind(1)
    degenerate = torch.cat(
        [
            torch.stack([x1, y1, x1, y2], dim=1),  # zero width
            torch.stack([x1, y1, x2, y1], dim=1),  # zero height
            torch.stack([x1, y1, x1, y1], dim=1),  # a point
            torch.stack([x2, y1, x1, y2], dim=1),  # x2 < x1: negative area
            torch.stack([x1, y2, x2, y1], dim=1),  # y2 < y1: negative area
            torch.stack([x2, y2, x1, y1], dim=1),  # both inverted: positive area, still no intersection
        ]
    )
    boxes = torch.cat([normal, degenerate, degenerate])  # and each degenerate box twice
    scores = distinct_scores(len(boxes), generator)
    idxs = torch.randint(0, 2, (len(boxes),), generator=generator)
    for iou_threshold in (0.0, 0.5):
        keep = assert_matches_torchvision(boxes, scores, idxs, iou_threshold)
        assert_same_keep(keep, reference_batched_nms(boxes, scores, idxs, iou_threshold))
        assert set(range(len(normal), len(boxes))) <= set(keep.tolist())


@pytest.mark.parametrize("num_groups", [1, 5, 100, 1000])
@pytest.mark.parametrize("iou_threshold", [0.0, 0.5, 1.0])
def test_random_sets_match_torchvision(num_groups, iou_threshold):
    generator = seeded(4 + num_groups)
    small_and_large = [
        random_boxes(2700, generator, max_size=60.0),
        random_boxes(300, generator, max_size=1000.0),
    ]
    boxes = torch.cat(small_and_large) - 500  # negative coordinates too
    scores = distinct_scores(len(boxes), generator)
    idxs = torch.randint(0, num_groups, (len(boxes),), generator=generator)
    keep = assert_matches_torchvision(boxes, scores, idxs, iou_threshold)
    # Above 4000 coordinates torchvision.ops.batched_nms is the vanilla path: compare the public function too.
    assert_same_keep(keep, torchvision.ops.batched_nms(boxes, scores, idxs, iou_threshold))


@pytest.mark.parametrize("iou_threshold", [0.3, 0.5, 0.7])
def test_borderline_iou_is_rounded_like_torchvision(iou_threshold):
    generator = seeded(8)
    boxes, idxs = borderline_pairs(2000, iou_threshold, generator)
    scores = distinct_scores(len(boxes), generator)
    keep = assert_matches_torchvision(boxes, scores, idxs, iou_threshold)
    assert 0.1 < (len(boxes) - len(keep)) / len(idxs.unique()) < 0.9  # the pairs are truly borderline


def test_any_integer_group_ids():
    generator = seeded(5)
    boxes = random_boxes(2000, generator, extent=300.0)
    scores = distinct_scores(len(boxes), generator)
    group_ids = torch.tensor([-(2**40), -1, 0, 3, 2**62])
    idxs = group_ids[torch.randint(0, len(group_ids), (len(boxes),), generator=generator)]
    assert_matches_torchvision(boxes, scores, idxs, 0.5)


@pytest.mark.slow
@pytest.mark.parametrize("num_groups", [1, 64])
def test_100k_tiny_boxes(num_groups):
    generator = seeded(6)
    clusters, per_cluster = 1000, 100
    boxes = clustered_tiny_boxes(clusters, per_cluster, generator)
    scores = distinct_scores(len(boxes), generator)
    cluster_group = torch.randint(0, num_groups, (clusters,), generator=generator)
    idxs = cluster_group.repeat_interleave(per_cluster)
    keep = batched_nms(boxes, scores, idxs, 0.5)
    assert_same_keep(keep, torchvision.ops.batched_nms(boxes, scores, idxs, 0.5))


@pytest.mark.parametrize("iou_threshold", [0.3, 0.5, 0.7])
def test_dense_lattice_of_tiny_persons(iou_threshold):
    generator = seeded(7)
    boxes = tiny_person_lattice(30, 40, generator)
    scores = distinct_scores(len(boxes), generator)
    idxs = torch.randint(0, 2, (len(boxes),), generator=generator)
    keep = assert_matches_torchvision(boxes, scores, idxs, iou_threshold)
    # 900 boxes are 3600 coordinates: torchvision.ops.batched_nms takes its coordinate-offset path.
    few = slice(0, 900)
    assert_same_keep(
        batched_nms(boxes[few], scores[few], idxs[few], iou_threshold),
        torchvision.ops.batched_nms(boxes[few], scores[few], idxs[few], iou_threshold),
    )
    assert_same_keep(keep, reference_batched_nms(boxes, scores, idxs, iou_threshold))


def test_tiny_person_merge_workload_matches_torchvision():
    workload = tiny_person_merge(num_images=2)
    assert_matches_torchvision(workload.boxes, workload.scores, workload.idxs, 0.5)


# ---------------------------------------------------------------------------------------------------------
# Ties, max_per_group, dtypes and layouts (against the reference)
# ---------------------------------------------------------------------------------------------------------


def test_equal_scores_keep_the_lower_index_first():
    same = [0.0, 0.0, 10.0, 10.0]
    far = [100.0, 100.0, 110.0, 110.0]
    boxes = torch.tensor([far, same, same, far, same])
    scores = torch.tensor([0.5, 0.5, 0.5, 0.5, 0.9])
    idxs = torch.zeros(5, dtype=torch.int64)
    assert_same_keep(batched_nms(boxes, scores, idxs, 0.5), torch.tensor([4, 0]))
    assert_same_keep(batched_nms(boxes[:4], scores[:4], idxs[:4], 0.5), torch.tensor([0, 1]))
    assert_same_keep(
        batched_nms(boxes, torch.full((5,), 0.5), torch.tensor([1, 0, 0, 1, 0]), 0.5), torch.tensor([0, 1])
    )


@pytest.mark.parametrize("seed", range(3))
def test_many_ties_match_the_reference(seed):
    generator = seeded(10 + seed)
    boxes = tiny_person_lattice(15, 20, generator)
    scores = torch.randint(0, 8, (len(boxes),), generator=generator).float() / 8
    idxs = torch.randint(0, 3, (len(boxes),), generator=generator)
    for iou_threshold in (0.0, 0.5):
        keep = batched_nms(boxes, scores, idxs, iou_threshold)
        assert_same_keep(keep, reference_batched_nms(boxes, scores, idxs, iou_threshold))


def test_signed_zero_and_negative_scores_rank_like_a_stable_sort():
    """-0.0 and 0.0 tie (lower index first) and negative scores rank below them (the CPU kernel ranks the
    scores' bit patterns)."""
    generator = seeded(13)
    boxes = tiny_person_lattice(10, 12, generator)
    values = torch.tensor([0.0, -0.0, -0.5, 0.5, -1e-30, 1e-30, -3.0, 2.0, float(torch.finfo().tiny) / 4])
    scores = values[torch.randint(0, len(values), (len(boxes),), generator=generator)]
    idxs = torch.randint(0, 2, (len(boxes),), generator=generator)
    for iou_threshold in (0.0, 0.5):
        expected = reference_batched_nms(boxes, scores, idxs, iou_threshold)
        assert_same_keep(batched_nms(boxes, scores, idxs, iou_threshold), expected)


def test_double_scores_differing_only_in_their_last_bits():
    generator = seeded(14)
    boxes = tiny_person_lattice(10, 12, generator).double()
    steps = torch.randperm(len(boxes), generator=generator).double()
    scores = 0.5 + steps * 2**-50  # one float32 value; equal in every byte but the low ones as float64
    idxs = torch.randint(0, 3, (len(boxes),), generator=generator)
    assert_same_keep(batched_nms(boxes, scores, idxs, 0.5), reference_batched_nms(boxes, scores, idxs, 0.5))
    assert_same_keep(batched_nms(boxes, scores, idxs, 0.5), _batched_nms_vanilla(boxes, scores, idxs, 0.5))


@pytest.mark.parametrize("max_per_group", [0, 1, 3, 10_000])
def test_max_per_group_matches_the_reference(max_per_group):
    generator = seeded(20)
    boxes = tiny_person_lattice(10, 20, generator)
    scores = torch.randint(0, 16, (len(boxes),), generator=generator).float()
    idxs = torch.randint(0, 7, (len(boxes),), generator=generator)
    keep = batched_nms(boxes, scores, idxs, 0.5, max_per_group=max_per_group)
    assert_same_keep(keep, reference_batched_nms(boxes, scores, idxs, 0.5, max_per_group))
    if max_per_group == 10_000:
        assert_same_keep(keep, batched_nms(boxes, scores, idxs, 0.5))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_half_and_double_boxes_and_scores(dtype):
    generator = seeded(30)
    boxes = tiny_person_lattice(20, 20, generator).to(dtype)
    scores = distinct_scores(len(boxes), generator).to(dtype)  # ties once rounded to half precision
    idxs = torch.randint(0, 2, (len(boxes),), generator=generator)
    keep = batched_nms(boxes, scores, idxs, 0.5)
    assert_same_keep(keep, reference_batched_nms(boxes, scores, idxs, 0.5))
    if dtype == torch.float64:
        assert_same_keep(keep, _batched_nms_vanilla(boxes, scores, idxs, 0.5))


def test_non_contiguous_inputs():
    generator = seeded(40)
    boxes = tiny_person_lattice(20, 20, generator)
    scores = torch.randint(0, 30, (len(boxes),), generator=generator).float()
    idxs = torch.randint(0, 3, (len(boxes),), generator=generator)
    strided_boxes = boxes.t().contiguous().t()
    strided_scores = torch.stack([scores, -scores], dim=1)[:, 0]
    strided_idxs = idxs.repeat_interleave(3)[::3]
    assert not (
        strided_boxes.is_contiguous() or strided_scores.is_contiguous() or strided_idxs.is_contiguous()
    )
    keep = batched_nms(strided_boxes, strided_scores, strided_idxs, 0.5)
    assert_same_keep(keep, batched_nms(boxes, scores, idxs, 0.5))
    assert_same_keep(keep, reference_batched_nms(boxes, scores, idxs, 0.5))


@pytest.mark.parametrize("idxs_dtype", [torch.int32, torch.int16, torch.uint8])
def test_narrow_integer_group_ids(idxs_dtype):
    generator = seeded(50)
    boxes = tiny_person_lattice(20, 20, generator)
    scores = distinct_scores(len(boxes), generator)
    idxs = torch.randint(0, 4, (len(boxes),), generator=generator)
    assert_same_keep(
        batched_nms(boxes, scores, idxs.to(idxs_dtype), 0.5), batched_nms(boxes, scores, idxs, 0.5)
    )


@pytest.mark.parametrize("iou_threshold", [1, 1.0, 1.5, math.inf])
def test_threshold_one_or_more_keeps_every_box_by_decreasing_score(iou_threshold):
    generator = seeded(60)
    boxes = torch.cat([tiny_person_lattice(10, 10, generator)] * 2)  # exact duplicates have IoU 1, not > 1
    scores = distinct_scores(len(boxes), generator)
    keep = batched_nms(boxes, scores, torch.zeros(len(boxes), dtype=torch.int64), iou_threshold)
    assert_same_keep(keep, torch.sort(scores, descending=True).indices)


@pytest.mark.parametrize(
    "iou_threshold",
    [np.float32(0.5), np.float64(0.5), torch.tensor(0.5), torch.tensor(0.5, dtype=torch.float64)],
)
def test_threshold_may_be_a_numpy_or_tensor_scalar_as_in_torchvision(iou_threshold):
    generator = seeded(61)
    boxes = tiny_person_lattice(10, 10, generator)
    scores = distinct_scores(len(boxes), generator)
    idxs = torch.randint(0, 2, (len(boxes),), generator=generator)
    assert_same_keep(batched_nms(boxes, scores, idxs, iou_threshold), batched_nms(boxes, scores, idxs, 0.5))


def test_inputs_that_require_grad():
    generator = seeded(62)
    boxes = tiny_person_lattice(10, 10, generator)
    scores = distinct_scores(len(boxes), generator)
    idxs = torch.randint(0, 2, (len(boxes),), generator=generator)
    keep = batched_nms(boxes.clone().requires_grad_(), scores.clone().requires_grad_(), idxs, 0.5)
    assert_same_keep(keep, batched_nms(boxes, scores, idxs, 0.5))


def test_inputs_are_left_unchanged():
    generator = seeded(70)
    boxes = tiny_person_lattice(10, 10, generator)
    scores = distinct_scores(len(boxes), generator)
    idxs = torch.randint(0, 3, (len(boxes),), generator=generator)
    copies = boxes.clone(), scores.clone(), idxs.clone()
    batched_nms(boxes, scores, idxs, 0.5)
    for tensor, copy in zip((boxes, scores, idxs), copies, strict=True):
        assert torch.equal(tensor, copy)


@st.composite
def small_nms_problems(draw):
    """Few boxes on a half-pixel lattice (duplicates, shared edges, zero and negative sizes), tied scores."""
    n = draw(st.integers(0, 24))
    corner = st.integers(0, 12).map(lambda v: v / 2)
    size = st.integers(-2, 8).map(lambda v: v / 2)
    rows = draw(st.lists(st.tuples(corner, corner, size, size), min_size=n, max_size=n))
    boxes = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in rows], dtype=torch.float32).reshape(n, 4)
    tied_scores = st.sampled_from([-0.0, 0.0, 0.1, 0.5, 0.7, 0.9])  # -0.0 and 0.0 are a tie too
    scores = torch.tensor(draw(st.lists(tied_scores, min_size=n, max_size=n)))
    idxs = torch.tensor(draw(st.lists(st.integers(0, 2), min_size=n, max_size=n)), dtype=torch.int64)
    iou_threshold = draw(st.sampled_from([0.0, 0.25, 0.5, 1 / 3, 0.7, 1.0]) | st.floats(0, 1))
    max_per_group = draw(st.none() | st.integers(0, 4))
    dtype = draw(st.sampled_from([torch.float32, torch.float64, torch.float16]))
    return boxes.to(dtype), scores.to(dtype), idxs, iou_threshold, max_per_group


@settings(max_examples=200, deadline=None)
@given(small_nms_problems())
def test_property_equals_the_reference(problem):
    boxes, scores, idxs, iou_threshold, max_per_group = problem
    keep = batched_nms(boxes, scores, idxs, iou_threshold, max_per_group)
    assert_same_keep(keep, reference_batched_nms(boxes, scores, idxs, iou_threshold, max_per_group))


def small_boxes_with(huge, n=1000, dtype=torch.float32, seed=70):
    generator = seeded(seed)
    small = random_boxes(n, generator, extent=1000.0, max_size=20.0)
    boxes = torch.cat((small, torch.tensor([huge]))).to(dtype)
    return boxes, distinct_scores(len(boxes), generator), torch.zeros(len(boxes), dtype=torch.int64)


def timed_nms(boxes, scores, idxs):
    start = time.perf_counter()
    keep = batched_nms(boxes, scores, idxs, 0.5)
    return keep, time.perf_counter() - start


@pytest.mark.parametrize(
    "huge",
    [[-3e38, 0.0, 3e38, 10.0], [-3e38, -3e38, 3e38, 3e38], [0.0, -3e38, 10.0, 3e38]],
    ids=["wide", "both-axes", "tall"],
)
def test_a_huge_finite_box_keeps_the_grid_bounded(huge):
    # Such a box once stretched the grid to 2^30 columns (seconds, GiB) or threw std::bad_alloc.
    boxes, scores, idxs = small_boxes_with(huge)
    keep, seconds = timed_nms(boxes, scores, idxs)
    assert_same_keep(keep, reference_batched_nms(boxes, scores, idxs, 0.5))
    assert seconds < 5.0


def test_a_float64_box_beyond_double_range_does_not_put_all_boxes_in_one_cell():
    # Its side overflows double: it goes to the list of large boxes instead of stretching the grid.
    generator = seeded(71)
    boxes = tiny_person_lattice(200, 200, generator).double()  # 40,000 boxes kept side by side
    scores = distinct_scores(len(boxes), generator).double()
    idxs = torch.zeros(len(boxes), dtype=torch.int64)
    plain, plain_seconds = timed_nms(boxes, scores, idxs)
    with_huge = torch.cat((boxes, torch.tensor([[-1e308, -1e308, 1e308, 1e308]], dtype=torch.float64)))
    keep, huge_seconds = timed_nms(with_huge, torch.cat((scores, scores[:1])), torch.cat((idxs, idxs[:1])))
    assert len(boxes) in keep.tolist()  # its area overflows to inf: its IoU with any box is 0
    assert_same_keep(keep[keep != len(boxes)], plain)
    assert huge_seconds < 10 * plain_seconds + 1.0  # one shared cell took ~300x as long


# ---------------------------------------------------------------------------------------------------------
# The registered op: fake kernel, torch.compile
# ---------------------------------------------------------------------------------------------------------


def opcheck_inputs():
    generator = seeded(80)
    boxes = tiny_person_lattice(5, 6, generator)
    scores = distinct_scores(len(boxes), generator)
    idxs = torch.randint(0, 3, (len(boxes),), generator=generator)
    return [
        (boxes, scores, idxs, 0.5, None),
        (boxes.double(), scores.double(), idxs, 0.0, 2),
        (boxes.half(), scores.half(), idxs, 1.0, None),
        (torch.empty(0, 4), torch.empty(0), torch.empty(0, dtype=torch.int64), 0.5, None),
    ]


@pytest.mark.parametrize("args", opcheck_inputs())
def test_opcheck(args):
    torch.library.opcheck(torch.ops.tinyfast.batched_nms.default, args)


def compile_inputs(seed):
    generator = seeded(seed)
    boxes = tiny_person_lattice(10, 10, generator)
    scores = torch.randn(len(boxes), generator=generator)
    idxs = torch.randint(0, 3, (len(boxes),), generator=generator)
    return boxes, scores, idxs


def test_torch_compile_of_a_function_calling_the_op():
    def detections(boxes, scores, idxs):
        return batched_nms(boxes + 1.0, scores.sigmoid(), idxs, 0.5)  # a graph break at the op

    torch._dynamo.reset()
    compiled = torch.compile(detections, fullgraph=False)
    inputs = compile_inputs(90)
    assert_same_keep(compiled(*inputs), detections(*inputs))


def test_the_fake_kernel_lets_the_op_into_a_full_graph():
    def kept_boxes(boxes, scores, idxs):
        shifted = boxes + 1.0
        return shifted[batched_nms(shifted, scores.sigmoid(), idxs, 0.5)]

    torch._dynamo.reset()
    with torch._dynamo.config.patch(capture_dynamic_output_shape_ops=True):
        compiled = torch.compile(kept_boxes, backend="aot_eager", fullgraph=True)
        for seed in (91, 92):  # the second call has another number of boxes: a dynamic-shape graph
            boxes, scores, idxs = compile_inputs(seed)
            inputs = boxes[: 100 + seed], scores[: 100 + seed], idxs[: 100 + seed]
            assert torch.equal(compiled(*inputs), kept_boxes(*inputs))


def test_torch_compile_full_graph_with_dynamic_shapes():
    def kept_boxes(boxes, scores, idxs):
        shifted = boxes + 1.0
        return shifted[batched_nms(shifted, scores.sigmoid(), idxs, 0.5, max_per_group=50)]

    torch._dynamo.reset()
    compiled = torch.compile(kept_boxes, backend="aot_eager", fullgraph=True, dynamic=True)
    for seed in (93, 94):
        boxes, scores, idxs = compile_inputs(seed)
        inputs = boxes[: 100 + seed], scores[: 100 + seed], idxs[: 100 + seed]
        assert torch.equal(compiled(*inputs), kept_boxes(*inputs))


# ---------------------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------------------


def valid_arguments():
    return {
        "boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 11.0, 11.0]]),
        "scores": torch.tensor([0.9, 0.8]),
        "idxs": torch.tensor([0, 0]),
        "iou_threshold": 0.5,
    }


BAD_ARGUMENTS = [
    ("boxes", torch.zeros(2, 3)),
    ("boxes", torch.zeros(8)),
    ("boxes", torch.zeros(2, 4, dtype=torch.int64)),
    ("boxes", [[0.0, 0.0, 1.0, 1.0]] * 2),
    ("boxes", torch.tensor([[0.0, 0.0, math.inf, 10.0], [1.0, 1.0, 11.0, 11.0]])),
    ("boxes", torch.tensor([[0.0, 0.0, 10.0, 10.0], [math.nan, 1.0, 11.0, 11.0]])),
    ("boxes", torch.tensor([[0.0, -math.inf, 10.0, 10.0], [1.0, 1.0, 11.0, 11.0]]).double()),
    ("scores", torch.tensor([0.9, 0.8, 0.7])),
    ("scores", torch.tensor([[0.9, 0.8]])),
    ("scores", torch.tensor([9, 8])),
    ("scores", torch.tensor([0.9, math.nan])),
    ("scores", torch.tensor([math.inf, 0.8])),
    ("scores", torch.tensor([0.9, -math.inf]).half()),
    ("idxs", torch.tensor([0, 0, 0])),
    ("idxs", torch.tensor([0.0, 0.0])),
    ("idxs", torch.tensor([[0, 0]])),
    ("iou_threshold", math.nan),
    ("iou_threshold", -0.1),
    ("iou_threshold", "0.5"),
    ("iou_threshold", torch.tensor([0.5, 0.5])),
    ("iou_threshold", True),
    ("max_per_group", -1),
    ("max_per_group", -5),
    ("max_per_group", 2.7),
    ("max_per_group", "3"),
    ("max_per_group", True),
]


@pytest.mark.parametrize(("name", "value"), BAD_ARGUMENTS)
def test_bad_argument_raises_value_error_naming_it(name, value):
    arguments = valid_arguments() | {name: value}
    with pytest.raises(ValueError, match=name):
        batched_nms(**arguments)


def test_inputs_on_different_devices_raise_value_error():
    arguments = valid_arguments() | {"scores": torch.empty(2, device="meta")}
    with pytest.raises(ValueError, match="device"):
        batched_nms(**arguments)


@pytest.mark.parametrize("name", ["boxes", "scores"])
def test_the_raw_op_rejects_non_finite_values_naming_the_argument(name):
    arguments = valid_arguments()
    arguments[name] = arguments[name].clone()
    arguments[name][-1] = math.nan
    with pytest.raises(ValueError, match=name):
        torch.ops.tinyfast.batched_nms(*arguments.values(), None)


def test_the_raw_op_rejects_a_negative_cap():
    with pytest.raises(ValueError, match="max_per_group"):
        torch.ops.tinyfast.batched_nms(*valid_arguments().values(), -1)


def test_cuda_available_in_build_is_a_bool():
    assert isinstance(cuda_available_in_build(), bool)


# ---------------------------------------------------------------------------------------------------------
# CUDA against CPU
# ---------------------------------------------------------------------------------------------------------


def assert_cuda_matches_cpu(boxes, scores, idxs, iou_threshold, max_per_group=None):
    on_cuda = batched_nms(boxes.cuda(), scores.cuda(), idxs.cuda(), iou_threshold, max_per_group)
    assert on_cuda.device.type == "cuda"
    assert_same_keep(on_cuda, batched_nms(boxes, scores, idxs, iou_threshold, max_per_group))
    return on_cuda


@cuda_test
@pytest.mark.parametrize("num_groups", [1, 64, 5000])
@pytest.mark.parametrize("iou_threshold", [0.0, 0.5, 0.8])
def test_cuda_large_random_sets(num_groups, iou_threshold):
    generator = seeded(100 + num_groups)
    boxes = torch.cat(
        [random_boxes(100_000, generator, extent=5000.0), clustered_tiny_boxes(1000, 100, generator)]
    )
    scores = distinct_scores(len(boxes), generator)
    idxs = torch.randint(0, num_groups, (len(boxes),), generator=generator)
    assert_cuda_matches_cpu(boxes, scores, idxs, iou_threshold)


@cuda_test
@pytest.mark.parametrize("iou_threshold", [0.3, 0.5, 0.7])
def test_cuda_rounds_borderline_iou_like_cpu(iou_threshold):
    generator = seeded(105)
    boxes, idxs = borderline_pairs(20_000, iou_threshold, generator)
    assert_cuda_matches_cpu(boxes, distinct_scores(len(boxes), generator), idxs, iou_threshold)


@cuda_test
def test_cuda_matches_torchvision_cuda_where_the_arithmetic_is_exact():
    generator = seeded(106)
    boxes = tiny_person_lattice(
        200, 300, generator
    )  # 1/8 px coordinates: every step but the division is exact
    scores = distinct_scores(len(boxes), generator)
    idxs = torch.randint(0, 4, (len(boxes),), generator=generator)
    arguments = boxes.cuda(), scores.cuda(), idxs.cuda(), 0.5
    assert_same_keep(batched_nms(*arguments), torchvision.ops.batched_nms(*arguments))


@cuda_test
def test_cuda_tiny_person_merge_workload():
    workload = tiny_person_merge()
    on_cuda = assert_cuda_matches_cpu(workload.boxes, workload.scores, workload.idxs, 0.5)
    assert_same_keep(on_cuda, _batched_nms_vanilla(workload.boxes, workload.scores, workload.idxs, 0.5))


@cuda_test
@pytest.mark.parametrize("max_per_group", [None, 0, 2])
def test_cuda_ties_degenerate_boxes_and_max_per_group(max_per_group):
    generator = seeded(110)
    lattice = tiny_person_lattice(40, 50, generator)
    x1, y1, x2, y2 = lattice[:500].unbind(1)
    degenerate = torch.stack([x2, y1, x1, y2], dim=1)
    boxes = torch.cat([lattice, lattice[:300], degenerate])
    scores = torch.randint(-4, 5, (len(boxes),), generator=generator).float()
    scores[(scores == 0) & (torch.arange(len(scores)) % 2 == 0)] = -0.0  # ties with 0.0
    idxs = torch.randint(0, 4, (len(boxes),), generator=generator)
    for iou_threshold in (0.0, 0.5, 1.0):
        assert_cuda_matches_cpu(boxes, scores, idxs, iou_threshold, max_per_group)


@cuda_test
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_cuda_dtypes_and_layouts(dtype):
    generator = seeded(120)
    boxes = tiny_person_lattice(40, 50, generator).to(dtype)
    scores = distinct_scores(len(boxes), generator).to(dtype)
    idxs = torch.randint(0, 3, (len(boxes),), generator=generator, dtype=torch.int32)
    assert_cuda_matches_cpu(boxes.t().contiguous().t(), scores, idxs, 0.5)


@cuda_test
def test_cuda_empty_input_and_bad_input():
    empty = batched_nms(
        torch.empty(0, 4, device="cuda"),
        torch.empty(0, device="cuda"),
        torch.empty(0, dtype=torch.int64, device="cuda"),
        0.5,
    )
    assert empty.device.type == "cuda" and empty.dtype == torch.int64 and empty.shape == (0,)
    arguments = {
        name: value.cuda() if isinstance(value, torch.Tensor) else value
        for name, value in valid_arguments().items()
    }
    with pytest.raises(ValueError, match="device"):
        batched_nms(**(arguments | {"idxs": valid_arguments()["idxs"]}))
    for name in ("boxes", "scores"):
        bad = arguments[name].clone()
        bad[-1] = math.inf
        with pytest.raises(ValueError, match=name):
            batched_nms(**(arguments | {name: bad}))
