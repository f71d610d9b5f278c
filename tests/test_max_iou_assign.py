"""tinyfast.ops.max_iou_assign against the dense mmdetection 2.x reference (tests/reference/)."""

import pytest
import torch
import torchvision
from cuda_marks import cuda_test
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.workload import RETINANET_ASSIGNER, tiny_person_retinanet
from tests.reference.max_iou_assign import dense_max_iou_assign, retinanet_anchors
from tinyfast.ops import max_iou_assign

# (pos_iou, neg_iou, min_pos_iou, low_quality, gt_max_assign_all): RetinaNet, RPN, the R-CNN stage, and
# low-quality matching with one box per GT.
ASSIGNERS = [
    pytest.param(dict(pos_iou=0.5, neg_iou=0.4, min_pos_iou=0.0), id="retinanet"),
    pytest.param(dict(pos_iou=0.7, neg_iou=0.3, min_pos_iou=0.3), id="rpn"),
    pytest.param(dict(pos_iou=0.5, neg_iou=0.5, min_pos_iou=0.5, low_quality=False), id="rcnn"),
    pytest.param(dict(pos_iou=0.5, neg_iou=0.4, min_pos_iou=0.0, gt_max_assign_all=False), id="first-best"),
]

# ---------------------------------------------------------------------------------------------------------
# Helpers and data
# ---------------------------------------------------------------------------------------------------------


def assert_same_assignment(got, expected):
    assigned, max_iou = got
    expected_assigned, expected_max_iou = expected
    assert assigned.dtype == torch.int64 and max_iou.dtype == expected_max_iou.dtype
    assert assigned.shape == expected_assigned.shape and max_iou.shape == expected_max_iou.shape
    assigned, max_iou = assigned.cpu(), max_iou.cpu()
    differs = (assigned != expected_assigned) | (max_iou != expected_max_iou)
    if differs.any():
        box = int(differs.nonzero()[0])
        pytest.fail(
            f"{int(differs.sum())} boxes differ; first: box {box}: got {int(assigned[box])} "
            f"(IoU {float(max_iou[box])!r}), expected {int(expected_assigned[box])} "
            f"(IoU {float(expected_max_iou[box])!r})"
        )


def assert_matches_reference(*arguments, **keywords):
    got = max_iou_assign(*arguments, **keywords)
    assert_same_assignment(got, dense_max_iou_assign(*arguments, **keywords))
    return got


def random_boxes(count, height, width, generator, max_side=40.0, integer=False):
    xy = torch.rand(count, 2, generator=generator) * torch.tensor([width, height]) * 1.2 - 10
    wh = torch.rand(count, 2, generator=generator) ** 2 * max_side
    boxes = torch.cat((xy, xy + wh), 1)
    return boxes.round() if integer else boxes


def counts_of(parts):
    return torch.tensor([len(p) for p in parts], dtype=torch.int64)


def batch(boxes_per_image, gts_per_image, ignores_per_image=None):
    """Arguments and ignore keywords from lists of per-image [n, 4] tensors."""
    arguments = (
        torch.cat(boxes_per_image).reshape(-1, 4),
        counts_of(boxes_per_image),
        torch.cat(gts_per_image).reshape(-1, 4),
        counts_of(gts_per_image),
    )
    if ignores_per_image is None:
        return arguments, {}
    ignores = {
        "ignore_boxes": torch.cat(ignores_per_image).reshape(-1, 4),
        "ignore_counts": counts_of(ignores_per_image),
    }
    return arguments, ignores


def anchors(height=96, width=128, dtype=torch.float32):
    return retinanet_anchors(height, width, dtype=dtype)


# ---------------------------------------------------------------------------------------------------------
# Equality with the reference
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("assigner", ASSIGNERS)
def test_tiny_person_like_batch(assigner):
    workload = tiny_person_retinanet(
        num_images=2, gts_per_image=100, ignores_per_image=4, height=96, width=128
    )
    assigned, _ = assert_matches_reference(*workload.arguments(), **workload.ignore_arguments(), **assigner)
    assert (assigned >= 0).sum() > 40 and (assigned == -2).sum() > 100 and (assigned == -1).sum() > 1000


