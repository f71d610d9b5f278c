"""tinyfast.ops.point_nms against the plain greedy reference, on random and adversarial inputs."""

import math
import time

import numpy as np
import pytest
import torch
from cuda_marks import cuda_test
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.workload import tiny_person_merge
from tests.reference.point_nms import reference_point_nms
from tinyfast.ops import point_nms

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


def assert_matches_reference(points, scores, idxs, sizes, threshold, max_per_group=None):
    keep = point_nms(points, scores, idxs, sizes, threshold, max_per_group)
    assert_same_keep(keep, reference_point_nms(points, scores, idxs, sizes, threshold, max_per_group))
    return keep


def neighbour_pairs(points, idxs, keep, cell):
    """(kept, other) index pairs of one group whose points lie in the same or adjacent square cells of side
    `cell`: every pair closer than `cell` on both axes, found with sorted cell keys (small groups ids)."""
    column = torch.floor(points[:, 0] / cell).long()
    row = torch.floor(points[:, 1] / cell).long()
    column, row = column - column.min() + 1, row - row.min() + 1

    def key(group, column, row):
        return (group * 2**20 + column) * 2**20 + row

    sorted_keys, by_key = torch.sort(key(idxs, column, row))
    kept, other = [], []
    for dx in (-1, 0, 1):
        for dy in (-1, 0, 1):
            wanted = key(idxs[keep], column[keep] + dx, row[keep] + dy)
            first = torch.searchsorted(sorted_keys, wanted)
            counts = torch.searchsorted(sorted_keys, wanted, right=True) - first
            starts = torch.repeat_interleave(first, counts)
            within_run = torch.arange(int(counts.sum())) - torch.repeat_interleave(
                counts.cumsum(0) - counts, counts
            )
            kept.append(torch.repeat_interleave(keep, counts))
            other.append(by_key[starts + within_run])
    return torch.cat(kept), torch.cat(other)


def assert_greedy_invariant(points, scores, idxs, sizes, threshold, keep):
    """The greedy rule checked without the reference, for large inputs: a point is kept iff no kept point of
    its group ranked before it suppresses it, and keep is in rank order. Candidate pairs come from cells of
    the largest radius; the exact rule then decides each pair."""
    points, radii = points.double(), sizes.double() * threshold
    order = torch.sort(scores.double(), descending=True, stable=True).indices
    rank = torch.empty_like(order)
    rank[order] = torch.arange(len(order))
    assert torch.equal(keep[torch.argsort(rank[keep])], keep), "keep is not in rank order"
    assert 0 <= idxs.min() and idxs.max() < 2**20
    kept, other = neighbour_pairs(points, idxs, keep, float(radii[keep].max()))
    dx, dy, r = points[other, 0] - points[kept, 0], points[other, 1] - points[kept, 1], radii[kept]
    u, v = dx / r, dy / r
    within = (dx < r) & (-dx < r) & (dy < r) & (-dy < r) & (u * u + v * v < 1)
    suppressed = torch.zeros(len(points), dtype=torch.bool)
    suppressed[other[within & (rank[kept] < rank[other])]] = True
    is_kept = torch.zeros(len(points), dtype=torch.bool)
    is_kept[keep] = True
    assert torch.equal(~suppressed, is_kept)


def seeded(seed):
    return torch.Generator().manual_seed(seed)


def distinct_scores(n, generator):
    return torch.randperm(n, generator=generator).float() / max(n, 1)


def random_points(n, generator, extent=1000.0):
    return torch.rand(n, 2, generator=generator) * extent


def tiny_person_sizes(n, generator):
    """sqrt(area) of tiny persons: log-normal around 10 px, in [2, 32]."""
    return torch.exp(math.log(10) + 0.5 * torch.randn(n, generator=generator)).clamp(2, 32)


def clustered_points(clusters, per_cluster, generator, extent=2000.0, spread=2.0):
    """Several detections of each person, jittered around its centre: much suppression."""
    centres = torch.rand(clusters, 2, generator=generator) * extent
    points = centres.repeat_interleave(per_cluster, dim=0)
    return points + spread * torch.randn(points.shape, generator=generator)


def workload_points(num_images=1):
    """The TinyPerson merge workload's boxes as points: centres, sizes sqrt(area), one group per image."""
    workload = tiny_person_merge(num_images=num_images)
    boxes = workload.boxes
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    sizes = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).sqrt()
    return centres, workload.scores, workload.idxs, sizes


