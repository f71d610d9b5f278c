import json
import math
from statistics import NormalDist

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from tinyfast.data.annotations import annotations_from_coco, load_annotations
from tinyfast.data.dataset import TinyPersonDataset
from tinyfast.data.errors import DataError
from tinyfast.data.sampling import derived_seed
from tinyfast.data.scale_match import (
    GaussianScaleMatch,
    MonotonicityScaleMatch,
    ScaleMatch,
    ScaleMatchResize,
    SizeDistribution,
    mean_object_size,
    mean_object_sizes,
    object_sizes,
    scale_match_generator,
)
from tinyfast.data.synthetic import generate, generate_source

CANVAS = 4000


def coco(images_wh, crowd=(), ignore=()):
    """A COCO dict: image i holds boxes of the (w, h) pairs images_wh[i] (one person category), plus
    crowd and ignore boxes of the given (image, w, h)."""
    images, annotations = [], []
    for image_id, sizes in enumerate(images_wh):
        images.append({"id": image_id, "file_name": f"{image_id}.jpg", "width": CANVAS, "height": CANVAS})
        for w, h in sizes:
            annotations.append({"image_id": image_id, "bbox": [1.0, 2.0, float(w), float(h)]})
    for flag, extra in (("iscrowd", crowd), ("ignore", ignore)):
        for image_id, w, h in extra:
            annotations.append({"image_id": image_id, "bbox": [0.0, 0.0, float(w), float(h)], flag: 1})
    for ann_id, ann in enumerate(annotations):
        ann.update(id=ann_id, category_id=1, iscrowd=ann.get("iscrowd", 0))
    return {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "person"}]}


def square_sizes(images_wh):
    return np.array([math.sqrt(w * h) for sizes in images_wh for w, h in sizes])


def tiny_target(rng, images=300):
    """TinyPerson-like: log-normal sizes (median ~10 px), varying aspect, 1-20 boxes per image."""
    out = []
    for _ in range(images):
        sizes = np.exp(rng.normal(math.log(10), 0.5, rng.integers(1, 21)))
        aspect = rng.uniform(0.3, 0.6, len(sizes))
        out.append([(s * math.sqrt(a), s / math.sqrt(a)) for s, a in zip(sizes, aspect, strict=True)])
    return out


def coco_like_source(rng, images=1500):
    """Ordinary-sized persons: log-uniform 20-300 px, 1-5 per image."""
    out = []
    for _ in range(images):
        sizes = np.exp(rng.uniform(math.log(20), math.log(300), rng.integers(1, 6)))
        out.append([(0.6 * s, s / 0.6) for s in sizes])
    return out


def ks_statistic(a, b):
    """Two-sample Kolmogorov-Smirnov statistic: the largest gap between the empirical CDFs."""
    try:
        from scipy.stats import ks_2samp
    except ImportError:
        a, b = np.sort(a), np.sort(b)
        points = np.concatenate([a, b])
        gaps = np.searchsorted(a, points, side="right") / len(a) - np.searchsorted(
            b, points, side="right"
        ) / len(b)
        return float(np.abs(gaps).max())
    return float(ks_2samp(a, b).statistic)


def ks_bound(n, m, c_alpha=1.95):
    """The KS statistic's critical value at alpha = 0.001."""
    return c_alpha * math.sqrt((n + m) / (n * m))


@pytest.fixture(scope="module")
def target_wh():
    return tiny_target(np.random.default_rng(0))


@pytest.fixture(scope="module")
def target(target_wh):
    # Crowd and ignore boxes far outside the persons' sizes: counted, they would move the histogram.
    return coco(target_wh, crowd=[(0, 900, 900)] * 40, ignore=[(1, 600, 700)] * 40)


@pytest.fixture(scope="module")
def source_wh():
    return coco_like_source(np.random.default_rng(1))


def test_ks_statistic_against_a_direct_computation():
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=300), rng.normal(0.3, 1, size=200)
    grid = np.sort(np.concatenate([a, b]))
    direct = max(abs((a <= x).mean() - (b <= x).mean()) for x in grid)
    assert ks_statistic(a, b) == pytest.approx(direct)
    assert ks_statistic(a, a) == 0