@pytest.mark.parametrize("assigner", ASSIGNERS)
@pytest.mark.parametrize("seed", range(4))
def test_random_proposals_with_different_counts(seed, assigner):
    generator = torch.Generator().manual_seed(seed)
    box_counts = [[0, 300, 1000], [50, 0, 400], [1, 1, 1], [700, 200, 3]][seed]
    gt_counts = [[0, 1, 37], [200, 5, 0], [3, 0, 1], [60, 200, 1]][seed]
    max_side = [20, 60, 140, 300][seed]
    boxes = [random_boxes(n, 96, 128, generator, max_side=max_side) for n in box_counts]
    gts = [random_boxes(n, 96, 128, generator, max_side=max_side) for n in gt_counts]
    ignores = [random_boxes(n, 96, 128, generator, max_side=60) for n in (2, 0, 5)]
    arguments, ignore = batch(boxes, gts, ignores)
    assert_matches_reference(*arguments, **ignore, **assigner)


@pytest.mark.parametrize("assigner", ASSIGNERS)
def test_integer_boxes_make_ties_everywhere(assigner):
    # Integer GTs among anchors centred on multiples of the stride: equal IoUs within and across GTs.
    generator = torch.Generator().manual_seed(7)
    gts = [random_boxes(150, 96, 128, generator, max_side=30, integer=True) for _ in range(2)]
    arguments, _ = batch([anchors(), anchors()], gts)
    assert_matches_reference(*arguments, **assigner)


@pytest.mark.parametrize("assigner", ASSIGNERS)
def test_more_than_a_thousand_gts(assigner):
    generator = torch.Generator().manual_seed(3)
    gts = [random_boxes(1200, 48, 64, generator, max_side=16), random_boxes(1100, 48, 64, generator)]
    arguments, _ = batch([anchors(48, 64), anchors(48, 64)], gts)
    assert_matches_reference(*arguments, **assigner)


def test_max_iou_agrees_with_torchvision_box_iou():
    # An independent IoU (torchvision's, without the 1e-6 clamp, which boxes of this size never reach).
    generator = torch.Generator().manual_seed(4)
    boxes = random_boxes(500, 96, 128, generator, max_side=60).double()
    gts = random_boxes(40, 96, 128, generator, max_side=30).double()
    _, max_iou = max_iou_assign(boxes, torch.tensor([500]), gts, torch.tensor([40]), 0.5, 0.4)
    torch.testing.assert_close(
        max_iou, torchvision.ops.box_iou(gts, boxes).max(dim=0).values, rtol=1e-12, atol=0
    )


def test_identical_gts_first_by_max_iou_last_by_low_quality():
    gt = torch.tensor([[10.0, 12.0, 30.0, 40.0]])
    boxes = anchors()
    arguments, _ = batch([boxes, boxes], [gt.repeat(1000, 1), gt.repeat(3, 1)])
    assigned, max_iou = assert_matches_reference(*arguments, pos_iou=0.5, neg_iou=0.4, low_quality=False)
    first = max_iou >= 0.5
    assert first.any() and set(assigned[first].tolist()) == {0, 1000}  # the first GT of each image
    assigned, max_iou = assert_matches_reference(*arguments, pos_iou=0.99, neg_iou=0.4)
    best = max_iou == max_iou[: len(boxes)].max()
    assert set(assigned[best].tolist()) == {999, 1002}  # low-quality matches: the last GT overrides


@pytest.mark.parametrize("assign_all", [True, False])
def test_identical_boxes_all_or_first_at_the_max(assign_all):
    boxes = torch.tensor([[0.0, 0.0, 8.0, 8.0], [9.0, 9.0, 20.0, 21.0]]).repeat(50, 1)
    gts = torch.tensor([[10.0, 10.0, 30.0, 30.0]])
    assigned, _ = assert_matches_reference(
        boxes, torch.tensor([100]), gts, torch.tensor([1]), 0.9, 0.1, gt_max_assign_all=assign_all
    )
    positives = (assigned == 0).nonzero().flatten().tolist()
    assert positives == (list(range(1, 100, 2)) if assign_all else [1])