# ---------------------------------------------------------------------------------------------------------
# The rule
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("max_per_group", [None, 0, 3])
def test_empty_input_gives_an_empty_int64_keep(max_per_group):
    keep = point_nms(
        torch.empty(0, 2),
        torch.empty(0),
        torch.empty(0, dtype=torch.int64),
        torch.empty(0),
        1.0,
        max_per_group,
    )
    assert keep.dtype == torch.int64
    assert keep.shape == (0,)


def test_one_point_is_kept():
    keep = point_nms(
        torch.tensor([[1.0, 2.0]]), torch.tensor([0.3]), torch.tensor([7]), torch.tensor([5.0]), 1.0
    )
    assert_same_keep(keep, torch.tensor([0]))


def test_many_identical_points_keep_only_the_best_of_each_group():
    generator = seeded(1)
    points = torch.tensor([[10.0, 20.0]]).repeat(500, 1)
    idxs = torch.randint(0, 3, (500,), generator=generator)
    scores = distinct_scores(500, generator)
    keep = assert_matches_reference(points, scores, idxs, torch.full((500,), 4.0), 0.5)
    assert len(keep) == 3
    assert set(keep.tolist()) == {int(torch.argmax(torch.where(idxs == g, scores, -1.0))) for g in range(3)}


def test_the_kept_points_size_sets_the_radius():
    points = torch.tensor([[0.0, 0.0], [5.0, 0.0]])
    sizes = torch.tensor([10.0, 1.0])
    idxs = torch.zeros(2, dtype=torch.int64)
    # The large point first: its radius 10 covers the small one at distance 5.
    assert_same_keep(point_nms(points, torch.tensor([0.9, 0.8]), idxs, sizes, 1.0), torch.tensor([0]))
    # The small point first: its radius 1 does not reach the large one.
    assert_same_keep(point_nms(points, torch.tensor([0.8, 0.9]), idxs, sizes, 1.0), torch.tensor([1, 0]))


def test_suppression_is_strictly_within_the_radius():
    # Distances 3, 4, 5 and 5 (a 3-4-5 triangle) from the first point, radius 5.
    points = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, -4.0], [5.0, 0.0], [3.0, 4.0]])
    scores = torch.tensor([0.9, 0.5, 0.4, 0.3, 0.2])
    sizes = torch.tensor([10.0, 0.0, 0.0, 0.0, 0.0])
    keep = assert_matches_reference(points, scores, torch.zeros(5, dtype=torch.int64), sizes, 0.5)
    assert_same_keep(keep, torch.tensor([0, 3, 4]))


def test_points_of_other_groups_never_suppress():
    points = torch.tensor([[0.0, 0.0]]).repeat(4, 1)
    keep = point_nms(
        points, torch.tensor([0.4, 0.3, 0.2, 0.1]), torch.tensor([0, 1, 0, 1]), torch.ones(4), 1.0
    )
    assert_same_keep(keep, torch.tensor([0, 1]))


def test_zero_sizes_suppress_nothing_but_can_be_suppressed():
    generator = seeded(2)
    points = clustered_points(50, 4, generator)
    scores = distinct_scores(len(points), generator)
    sizes = torch.where(torch.rand(len(points), generator=generator) < 0.5, 0.0, 8.0)
    keep = assert_matches_reference(points, scores, torch.zeros(len(points), dtype=torch.int64), sizes, 1.0)
    all_zero = point_nms(
        points, scores, torch.zeros(len(points), dtype=torch.int64), torch.zeros(len(points)), 1.0
    )
    assert_same_keep(all_zero, torch.sort(scores, descending=True).indices)
    assert len(keep) < len(points)


@pytest.mark.parametrize("threshold", [0, 0.0])
def test_threshold_zero_keeps_every_point_by_decreasing_score(threshold):
    generator = seeded(3)
    points = torch.cat([clustered_points(20, 5, generator)] * 2)  # exact duplicates too
    scores = distinct_scores(len(points), generator)
    keep = point_nms(
        points,
        scores,
        torch.zeros(len(points), dtype=torch.int64),
        torch.full((len(points),), 5.0),
        threshold,
    )
    assert_same_keep(keep, torch.sort(scores, descending=True).indices)