def test_sizes_leave_out_crowd_and_ignore(target, target_wh):
    data = annotations_from_coco(target)
    np.testing.assert_allclose(np.sort(object_sizes(data)), np.sort(square_sizes(target_wh)))
    expected = [math.exp(np.mean([0.5 * math.log(w * h) for w, h in sizes])) for sizes in target_wh]
    np.testing.assert_allclose(mean_object_sizes(data), expected)


def test_image_size_is_the_geometric_mean():
    boxes = torch.tensor([[0, 0, 4, 9], [10, 10, 12, 20], [5, 5, 6, 6]], dtype=torch.float32)
    assert mean_object_size(boxes) == pytest.approx((6 * math.sqrt(20) * 1) ** (1 / 3))
    assert mean_object_size(boxes.numpy()) == mean_object_size(boxes)
    assert mean_object_size(torch.zeros(0, 4)) is None and mean_object_size(np.zeros(0)) is None


@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("except_rate", [0.0, 0.02, 0.1])
def test_histogram_rule(log, except_rate):
    sizes = np.random.default_rng(2).lognormal(2, 0.6, 1001)
    bins = 20
    hist = SizeDistribution.histogram(sizes, bins, except_rate, log)
    axis = np.sort(np.log(sizes) if log else sizes)
    outer = math.floor(len(sizes) * except_rate / 2)
    counts, edges = np.histogram(axis[outer : len(axis) - outer], bins=bins - 2 if except_rate else bins)
    if except_rate:
        counts = np.concatenate([[outer], counts, [outer]])
        edges = np.concatenate([[axis[0]], edges, [axis[-1]]])
    assert len(hist.probs) == bins and hist.probs.sum() == pytest.approx(1)
    np.testing.assert_allclose(hist.probs * len(sizes), counts, atol=1e-9)
    np.testing.assert_allclose(np.log(hist.edges) if log else hist.edges, edges, rtol=1e-12)


def test_histogram_of_equal_sizes_and_of_one_size():
    for sizes in (np.full(50, 7.0), np.array([7.0])):
        hist = SizeDistribution.histogram(sizes, 10, 0.2, log=False)
        assert hist.probs.sum() == pytest.approx(1) and (hist.edges == 7).all()
        assert hist.sample(torch.Generator().manual_seed(0)) == 7


def test_sample_never_picks_an_empty_bin():
    hist = SizeDistribution(np.array([1.0, 2.0, 3.0, 4.0, 5.0]), np.array([0.0, 0.5, 0.0, 0.5]))
    generator = torch.Generator().manual_seed(0)
    drawn = np.array([hist.sample(generator) for _ in range(2000)])
    assert ((drawn >= 2) & (drawn <= 3) | (drawn >= 4) & (drawn <= 5)).all()
    assert (drawn < 3).mean() == pytest.approx(0.5, abs=0.05)
    log_hist = SizeDistribution(np.array([1.0, 100.0]), np.array([1.0]), log=True)
    drawn = np.array([log_hist.sample(generator) for _ in range(2000)])
    assert (np.log10(drawn) < 1).mean() == pytest.approx(0.5, abs=0.05)  # uniform in log size


@pytest.mark.parametrize("use_log_bins", [False, True])
def test_scale_match_draws_follow_the_target(target, target_wh, source_wh, use_log_bins):
    # A wide scale range: every draw is accepted, so scale * image size is the drawn size.
    matcher = ScaleMatch(target, scale_range=(1e-4, 1e4), use_log_bins=use_log_bins)
    generator = torch.Generator().manual_seed(3)
    drawn, plain = [], []
    for sizes in source_wh * 2:
        boxes = torch.tensor([[1, 2, 1 + w, 2 + h] for w, h in sizes])
        drawn.append(matcher.scale_for(boxes, generator) * mean_object_size(boxes))
        plain.append(mean_object_size(boxes))
    wanted = square_sizes(target_wh)
    assert len(drawn) == 3000
    assert ks_statistic(drawn, wanted) < ks_bound(len(drawn), len(wanted))
    assert ks_statistic(plain, wanted) > 0.9  # the bound separates: unmatched sizes are far off
    assert max(drawn) <= wanted.max() + 1e-9 and min(drawn) >= wanted.min() - 1e-9


def test_scale_match_reads_a_json_path_like_the_dict(tmp_path, target):
    path = tmp_path / "target.json"
    path.write_text(json.dumps(target))
    from_path, from_dict = ScaleMatch(str(path)), ScaleMatch(target)
    from_set = ScaleMatch(annotations_from_coco(target))
    for other in (from_path, from_set):
        np.testing.assert_array_equal(other.target.edges, from_dict.target.edges)
        np.testing.assert_array_equal(other.target.probs, from_dict.target.probs)