def test_zero_area_inverted_and_distant_gts_give_no_positives():
    # The deviation from mmdetection: a GT whose max IoU is 0 gets no low-quality positive.
    gts = torch.tensor(
        [
            [20.0, 20.0, 20.0, 50.0],  # zero width
            [20.0, 20.0, 50.0, 20.0],  # zero height
            [50.0, 50.0, 20.0, 20.0],  # inverted
            [500.0, 500.0, 600.0, 700.0],  # outside the anchors
        ]
    )
    arguments, _ = batch([anchors()], [gts])
    assigned, max_iou = assert_matches_reference(*arguments, pos_iou=0.5, neg_iou=0.4)
    assert (assigned == -1).all() and (max_iou == 0).all()
    assigned, _ = assert_matches_reference(*arguments, pos_iou=0.0, neg_iou=0.0, low_quality=False)
    assert (assigned == 0).all()  # pos_iou 0: every box positive, ties at IoU 0 to the first GT


@pytest.mark.parametrize("assigner", ASSIGNERS)
def test_gts_on_and_across_the_image_border_and_huge_boxes(assigner):
    # Huge GTs span more grid cells than a box is listed in, huge proposals more cells than there are GTs.
    generator = torch.Generator().manual_seed(11)
    tiny = random_boxes(400, 96, 128, generator, max_side=6)
    border = torch.tensor(
        [
            [0.0, 0.0, 12.0, 12.0],
            [120.0, 90.0, 128.0, 96.0],
            [-5.0, 30.0, 10.0, 60.0],
            [100.0, -20.0, 140.0, 20.0],
        ]
    )
    huge = torch.tensor([[0.0, 0.0, 128.0, 96.0], [-50.0, 10.0, 90.0, 80.0], [30.0, 0.0, 40.0, 96.0]])
    gts = torch.cat((tiny[:200], border, huge, tiny[200:]))
    proposals = torch.cat((random_boxes(300, 96, 128, generator, max_side=20), huge, border))
    arguments, _ = batch([anchors(), proposals], [gts, gts[:10]])
    assert_matches_reference(*arguments, **assigner)


def test_ignore_regions():
    boxes = torch.tensor(
        [
            [10.0, 10.0, 20.0, 20.0],  # half inside the region: IoF 0.5, not > 0.5
            [12.0, 10.0, 22.0, 20.0],  # IoF 0.6: ignored
            [30.0, 30.0, 40.0, 40.0],  # a GT's only overlapping box, inside the region: still ignored
            [60.0, 60.0, 70.0, 70.0],
        ]
    )
    gts = torch.tensor([[31.0, 30.0, 41.0, 40.0], [60.0, 60.0, 70.0, 69.0]])
    regions = torch.tensor([[15.0, 0.0, 50.0, 50.0]])
    arguments = (boxes, torch.tensor([4]), gts, torch.tensor([2]))
    keywords = dict(pos_iou=0.5, neg_iou=0.4, ignore_boxes=regions, ignore_counts=torch.tensor([1]))
    assigned, max_iou = assert_matches_reference(*arguments, **keywords)
    assert assigned.tolist() == [-1, -2, -2, 1]
    assert max_iou[2] > 0.8  # its IoU, not mmdetection's -1
    for iof in (0.0, -1.0):  # mmdetection ignores only for ignore_iof_thr > 0
        assigned, _ = assert_matches_reference(*arguments, **keywords | {"ignore_iof": iof})
        assert assigned.tolist() == [-1, -1, 0, 1]
    # An image without GTs has only negatives, ignore regions or not.
    assigned, _ = assert_matches_reference(boxes, torch.tensor([4]), gts[:0], torch.tensor([0]), **keywords)
    assert assigned.tolist() == [-1] * 4