def test_an_infinite_threshold_keeps_the_best_point_of_each_group():
    generator = seeded(4)
    points = random_points(300, generator, extent=1e6)
    scores = distinct_scores(len(points), generator)
    idxs = torch.randint(0, 7, (len(points),), generator=generator)
    sizes = tiny_person_sizes(len(points), generator)
    sizes[scores.argmax()] = 0.0  # the overall best suppresses nothing: the next of its group does
    keep = assert_matches_reference(points, scores, idxs, sizes, math.inf)
    assert len(keep) == 7 + 1


@pytest.mark.parametrize("num_groups", [1, 5, 100])
@pytest.mark.parametrize("threshold", [0.25, 0.5, 1.0, 3.0])
def test_random_sets_match_the_reference(num_groups, threshold):
    generator = seeded(10 + num_groups)
    points = torch.cat([clustered_points(300, 4, generator), random_points(1000, generator, extent=2000.0)])
    points = points - 500  # negative coordinates too
    scores = distinct_scores(len(points), generator)
    idxs = torch.randint(0, num_groups, (len(points),), generator=generator)
    sizes = tiny_person_sizes(len(points), generator)
    sizes[:50] *= 30  # a few large objects: disks over many cells
    keep = assert_matches_reference(points, scores, idxs, sizes, threshold)
    assert 0 < len(keep) < len(points)


@pytest.mark.parametrize("seed", range(3))
def test_many_ties_match_the_reference(seed):
    generator = seeded(20 + seed)
    points = (clustered_points(100, 5, generator, extent=300.0) * 2).round() / 2  # exact distances
    scores = torch.randint(0, 8, (len(points),), generator=generator).float() / 8
    idxs = torch.randint(0, 3, (len(points),), generator=generator)
    sizes = torch.randint(0, 4, (len(points),), generator=generator).float() * 2
    for threshold in (0.5, 1.0):
        assert_matches_reference(points, scores, idxs, sizes, threshold)


def test_equal_scores_keep_the_lower_index_first():
    points = torch.tensor([[100.0, 100.0], [0.0, 0.0], [0.0, 0.0], [100.0, 100.0], [0.0, 0.0]])
    scores = torch.tensor([0.5, 0.5, 0.5, 0.5, 0.9])
    sizes = torch.ones(5)
    idxs = torch.zeros(5, dtype=torch.int64)
    assert_same_keep(point_nms(points, scores, idxs, sizes, 1.0), torch.tensor([4, 0]))
    assert_same_keep(point_nms(points[:4], scores[:4], idxs[:4], sizes[:4], 1.0), torch.tensor([0, 1]))


def test_signed_zero_and_negative_scores_rank_like_a_stable_sort():
    generator = seeded(23)
    points = clustered_points(60, 4, generator, extent=200.0)
    values = torch.tensor([0.0, -0.0, -0.5, 0.5, -1e-30, 1e-30, -3.0, 2.0, float(torch.finfo().tiny) / 4])
    scores = values[torch.randint(0, len(values), (len(points),), generator=generator)]
    idxs = torch.randint(0, 2, (len(points),), generator=generator)
    assert_matches_reference(points, scores, idxs, torch.full((len(points),), 6.0), 1.0)


def test_any_integer_group_ids_and_many_groups():
    generator = seeded(24)
    points = clustered_points(500, 4, generator, extent=500.0)
    scores = distinct_scores(len(points), generator)
    sizes = tiny_person_sizes(len(points), generator)
    group_ids = torch.tensor([-(2**40), -1, 0, 3, 2**62])
    idxs = group_ids[torch.randint(0, len(group_ids), (len(points),), generator=generator)]
    assert_matches_reference(points, scores, idxs, sizes, 1.0)
    # 2000 images x 1 class, and one group per point
    assert_matches_reference(
        points, scores, torch.randint(0, 2000, (len(points),), generator=generator), sizes, 1.0
    )
    keep = assert_matches_reference(points, scores, torch.arange(len(points)), sizes, 1.0)
    assert len(keep) == len(points)