def test_reproducible_with_a_seed(target):
    matcher = ScaleMatch(target)
    boxes = torch.tensor([[0.0, 0.0, 60.0, 150.0]])

    def draws(generator):
        return [matcher.scale_for(boxes, generator) for _ in range(20)]

    assert draws(scale_match_generator(0, 1, 2)) == draws(scale_match_generator(0, 1, 2))
    assert draws(scale_match_generator(0, 1, 2)) != draws(scale_match_generator(0, 1, 3))
    assert draws(scale_match_generator(0, 1, 2)) != draws(scale_match_generator(0, 2, 2))
    assert draws(scale_match_generator(0, 1, 2)) != draws(scale_match_generator(1, 1, 2))
    torch.manual_seed(7)
    first = draws(None)  # the global RNG, as SeededItems seeds it per item
    torch.manual_seed(7)
    assert draws(None) == first
    # Its own stream: not the item seed's, which the item's flip draws from.
    item = torch.rand(4, generator=torch.Generator().manual_seed(derived_seed(0, 1, 2)))
    assert not torch.equal(torch.rand(4, generator=scale_match_generator(0, 1, 2)), item)


def test_out_of_range_scales():
    target = coco([[(10, 10)], [(12, 12)]])  # target sizes 10-12; an image of size 200 needs 0.05-0.06
    boxes = torch.tensor([[0.0, 0.0, 200.0, 200.0]])
    generator = torch.Generator().manual_seed(0)
    clip = ScaleMatch(target, scale_range=(0.1, 1.0), out_scale_deal="clip")
    default = ScaleMatch(
        target, scale_range=(0.1, 1.0), default_scale=0.3, out_scale_deal="use_default_scale"
    )
    assert clip.scale_for(boxes, generator) == 0.1 and default.scale_for(boxes, generator) == 0.3
    upward = ScaleMatch(target, scale_range=(0.1, 1.0))
    assert upward.scale_for(torch.tensor([[0.0, 0.0, 2.0, 2.0]]), generator) == 1.0  # 5-6 clipped to 1


def test_redraws_up_to_max_sample_try():
    # Target sizes uniform on 5-50 for an image of size 100: a draw is in [0.1, 1] with probability 40/45.
    target = coco([[(s, s)] for s in np.linspace(5, 50, 1000)])
    boxes = torch.tensor([[0.0, 0.0, 100.0, 100.0]])
    in_range = (50 - 10) / 45
    for tries in (1, 3):
        matcher = ScaleMatch(target, bins=45, except_rate=0, max_sample_try=tries)
        generator = torch.Generator().manual_seed(1)
        scales = np.array([matcher.scale_for(boxes, generator) for _ in range(4000)])
        assert (scales == 0.1).mean() == pytest.approx((1 - in_range) ** tries, abs=0.025)
        assert ((scales >= 0.1) & (scales <= 0.5)).all()


@pytest.mark.parametrize("use_log_bins", [False, True])
def test_monotonicity_scale_match_maps_quantiles_to_quantiles(target, target_wh, source_wh, use_log_bins):
    matcher = MonotonicityScaleMatch(coco(source_wh), target, use_log_bins=use_log_bins)
    source, wanted = square_sizes(source_wh), square_sizes(target_wh)
    # At the bin edges the map is exact: source quantile edge -> target edge, but where an empty target
    # bin makes two source edges equal (the map jumps over the empty bin there).
    edges = matcher.source_edges
    distinct = np.diff(edges, prepend=0) > 0
    distinct[:-1] &= np.diff(edges) > 0
    assert distinct.sum() > 50
    np.testing.assert_allclose(matcher.map_sizes(edges[distinct]), matcher.target.edges[distinct], rtol=1e-9)
    levels = np.linspace(0.02, 0.98, 49)
    mapped = matcher.map_sizes(np.quantile(source, levels))
    expected = np.quantile(wanted, levels)
    bin_width = np.diff(matcher.target.edges[1:-1]).max()
    assert np.abs(mapped - expected).max() < bin_width
    assert ks_statistic(matcher.map_sizes(source), wanted) < ks_bound(len(source), len(wanted))
    # Monotone, also outside the source range (sizes there map onto the ends).
    grid = np.geomspace(1, 1000, 5000)
    assert (np.diff(matcher.map_sizes(grid)) >= 0).all()
    assert matcher.map_sizes(np.array([1.0, 1000.0])).tolist() == pytest.approx(
        [matcher.target.edges[0], matcher.target.edges[-1]]
    )
    scales = [matcher.scale_for(torch.tensor([[0, 0, s, s]])) for s in (30.0, 60.0, 120.0)]
    targets = np.array(scales) * [30, 60, 120]
    assert (np.diff(targets) > 0).all() and all(0.1 <= s <= 1.0 for s in scales)