@pytest.mark.parametrize("assigner", ASSIGNERS)
def test_many_ignore_regions_of_all_sizes(assigner):
    generator = torch.Generator().manual_seed(17)
    gts = [random_boxes(80, 96, 128, generator, max_side=30) for _ in range(2)]
    ignores = [
        random_boxes(40, 96, 128, generator, max_side=60, integer=True),
        torch.tensor([[0.0, 0, 128, 96]]),
    ]
    arguments, ignore = batch([anchors(), anchors()], gts, ignores)
    assert_matches_reference(*arguments, **ignore, **assigner)


def test_thresholds_compare_in_the_boxes_precision():
    # PyTorch compares a float32 tensor with a Python float rounded to float32: an IoU equal to
    # float32(threshold) meets a threshold slightly above it.
    generator = torch.Generator().manual_seed(5)
    gts = random_boxes(60, 96, 128, generator, max_side=30, integer=True)
    arguments, _ = batch([anchors()], [gts])
    _, max_iou = dense_max_iou_assign(*arguments, pos_iou=0.5, neg_iou=0.4)
    iou = float(max_iou[max_iou > 0.3].unique()[0])  # exactly representable in float32
    threshold = iou + 1e-12
    assert threshold > iou and torch.tensor(threshold, dtype=torch.float32).item() == iou
    keywords = dict(pos_iou=threshold, neg_iou=threshold, min_pos_iou=threshold, ignore_iof=threshold)
    assigned, got_iou = assert_matches_reference(*arguments, **keywords, low_quality=False)
    assert (assigned[got_iou == iou] >= 0).all()
    assert_matches_reference(*arguments, **keywords)
    # In float64 the same threshold is compared as it is.
    float64_arguments = (arguments[0].double(), arguments[1], arguments[2].double(), arguments[3])
    assigned, got_iou = assert_matches_reference(*float64_arguments, **keywords, low_quality=False)
    assert torch.equal(assigned >= 0, got_iou >= threshold)


@pytest.mark.parametrize(("box_dtype", "gt_dtype"), [
    (torch.float64, torch.float64), (torch.float32, torch.float64), (torch.float16, torch.float16),
    (torch.bfloat16, torch.float32),
])  # fmt: skip
def test_dtypes(box_dtype, gt_dtype):
    generator = torch.Generator().manual_seed(5)
    gts = [random_boxes(80, 96, 128, generator) for _ in range(2)]
    ignores = [random_boxes(5, 96, 128, generator, max_side=50) for _ in range(2)]
    arguments, ignore = batch([anchors(), anchors()], gts, ignores)
    arguments = (arguments[0].to(box_dtype), arguments[1], arguments[2].to(gt_dtype), arguments[3])
    _, max_iou = assert_matches_reference(*arguments, **ignore, **RETINANET_ASSIGNER)
    assert max_iou.dtype == box_dtype


def test_empty_inputs():
    gts = torch.tensor([[0.0, 0.0, 50.0, 50.0]])
    no_boxes = torch.empty(0, 4)
    for arguments in [
        (no_boxes, torch.tensor([0]), gts, torch.tensor([1])),
        (no_boxes, torch.tensor([], dtype=torch.int64), no_boxes, torch.tensor([], dtype=torch.int64)),
        (anchors(32, 48), torch.tensor([len(anchors(32, 48))]), no_boxes, torch.tensor([0])),
        (anchors(32, 48), torch.tensor([0, len(anchors(32, 48)), 0]), gts, torch.tensor([0, 0, 1])),
        (anchors(32, 48), torch.tensor([0, len(anchors(32, 48)), 0]), gts, torch.tensor([1, 0, 0])),
    ]:
        assigned, max_iou = assert_matches_reference(*arguments, **RETINANET_ASSIGNER)
        assert assigned.shape == max_iou.shape == (len(arguments[0]),)


def test_int32_counts_and_non_contiguous_inputs():
    generator = torch.Generator().manual_seed(9)
    boxes = anchors().t().contiguous().t()
    gts = random_boxes(60, 96, 128, generator).t().contiguous().t()
    assert not boxes.is_contiguous() and not gts.is_contiguous()
    counts = (torch.tensor([len(boxes)], dtype=torch.int32), torch.tensor([60], dtype=torch.int32))
    assert_matches_reference(boxes, counts[0], gts, counts[1], **RETINANET_ASSIGNER)