@pytest.mark.parametrize("max_per_group", [0, 1, 5])
def test_max_per_group_keeps_the_first_kept_points_of_each_group(max_per_group):
    generator = seeded(25)
    points = clustered_points(100, 3, generator, extent=400.0)
    scores = distinct_scores(len(points), generator)
    idxs = torch.randint(0, 4, (len(points),), generator=generator)
    sizes = tiny_person_sizes(len(points), generator)
    keep = assert_matches_reference(points, scores, idxs, sizes, 1.0, max_per_group)
    assert torch.bincount(idxs[keep], minlength=4).max() <= max_per_group
    full = point_nms(points, scores, idxs, sizes, 1.0)
    expected = [
        i for i in full.tolist() if (idxs[full[: full.tolist().index(i)]] == idxs[i]).sum() < max_per_group
    ]
    assert keep.tolist() == expected


def test_the_tiny_person_workload_as_points():
    points, scores, idxs, sizes = workload_points(num_images=1)
    keep = point_nms(points, scores, idxs, sizes, 0.5)
    assert_greedy_invariant(points, scores, idxs, sizes, 0.5, keep)
    assert 0.1 * len(points) < len(keep) < 0.9 * len(points)
    with pytest.raises(AssertionError):  # the check sees a point missing from keep
        assert_greedy_invariant(points, scores, idxs, sizes, 0.5, keep[:-1])


@pytest.mark.slow
def test_40k_clustered_points_satisfy_the_greedy_rule():
    generator = seeded(26)
    points = clustered_points(8_000, 5, generator, extent=3000.0)
    scores = distinct_scores(len(points), generator)
    idxs = torch.randint(0, 4, (len(points),), generator=generator)
    sizes = tiny_person_sizes(len(points), generator)
    keep = point_nms(points, scores, idxs, sizes, 0.5)
    assert_greedy_invariant(points, scores, idxs, sizes, 0.5, keep)


# ---------------------------------------------------------------------------------------------------------
# Huge values, dtypes and layouts
# ---------------------------------------------------------------------------------------------------------


def timed_nms(points, scores, idxs, sizes, threshold):
    start = time.perf_counter()
    keep = point_nms(points, scores, idxs, sizes, threshold)
    return keep, time.perf_counter() - start


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_huge_coordinates_and_sizes(dtype):
    generator = seeded(30)
    limit = torch.finfo(dtype).max
    normal = clustered_points(200, 3, generator, extent=1000.0).to(dtype)
    huge = torch.tensor(
        [[limit, limit], [-limit, limit], [limit, -limit], [-limit, -limit], [limit, 0.0], [0.0, -limit]],
        dtype=dtype,
    )
    points = torch.cat([normal, huge, huge * 0.5, huge * 1e-10])
    scores = distinct_scores(len(points), generator).to(dtype)
    sizes = tiny_person_sizes(len(points), generator).to(dtype)
    sizes[-6:] = limit  # radii that reach every point, or overflow to inf
    for threshold in (0.5, 1.0, 4.0):
        assert_matches_reference(
            points, scores, torch.zeros(len(points), dtype=torch.int64), sizes, threshold
        )


def test_a_far_point_does_not_slow_the_grid():
    generator = seeded(31)
    points = clustered_points(8000, 2, generator, extent=4000.0)
    scores = distinct_scores(len(points), generator)
    idxs = torch.zeros(len(points), dtype=torch.int64)
    sizes = tiny_person_sizes(len(points), generator)
    plain, plain_seconds = timed_nms(points, scores, idxs, sizes, 1.0)
    far = torch.cat([points, torch.tensor([[3e38, -3e38]])])
    keep, far_seconds = timed_nms(
        far,
        torch.cat([scores, torch.tensor([2.0])]),
        torch.cat([idxs, idxs[:1]]),
        torch.cat([sizes, sizes[:1]]),
        1.0,
    )
    assert keep[0] == len(points)
    assert_same_keep(keep[1:], plain)
    assert far_seconds < 10 * plain_seconds + 1.0


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_dtypes(dtype):
    generator = seeded(32)
    points = clustered_points(100, 4, generator, extent=200.0).to(dtype)
    scores = distinct_scores(len(points), generator).to(dtype)  # ties once rounded to half precision
    idxs = torch.randint(0, 2, (len(points),), generator=generator)
    sizes = tiny_person_sizes(len(points), generator).to(dtype)
    assert_matches_reference(points, scores, idxs, sizes, 1.0)


def test_mixed_dtypes():
    generator = seeded(33)
    points = clustered_points(100, 4, generator, extent=200.0)
    scores = distinct_scores(len(points), generator).double()
    idxs = torch.randint(0, 2, (len(points),), generator=generator)
    sizes = tiny_person_sizes(len(points), generator).half()
    assert_matches_reference(points, scores, idxs, sizes, 1.0)
    assert_matches_reference(points.half(), scores.float(), idxs, sizes.double(), 1.0)