def test_monotonicity_scale_match_of_image_sizes(target, target_wh, source_wh):
    matcher = MonotonicityScaleMatch(coco(source_wh), target, scale_range=(1e-4, 1e4), source_sizes="images")
    sizes = [mean_object_size(torch.tensor([[0, 0, w, h] for w, h in s])) for s in source_wh]
    matched = [
        matcher.scale_for(torch.tensor([[0, 0, w, h] for w, h in s])) * z
        for s, z in zip(source_wh, sizes, strict=True)
    ]
    wanted = square_sizes(target_wh)
    assert ks_statistic(matched, wanted) < ks_bound(len(matched), len(wanted))
    assert matcher.scale_for(torch.zeros(0, 4)) == matcher.default_scale


def test_monotonicity_scale_match_of_equal_source_sizes(target):
    matcher = MonotonicityScaleMatch(coco([[(50, 50)]] * 30), target)
    assert np.isfinite(matcher.map_sizes(np.array([10.0, 50.0, 90.0]))).all()
    assert matcher.scale_for(torch.tensor([[0.0, 0.0, 50.0, 50.0]])) > 0


def test_gaussian_scale_match(source_wh, target, target_wh):
    source = coco(source_wh)
    matcher = GaussianScaleMatch(source, mean=math.log(8), std=0.4, scale_range=(1e-4, 1e4))
    sizes = np.array([mean_object_size(torch.tensor([[0, 0, w, h] for w, h in s])) for s in source_wh])
    log_mapped = np.log(matcher.map_sizes(sizes))
    normal = NormalDist(math.log(8), 0.4)
    ecdf = np.arange(1, len(sizes) + 1) / len(sizes)
    gap = np.abs(ecdf - np.array([normal.cdf(v) for v in np.sort(log_mapped)])).max()
    assert gap < 0.02  # the Gaussian is cut at its 1st and 99th percentiles
    assert (np.diff(matcher.map_sizes(np.sort(sizes))) >= 0).all()
    fitted = GaussianScaleMatch(source, target)
    wanted = np.log(square_sizes(target_wh))
    assert (fitted.mean, fitted.std) == pytest.approx((wanted.mean(), wanted.std()))
    assert GaussianScaleMatch(source, target, std=1.0).std == 1.0
    assert fitted.scale_for(torch.zeros(0, 4)) == fitted.default_scale


def test_images_without_boxes_get_the_default_scale(target, source_wh):
    source = coco(source_wh)
    for matcher in (
        ScaleMatch(target, default_scale=0.4),
        MonotonicityScaleMatch(source, target, default_scale=0.4),
        GaussianScaleMatch(source, target, default_scale=0.4),
    ):
        assert matcher.scale_for(torch.zeros(0, 4)) == 0.4
        assert matcher.scale_for(np.zeros((0, 4))) == 0.4


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scale_range": (0, 1)}, "scale_range must satisfy 0 < low < high"),
        ({"scale_range": (-1, 1)}, "scale_range must satisfy"),
        ({"scale_range": (1.0, 0.5)}, "scale_range must satisfy"),
        ({"scale_range": (0.5, 0.5)}, "scale_range must satisfy"),
        ({"scale_range": (float("nan"), 1)}, "scale_range must satisfy"),
        ({"scale_range": (0.1,)}, "scale_range must be two numbers"),
        ({"scale_range": "ab"}, "scale_range must be two numbers"),
        ({"bins": 2}, "bins must be an int >= 3"),
        ({"bins": 10.0}, "bins must be an int >= 3"),
        ({"bins": True}, "bins must be an int >= 3"),
        ({"except_rate": 1.0}, "except_rate must be a number < 1"),
        ({"except_rate": float("nan")}, "except_rate must be a number < 1"),
        ({"out_scale_deal": "wrap"}, "out_scale_deal must be one of"),
        ({"default_scale": 0}, "default_scale must be a finite number > 0"),
        ({"default_scale": float("inf")}, "default_scale must be"),
    ],
)
def test_bad_options(target, source_wh, kwargs, message):
    with pytest.raises(ValueError, match=message):
        ScaleMatch(target, **kwargs)
    with pytest.raises(ValueError, match=message):
        MonotonicityScaleMatch(coco(source_wh[:5]), target, **kwargs)
    with pytest.raises(ValueError, match=message):
        GaussianScaleMatch(coco(source_wh[:5]), mean=2.0, std=0.5, **kwargs)