@st.composite
def small_assign_problems(draw):
    """Boxes on a coarse integer lattice: equal IoUs, identical boxes and degenerate ones abound."""
    num_images = draw(st.integers(1, 3))
    coordinate = st.integers(-2, 18).map(lambda v: 2.0 * v)

    def box_set(max_count):
        counts = [draw(st.integers(0, max_count)) for _ in range(num_images)]
        boxes = [[draw(coordinate) for _ in range(4)] for _ in range(sum(counts))]
        return torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), torch.tensor(counts)

    boxes, box_counts = box_set(16)
    gt_boxes, gt_counts = box_set(8)
    ignore_boxes, ignore_counts = box_set(2)
    threshold = st.sampled_from([0.0, 0.1, 0.3, 0.4, 0.5, 0.7, 1.0])
    keywords = dict(
        pos_iou=draw(threshold),
        neg_iou=draw(threshold),
        min_pos_iou=draw(threshold),
        low_quality=draw(st.booleans()),
        gt_max_assign_all=draw(st.booleans()),
        ignore_boxes=ignore_boxes,
        ignore_counts=ignore_counts,
        ignore_iof=draw(threshold),
    )
    return (boxes, box_counts, gt_boxes, gt_counts), keywords


@settings(max_examples=100, deadline=None)
@given(small_assign_problems())
def test_property_equals_the_reference(problem):
    arguments, keywords = problem
    assert_matches_reference(*arguments, **keywords)


# ---------------------------------------------------------------------------------------------------------
# The registered op
# ---------------------------------------------------------------------------------------------------------


def opcheck_inputs():
    generator = torch.Generator().manual_seed(2)
    boxes = anchors(32, 48)
    gts = random_boxes(30, 32, 48, generator)
    ignores = random_boxes(3, 32, 48, generator, max_side=30)
    counts = torch.tensor([len(boxes) - 100, 100])
    common = (counts, gts, torch.tensor([27, 3]))
    return [
        (boxes, *common, ignores, torch.tensor([1, 2]), 0.5, 0.4, 0.0, True, True, 0.5),
        (boxes.double(), *common, ignores.double(), torch.tensor([3, 0]), 0.7, 0.3, 0.3, True, False, 0.5),
        (boxes, *common, torch.empty(0, 4), torch.tensor([0, 0]), 0.5, 0.5, 0.5, False, True, -1.0),
        (boxes, counts, torch.empty(0, 4), torch.tensor([0, 0]), torch.empty(0, 4), torch.tensor([0, 0]),
         0.5, 0.4, 0.0, True, True, 0.5),
    ]  # fmt: skip


@pytest.mark.parametrize("args", opcheck_inputs())
def test_opcheck(args):
    torch.library.opcheck(torch.ops.tinyfast.max_iou_assign.default, args)


# ---------------------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------------------


def good_arguments():
    return dict(
        boxes=torch.tensor([[1.0, 2.0, 20.0, 30.0], [5.0, 5.0, 9.0, 9.0], [0.0, 0.0, 4.0, 4.0]]),
        box_counts=torch.tensor([2, 1]),
        gt_boxes=torch.tensor([[1.0, 2.0, 20.0, 31.0], [5.0, 5.0, 9.0, 9.0]]),
        gt_counts=torch.tensor([1, 1]),
        pos_iou=0.5,
        neg_iou=0.4,
        ignore_boxes=torch.tensor([[0.0, 0.0, 3.0, 3.0]]),
        ignore_counts=torch.tensor([0, 1]),
    )