def test_non_contiguous_inputs_and_narrow_group_ids():
    generator = seeded(34)
    points = clustered_points(100, 4, generator, extent=200.0)
    scores = torch.randint(0, 30, (len(points),), generator=generator).float()
    idxs = torch.randint(0, 3, (len(points),), generator=generator)
    sizes = tiny_person_sizes(len(points), generator)
    strided_points = points.t().contiguous().t()
    strided_scores = torch.stack([scores, -scores], dim=1)[:, 0]
    strided_idxs = idxs.repeat_interleave(3)[::3]
    strided_sizes = sizes.repeat_interleave(2)[::2]
    assert not any(t.is_contiguous() for t in (strided_points, strided_scores, strided_idxs, strided_sizes))
    expected = reference_point_nms(points, scores, idxs, sizes, 1.0)
    assert_same_keep(point_nms(strided_points, strided_scores, strided_idxs, strided_sizes, 1.0), expected)
    for narrow in (torch.int32, torch.int16, torch.uint8):
        assert_same_keep(point_nms(points, scores, idxs.to(narrow), sizes, 1.0), expected)


@pytest.mark.parametrize(
    "threshold", [np.float32(0.5), np.float64(0.5), torch.tensor(0.5), torch.tensor(0.5, dtype=torch.float64)]
)
def test_threshold_may_be_a_numpy_or_tensor_scalar(threshold):
    generator = seeded(35)
    points = clustered_points(50, 4, generator, extent=200.0)
    scores = distinct_scores(len(points), generator)
    idxs = torch.zeros(len(points), dtype=torch.int64)
    sizes = tiny_person_sizes(len(points), generator)
    assert_same_keep(
        point_nms(points, scores, idxs, sizes, threshold), point_nms(points, scores, idxs, sizes, 0.5)
    )


def test_inputs_that_require_grad_are_left_unchanged():
    generator = seeded(36)
    points = clustered_points(50, 4, generator, extent=200.0)
    scores = distinct_scores(len(points), generator)
    idxs = torch.randint(0, 3, (len(points),), generator=generator)
    sizes = tiny_person_sizes(len(points), generator)
    inputs = (
        points.clone().requires_grad_(),
        scores.clone().requires_grad_(),
        idxs,
        sizes.clone().requires_grad_(),
    )
    keep = point_nms(*inputs, 1.0)
    assert_same_keep(keep, reference_point_nms(points, scores, idxs, sizes, 1.0))
    for tensor, original in zip(inputs, (points, scores, idxs, sizes), strict=True):
        assert torch.equal(tensor, original)


@st.composite
def small_point_problems(draw):
    """Few points on a half-pixel lattice (duplicates, exact boundary distances), tied scores, sizes 0 too."""
    n = draw(st.integers(0, 24))
    coordinate = st.integers(0, 12).map(lambda v: v / 2)
    points = torch.tensor(
        draw(st.lists(st.tuples(coordinate, coordinate), min_size=n, max_size=n)), dtype=torch.float32
    ).reshape(n, 2)
    tied_scores = st.sampled_from([-0.0, 0.0, 0.1, 0.5, 0.7, 0.9])
    scores = torch.tensor(draw(st.lists(tied_scores, min_size=n, max_size=n)))
    idxs = torch.tensor(draw(st.lists(st.integers(0, 2), min_size=n, max_size=n)), dtype=torch.int64)
    sizes = torch.tensor(draw(st.lists(st.integers(0, 8).map(lambda v: v / 2), min_size=n, max_size=n)))
    threshold = draw(st.sampled_from([0.0, 0.5, 1.0, 2.0, math.inf]) | st.floats(0, 4))
    max_per_group = draw(st.none() | st.integers(0, 4))
    dtype = draw(st.sampled_from([torch.float32, torch.float64, torch.float16]))
    return points.to(dtype), scores.to(dtype), idxs, sizes.to(dtype), threshold, max_per_group


@settings(max_examples=200, deadline=None)
@given(small_point_problems())
def test_property_equals_the_reference(problem):
    assert_matches_reference(*problem)


# ---------------------------------------------------------------------------------------------------------
# The registered op: fake kernel, torch.compile
# ---------------------------------------------------------------------------------------------------------