def test_bad_options_of_one_matcher(target, source_wh):
    source = coco(source_wh[:5])
    with pytest.raises(ValueError, match="max_sample_try must be an int >= 1"):
        ScaleMatch(target, max_sample_try=0)
    with pytest.raises(ValueError, match="source_sizes must be one of"):
        MonotonicityScaleMatch(source, target, source_sizes="boxes")
    with pytest.raises(ValueError, match="needs target_annotations or both mean and std"):
        GaussianScaleMatch(source, mean=2.0)
    with pytest.raises(ValueError, match="std must be a finite number > 0"):
        GaussianScaleMatch(source, mean=2.0, std=0.0)
    with pytest.raises(ValueError, match="std must be a finite number > 0"):
        GaussianScaleMatch(source, coco([[(5, 5)]] * 3))  # one size: no spread to fit
    with pytest.raises(ValueError, match="mean must be a finite number"):
        GaussianScaleMatch(source, mean=float("nan"), std=1.0)
    with pytest.raises(ValueError, match="except_rate must not be 0"):
        GaussianScaleMatch(source, mean=2.0, std=0.5, except_rate=0)
    with pytest.raises(TypeError, match="target_annotations must be an AnnotationSet"):
        ScaleMatch(42)


def test_bad_target_and_source_files(tmp_path, target):
    empty = tmp_path / "empty.json"
    empty.write_text("")
    with pytest.raises(DataError, match="empty.json: malformed JSON"):
        ScaleMatch(empty)
    no_images = tmp_path / "none.json"
    no_images.write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    with pytest.raises(DataError, match=r"target_annotations \(.*none.json\): no object boxes"):
        ScaleMatch(no_images)
    only_ignored = tmp_path / "ignored.json"
    only_ignored.write_text(json.dumps(coco([[]], crowd=[(0, 5, 5)], ignore=[(0, 9, 9)])))
    with pytest.raises(DataError, match=r"target_annotations \(.*ignored.json\): no object boxes"):
        ScaleMatch(only_ignored)
    with pytest.raises(DataError, match=r"target_annotations \(<COCO dict>\): no object boxes"):
        ScaleMatch(coco([[], []]))
    with pytest.raises(DataError, match=r"source_annotations \(<COCO dict>\): no object boxes"):
        MonotonicityScaleMatch(coco([[]]), target)
    zero_size = tmp_path / "zero.json"
    zero_size.write_text(json.dumps(coco([[(10, 10), (0, 7)]])))
    with pytest.raises(DataError, match="zero.json: annotation id 1: non-positive box size"):
        ScaleMatch(zero_size)


@pytest.mark.parametrize(
    ("boxes", "message"),
    [
        (torch.tensor([[0.0, 0.0, 0.0, 5.0]]), "boxes must have positive sizes; box 0"),
        (torch.tensor([[0.0, 0.0, 5.0, 5.0], [3.0, 3.0, 4.0, 2.0]]), "box 1 is"),
        (torch.tensor([[0.0, 0.0, float("nan"), 5.0]]), "boxes must be finite"),
        (torch.tensor([1.0, 2.0, 3.0, 4.0]), r"boxes must be \[N, 4\]"),
        (torch.zeros(2, 5), r"boxes must be \[N, 4\]"),
    ],
)
def test_bad_boxes(target, boxes, message):
    with pytest.raises(ValueError, match=message):
        ScaleMatch(target).scale_for(boxes)


def fixed_size_target(size):
    """Every target box of one size: every drawn size is exactly `size`."""
    return coco([[(size, size)]] * 10)