NAN = float("nan")
BAD_ARGUMENTS = [
    ("boxes", torch.zeros(3, 5)),
    ("boxes", torch.zeros(3, 4, dtype=torch.int64)),
    ("boxes", [[0.0, 0.0, 1.0, 1.0]] * 3),
    ("boxes", torch.tensor([[1.0, 2.0, NAN, 30.0], [5.0, 5.0, 9.0, 9.0], [0.0, 0.0, 4.0, 4.0]])),
    ("boxes", torch.tensor([[1.0, 2.0, 20.0, float("inf")], [5.0, 5.0, 9.0, 9.0], [0.0, 0.0, 4.0, 4.0]])),
    ("boxes", torch.tensor([[-3e38, -3e38, 3e38, 3e38], [5.0, 5.0, 9.0, 9.0], [0.0, 0.0, 4.0, 4.0]])),
    ("boxes", torch.tensor([[0.0, 0.0, 1e20, 1e20], [5.0, 5.0, 9.0, 9.0], [0.0, 0.0, 4.0, 4.0]])),
    ("box_counts", torch.tensor([2, 2])),
    ("box_counts", torch.tensor([4, -1])),
    ("box_counts", torch.tensor([[2, 1]])),
    ("box_counts", torch.tensor([2.0, 1.0])),
    ("box_counts", [2, 1]),
    ("gt_boxes", torch.zeros(2, 3)),
    ("gt_boxes", torch.tensor([[1.0, 2.0, 20.0, NAN], [5.0, 5.0, 9.0, 9.0]])),
    ("gt_boxes", torch.tensor([[-1e30, -1e30, 1e30, 1e30], [5.0, 5.0, 9.0, 9.0]])),
    ("gt_counts", torch.tensor([2, 1])),
    ("gt_counts", torch.tensor([2])),
    ("gt_counts", torch.tensor([3, -1])),
    ("ignore_boxes", torch.tensor([[0.0, 0.0, 3.0, NAN]])),
    ("ignore_boxes", torch.zeros(1, 4, dtype=torch.int32)),
    ("ignore_counts", torch.tensor([1, 1])),
    ("ignore_counts", torch.tensor([1])),
    ("ignore_counts", None),
    ("pos_iou", NAN),
    ("pos_iou", "0.5"),
    ("neg_iou", NAN),
    ("neg_iou", None),
    ("min_pos_iou", NAN),
    ("ignore_iof", NAN),
    ("low_quality", 1),
    ("low_quality", "no"),
    ("gt_max_assign_all", None),
    ("pos_iou", True),
    ("ignore_iof", "0.5"),
]


@pytest.mark.parametrize(("name", "value"), BAD_ARGUMENTS)
def test_bad_arguments_raise_value_error_naming_them(name, value):
    arguments = good_arguments() | {name: value}
    with pytest.raises(ValueError, match=name):
        max_iou_assign(**arguments)


def test_inputs_on_different_devices_raise_value_error():
    arguments = good_arguments() | {"gt_boxes": torch.zeros(2, 4, device="meta")}
    with pytest.raises(ValueError, match="device"):
        max_iou_assign(**arguments)


def test_the_good_arguments_are_good():
    assigned, _ = max_iou_assign(**good_arguments())
    assert assigned.tolist() == [0, -1, -2]


def test_counts_that_wrap_around_int64_are_rejected():
    # They add up to the number of boxes only modulo 2^64.
    arguments = good_arguments()
    arguments["box_counts"] = torch.tensor([2**62, 2**62, 2**62, 2**62 + 3])
    arguments["gt_counts"] = torch.tensor([1, 1, 0, 0])
    arguments["ignore_counts"] = torch.tensor([0, 1, 0, 0])
    assert int(arguments["box_counts"].sum()) == len(arguments["boxes"])
    with pytest.raises(ValueError, match="box_counts must sum to"):
        max_iou_assign(**arguments)


def test_torch_compile_full_graph_with_dynamic_shapes():
    def assignment(boxes, box_counts, gt_boxes, gt_counts):
        assigned, max_iou = max_iou_assign(boxes * 1.0, box_counts, gt_boxes, gt_counts, 0.5, 0.4)
        return assigned, max_iou + 1

    torch._dynamo.reset()
    compiled = torch.compile(assignment, backend="aot_eager", fullgraph=True, dynamic=True)
    generator = torch.Generator().manual_seed(13)
    for gts_per_image in ([20, 3], [5, 0, 9]):  # other numbers of GTs and images: the same graph
        boxes = anchors()
        gt_boxes = torch.cat([random_boxes(n, 96, 128, generator) for n in gts_per_image])
        box_counts = torch.tensor([len(boxes)] + [0] * (len(gts_per_image) - 1))
        arguments = (boxes, box_counts, gt_boxes, torch.tensor(gts_per_image))
        for got, expected in zip(compiled(*arguments), assignment(*arguments), strict=True):
            assert torch.equal(got, expected)