def opcheck_inputs():
    generator = seeded(80)
    points = clustered_points(10, 3, generator, extent=100.0)
    scores = distinct_scores(len(points), generator)
    idxs = torch.randint(0, 3, (len(points),), generator=generator)
    sizes = tiny_person_sizes(len(points), generator)
    return [
        (points, scores, idxs, sizes, 0.5, None),
        (points.double(), scores.double(), idxs, sizes.double(), 1.0, 2),
        (points.half(), scores.half(), idxs, sizes.half(), 0.0, None),
        (torch.empty(0, 2), torch.empty(0), torch.empty(0, dtype=torch.int64), torch.empty(0), 0.5, None),
    ]


@pytest.mark.parametrize("args", opcheck_inputs())
def test_opcheck(args):
    torch.library.opcheck(torch.ops.tinyfast.point_nms.default, args)


def test_torch_compile_full_graph_with_dynamic_shapes():
    def kept_points(points, scores, idxs, sizes):
        shifted = points + 1.0
        return shifted[point_nms(shifted, scores.sigmoid(), idxs, sizes, 0.5, max_per_group=50)]

    torch._dynamo.reset()
    compiled = torch.compile(kept_points, backend="aot_eager", fullgraph=True, dynamic=True)
    for seed in (93, 94):
        generator = seeded(seed)
        n = 100 + seed  # a second number of points: a dynamic-shape graph
        inputs = (
            clustered_points(n, 1, generator, extent=200.0),
            torch.randn(n, generator=generator),
            torch.randint(0, 3, (n,), generator=generator),
            tiny_person_sizes(n, generator),
        )
        assert torch.equal(compiled(*inputs), kept_points(*inputs))


# ---------------------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------------------


def valid_arguments():
    return {
        "points": torch.tensor([[0.0, 0.0], [1.0, 1.0]]),
        "scores": torch.tensor([0.9, 0.8]),
        "idxs": torch.tensor([0, 0]),
        "sizes": torch.tensor([4.0, 4.0]),
        "distance_threshold": 0.5,
    }


BAD_ARGUMENTS = [
    ("points", torch.zeros(2, 3)),
    ("points", torch.zeros(4)),
    ("points", torch.zeros(2, 2, dtype=torch.int64)),
    ("points", [[0.0, 0.0]] * 2),
    ("points", torch.tensor([[0.0, math.inf], [1.0, 1.0]])),
    ("points", torch.tensor([[0.0, 0.0], [math.nan, 1.0]])),
    ("points", torch.tensor([[0.0, -math.inf], [1.0, 1.0]]).double()),
    ("scores", torch.tensor([0.9, 0.8, 0.7])),
    ("scores", torch.tensor([[0.9, 0.8]])),
    ("scores", torch.tensor([9, 8])),
    ("scores", torch.tensor([0.9, math.nan])),
    ("scores", torch.tensor([math.inf, 0.8]).half()),
    ("idxs", torch.tensor([0, 0, 0])),
    ("idxs", torch.tensor([0.0, 0.0])),
    ("idxs", torch.tensor([[0, 0]])),
    ("sizes", torch.tensor([4.0])),
    ("sizes", torch.tensor([4, 4])),
    ("sizes", torch.tensor([4.0, math.nan])),
    ("sizes", torch.tensor([math.inf, 4.0])),
    ("sizes", torch.tensor([4.0, -1.0])),
    ("sizes", torch.tensor([-1e-30, 4.0]).double()),
    ("distance_threshold", math.nan),
    ("distance_threshold", -0.1),
    ("distance_threshold", "0.5"),
    ("distance_threshold", True),
    ("distance_threshold", torch.tensor([0.5, 0.5])),
    ("max_per_group", -1),
    ("max_per_group", 2.7),
    ("max_per_group", "3"),
    ("max_per_group", True),
]


@pytest.mark.parametrize(("name", "value"), BAD_ARGUMENTS)
def test_bad_argument_raises_value_error_naming_it(name, value):
    arguments = valid_arguments() | {name: value}
    with pytest.raises(ValueError, match=name):
        point_nms(**arguments)


def test_inputs_on_different_devices_raise_value_error():
    arguments = valid_arguments() | {"sizes": torch.empty(2, device="meta")}
    with pytest.raises(ValueError, match="device"):
        point_nms(**arguments)