def test_resize_image_and_boxes():
    # Target size 5 for an image of size sqrt(40 * 2.5) = 10: scale 0.5.
    resize = ScaleMatchResize(ScaleMatch(fixed_size_target(5)))
    generator = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (3, 101, 200), generator=generator, dtype=torch.uint8)
    boxes = torch.tensor([[10.0, 10.0, 50.0, 50.0], [60.0, 60.0, 62.5, 62.5]])
    ignore = torch.tensor([[100.0, 20.0, 200.0, 100.0]])
    # The scale follows the image size of all the boxes given, the tiny one too.
    scale = 5 / mean_object_size(boxes)
    out = resize(image, boxes, ignore, generator)
    height, width = round(scale * 101), round(scale * 200)
    assert out.scale == pytest.approx(scale) and not out.fell_back
    assert out.image.shape == (3, height, width) and out.image.dtype == torch.uint8
    factors = torch.tensor([width / 200, height / 101] * 2)
    torch.testing.assert_close(out.boxes, boxes[:1] * factors)
    assert out.keep.tolist() == [True, False]  # the 2.5 px box is under 2 px after resizing
    torch.testing.assert_close(out.ignore_boxes, ignore * factors)
    # Against PIL's antialiased bilinear resize (torch's antialias follows it).
    pil = Image.fromarray(image.permute(1, 2, 0).numpy()).resize((width, height), Image.BILINEAR)
    reference = torch.from_numpy(np.array(pil)).permute(2, 0, 1).int()
    assert (out.image.int() - reference).abs().max() <= 1


def test_resize_up_and_float_images():
    resize = ScaleMatchResize(ScaleMatch(fixed_size_target(30), scale_range=(0.1, 4.0)))
    image = torch.rand(3, 40, 60)
    out = resize(image, torch.tensor([[0.0, 0.0, 10.0, 10.0]]))
    assert out.scale == pytest.approx(3.0) and out.image.shape == (3, 120, 180)
    assert out.image.dtype == torch.float32
    torch.testing.assert_close(out.boxes, torch.tensor([[0.0, 0.0, 30.0, 30.0]]))
    expected = torch.nn.functional.interpolate(image[None], size=(120, 180), mode="bilinear")[0]
    torch.testing.assert_close(out.image, expected)
    same = ScaleMatchResize(ScaleMatch(fixed_size_target(10), scale_range=(0.1, 4.0)))
    assert same(image, torch.tensor([[0.0, 0.0, 10.0, 10.0]])).image is image  # scale 1: untouched


def test_fallback_to_default_scale_when_every_box_is_dropped():
    # Target size 1 for boxes of 40: scale 1/40 makes them 1 px; the default scale 0.5 keeps them.
    matcher = ScaleMatch(fixed_size_target(1), scale_range=(0.01, 1.0), default_scale=0.5)
    image = torch.zeros(3, 80, 120, dtype=torch.uint8)
    boxes = torch.tensor([[0.0, 0.0, 40.0, 40.0], [50.0, 10.0, 90.0, 50.0]])
    assert matcher.scale_for(boxes) == pytest.approx(1 / 40)
    out = ScaleMatchResize(matcher)(image, boxes)
    assert out.fell_back and out.scale == 0.5 and out.image.shape == (3, 40, 60)
    torch.testing.assert_close(out.boxes, boxes * 0.5)
    assert out.keep.tolist() == [True, True]
    # At a default scale that is too small as well, the image keeps no box (a background image).
    tiny_default = ScaleMatch(fixed_size_target(1), scale_range=(0.01, 1.0), default_scale=0.02)
    out = ScaleMatchResize(tiny_default)(image, boxes)
    assert out.fell_back and out.scale == 0.02 and out.boxes.shape == (0, 4) and not out.keep.any()
    assert out.image.shape == (3, 2, 2)


def test_image_without_boxes_is_resized_by_the_default_scale():
    resize = ScaleMatchResize(ScaleMatch(fixed_size_target(5), default_scale=0.25))
    out = resize(torch.zeros(3, 100, 60, dtype=torch.uint8), torch.zeros(0, 4))
    assert out.scale == 0.25 and not out.fell_back and out.image.shape == (3, 25, 15)
    assert out.boxes.shape == (0, 4) and out.keep.shape == (0,) and out.ignore_boxes.shape == (0, 4)