def test_the_op_checks_its_arguments_too():
    a = good_arguments()
    with pytest.raises(ValueError, match="gt_counts"):
        torch.ops.tinyfast.max_iou_assign(
            a["boxes"], a["box_counts"], a["gt_boxes"], torch.tensor([2, 1]), a["ignore_boxes"],
            a["ignore_counts"], 0.5, 0.4, 0.0, True, True, 0.5,
        )  # fmt: skip
    with pytest.raises(ValueError, match="pos_iou"):
        torch.ops.tinyfast.max_iou_assign(
            a["boxes"], a["box_counts"], a["gt_boxes"], a["gt_counts"], a["ignore_boxes"],
            a["ignore_counts"], NAN, 0.4, 0.0, True, True, 0.5,
        )  # fmt: skip


# ---------------------------------------------------------------------------------------------------------
# CUDA against CPU and the reference (bit-identical: the same rules, the same float operations)
# ---------------------------------------------------------------------------------------------------------


def to_cuda(values):
    if isinstance(values, dict):
        return {k: v.cuda() if isinstance(v, torch.Tensor) else v for k, v in values.items()}
    return tuple(v.cuda() if isinstance(v, torch.Tensor) else v for v in values)


@cuda_test
@pytest.mark.parametrize("assigner", ASSIGNERS)
def test_cuda_matches_cpu_on_the_tiny_person_workload(assigner):
    workload = tiny_person_retinanet(num_images=2)
    arguments, ignore = workload.arguments(), workload.ignore_arguments()
    on_cuda = max_iou_assign(*to_cuda(arguments), **to_cuda(ignore), **assigner)
    assert on_cuda[0].device.type == "cuda"
    assert_same_assignment(on_cuda, max_iou_assign(*arguments, **ignore, **assigner))


@cuda_test
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("assigner", ASSIGNERS)
def test_cuda_matches_the_reference_on_adversarial_sets(dtype, assigner):
    generator = torch.Generator().manual_seed(13)
    gt = torch.tensor([[10.0, 12.0, 30.0, 40.0]])
    gts = [
        random_boxes(1200, 96, 128, generator, max_side=30, integer=True),
        torch.empty(0, 4),
        torch.cat((gt.repeat(50, 1), torch.tensor([[0.0, 0.0, 128.0, 96.0], [20.0, 20.0, 20.0, 60.0]]))),
    ]
    proposals = torch.cat((random_boxes(500, 96, 128, generator, max_side=100), gt.repeat(20, 1)))
    ignores = [random_boxes(10, 96, 128, generator, max_side=50), torch.empty(0, 4), gt]
    arguments, ignore = batch([anchors(), proposals, proposals], gts, ignores)
    arguments = (arguments[0].to(dtype), arguments[1], arguments[2].to(dtype), arguments[3])
    on_cuda = max_iou_assign(*to_cuda(arguments), **to_cuda(ignore), **assigner)
    assert_same_assignment(on_cuda, dense_max_iou_assign(*arguments, **ignore, **assigner))


@cuda_test
def test_cuda_bad_boxes_raise_value_error():
    arguments = good_arguments() | {"gt_boxes": torch.tensor([[1.0, 2.0, 20.0, NAN], [5.0, 5.0, 9.0, 9.0]])}
    with pytest.raises(ValueError, match="gt_boxes"):
        max_iou_assign(**to_cuda(arguments))


@cuda_test
def test_cuda_opcheck():
    for args in opcheck_inputs():
        torch.library.opcheck(torch.ops.tinyfast.max_iou_assign.default, to_cuda(args))