@pytest.mark.parametrize("name", ["points", "scores", "sizes"])
def test_the_raw_op_rejects_non_finite_values_naming_the_argument(name):
    arguments = valid_arguments()
    arguments[name] = arguments[name].clone()
    arguments[name][-1] = math.nan
    with pytest.raises(ValueError, match=name):
        torch.ops.tinyfast.point_nms(*arguments.values(), None)


def test_the_raw_op_rejects_a_negative_cap():
    with pytest.raises(ValueError, match="max_per_group"):
        torch.ops.tinyfast.point_nms(*valid_arguments().values(), -1)


# ---------------------------------------------------------------------------------------------------------
# CUDA against CPU
# ---------------------------------------------------------------------------------------------------------


def assert_cuda_matches_cpu(points, scores, idxs, sizes, threshold, max_per_group=None):
    on_cuda = point_nms(points.cuda(), scores.cuda(), idxs.cuda(), sizes.cuda(), threshold, max_per_group)
    assert on_cuda.device.type == "cuda"
    assert_same_keep(on_cuda, point_nms(points, scores, idxs, sizes, threshold, max_per_group))


@cuda_test
@pytest.mark.parametrize("num_groups", [1, 64, 5000])
@pytest.mark.parametrize("threshold", [0.0, 0.5, 2.0])
def test_cuda_large_random_sets(num_groups, threshold):
    generator = seeded(100 + num_groups)
    points = torch.cat(
        [random_points(50_000, generator, extent=5000.0), clustered_points(10_000, 5, generator)]
    )
    scores = distinct_scores(len(points), generator)
    idxs = torch.randint(0, num_groups, (len(points),), generator=generator)
    sizes = tiny_person_sizes(len(points), generator)
    assert_cuda_matches_cpu(points, scores, idxs, sizes, threshold)


@cuda_test
@pytest.mark.parametrize("max_per_group", [None, 0, 2])
def test_cuda_ties_zero_sizes_and_max_per_group(max_per_group):
    generator = seeded(110)
    points = (clustered_points(500, 4, generator, extent=500.0) * 2).round() / 2
    scores = torch.randint(-4, 5, (len(points),), generator=generator).float()
    scores[(scores == 0) & (torch.arange(len(scores)) % 2 == 0)] = -0.0
    idxs = torch.randint(0, 4, (len(points),), generator=generator)
    sizes = torch.randint(0, 5, (len(points),), generator=generator).float() * 2
    for threshold in (0.5, 1.0, math.inf):
        assert_cuda_matches_cpu(points, scores, idxs, sizes, threshold, max_per_group)


@cuda_test
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_cuda_dtypes_huge_values_and_the_workload(dtype):
    points, scores, idxs, sizes = workload_points(num_images=2)
    assert_cuda_matches_cpu(points.to(dtype), scores.to(dtype), idxs, sizes.to(dtype), 0.5)
    limit = torch.finfo(dtype).max
    huge = torch.tensor([[limit, limit], [-limit, 0.0], [0.0, -limit]], dtype=dtype)
    assert_cuda_matches_cpu(
        torch.cat([points[:100].to(dtype), huge]), scores[:103].to(dtype), idxs[:103],
        torch.cat([sizes[:100].to(dtype), torch.full((3,), limit, dtype=dtype)]), 1.0,
    )  # fmt: skip


@cuda_test
def test_cuda_empty_input_and_bad_input():
    empty = point_nms(
        torch.empty(0, 2, device="cuda"), torch.empty(0, device="cuda"),
        torch.empty(0, dtype=torch.int64, device="cuda"), torch.empty(0, device="cuda"), 0.5,
    )  # fmt: skip
    assert empty.device.type == "cuda" and empty.dtype == torch.int64 and empty.shape == (0,)
    arguments = {
        name: value.cuda() if isinstance(value, torch.Tensor) else value
        for name, value in valid_arguments().items()
    }
    with pytest.raises(ValueError, match="device"):
        point_nms(**(arguments | {"idxs": valid_arguments()["idxs"]}))
    for name in ("points", "scores", "sizes"):
        bad = arguments[name].clone()
        bad[-1] = math.inf
        with pytest.raises(ValueError, match=name):
            point_nms(**(arguments | {name: bad}))
    with pytest.raises(ValueError, match="sizes"):
        point_nms(**(arguments | {"sizes": -arguments["sizes"]}))