def test_resize_is_deterministic_per_item(target):
    resize = ScaleMatchResize(ScaleMatch(target))
    image = torch.randint(
        0, 256, (3, 300, 400), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    boxes = torch.tensor([[10.0, 10.0, 90.0, 200.0], [200.0, 50.0, 260.0, 180.0]])
    first = resize(image, boxes, generator=scale_match_generator(3, 0, 11))
    again = resize(image, boxes, generator=scale_match_generator(3, 0, 11))
    assert first.scale == again.scale and torch.equal(first.image, again.image)
    assert torch.equal(first.boxes, again.boxes)
    scales = {resize(image, boxes, generator=scale_match_generator(3, epoch, 11)).scale for epoch in range(5)}
    assert len(scales) == 5


def test_resize_bad_input(target):
    with pytest.raises(TypeError, match="matcher must be"):
        ScaleMatchResize(object())
    with pytest.raises(ValueError, match="min_box_side must be"):
        ScaleMatchResize(ScaleMatch(target), min_box_side=0)
    with pytest.raises(ValueError, match="image must be a non-empty C x H x W tensor"):
        ScaleMatchResize(ScaleMatch(target))(torch.zeros(3, 0, 5), torch.zeros(0, 4))


def test_source_preset_scale_matched_to_the_tiny_set(tmp_path):
    """The pieces together: the COCO-like source read for pre-training (persons only, crowds as ignore),
    decoded by the dataset and resized so that its persons get the tiny set's sizes."""
    target_json = generate(tmp_path, "tiny", seed=0)["train"]
    source = load_annotations(generate_source(tmp_path, num_images=8, seed=0), categories=["person"])
    dataset = TinyPersonDataset(source, tmp_path / "images", train=False, normalization=None)
    wanted = object_sizes(load_annotations(target_json))
    low, high = np.quantile(wanted, [0.05, 0.95])
    for matcher in (ScaleMatch(target_json), MonotonicityScaleMatch(source, target_json)):
        resize = ScaleMatchResize(matcher)
        matched = []
        for index in range(len(dataset)):
            image, target = dataset[index]
            out = resize(image, target["boxes"], target["boxes_ignore"], scale_match_generator(0, 0, index))
            assert 0.1 <= out.scale <= 1.0 and out.image.dtype == image.dtype
            assert out.image.shape[1:] == (
                round(out.scale * image.shape[1]),
                round(out.scale * image.shape[2]),
            )
            assert len(out.ignore_boxes) == len(target["boxes_ignore"])
            matched.append(mean_object_size(out.boxes))
        assert low < np.median(matched) < high


size_lists = st.lists(st.integers(1, 40), min_size=1, max_size=40)  # integers: ties are common


@settings(max_examples=60, deadline=None)
@given(
    source=size_lists,
    target=size_lists,
    bins=st.integers(3, 12),
    except_rate=st.sampled_from([-1, 0, 0.3, 0.9]),
    log=st.booleans(),
)
def test_any_sizes_give_a_valid_histogram_and_a_monotone_map(source, target, bins, except_rate, log):
    target_coco = coco([[(s, s)] for s in target])
    matcher = MonotonicityScaleMatch(
        coco([[(s, s)] for s in source]), target_coco, bins, except_rate, use_log_bins=log
    )
    hist = matcher.target
    assert len(hist.probs) == bins and hist.probs.sum() == pytest.approx(1) and (hist.probs >= 0).all()
    assert (np.diff(hist.edges) >= 0).all()
    assert hist.edges[0] == pytest.approx(min(target)) and hist.edges[-1] == pytest.approx(max(target))
    assert (np.diff(matcher.source_edges) >= 0).all()
    mapped = matcher.map_sizes(np.linspace(0.5, 50, 200))
    assert np.isfinite(mapped).all() and (np.diff(mapped) >= -1e-9).all()
    assert (mapped >= min(target) - 1e-9).all() and (mapped <= max(target) + 1e-9).all()
    drawn = [hist.sample(torch.Generator().manual_seed(i)) for i in range(20)]
    assert min(drawn) >= min(target) - 1e-9 and max(drawn) <= max(target) + 1e-9
    scale = ScaleMatch(target_coco, bins, except_rate, use_log_bins=log).scale_for(
        torch.tensor([[0, 0, 9, 9]])
    )
    assert 0.1 <= scale <= 1.0
