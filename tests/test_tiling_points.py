"""tinyfast.tiling.merge_tile_points: the two merge policies for point detections, against a plain
composition (mapping written point by point, then the point NMS reference); locate_images end to end."""

import math

import pytest
import torch
from painted_persons import PaintedPersonDetector, painted_image

from tests.reference.point_nms import reference_point_nms
from tinyfast.tiling import locate_images, merge_tile_points, tile_grid

IMAGE_SIZES = [(1920, 1080), (1280, 720)]


def seeded(seed):
    return torch.Generator().manual_seed(seed)


def tiled_point_detections(generator, scales=(1.0, 1.5), flips=True, num_classes=2, persons=120):
    """Detections of persons by every tile view (scale, flip) that sees their centre: 1-3 jittered points
    each, in the pixels of the view as the detector saw it; plus a few background points per view."""
    views = [
        (image, crop, scale, flipped)
        for image, (width, height) in enumerate(IMAGE_SIZES)
        for crop in tile_grid(width, height)
        for scale in scales
        for flipped in ((False, True) if flips else (False,))
    ]
    centres = [torch.rand(persons, 2, generator=generator) * torch.tensor(size) for size in IMAGE_SIZES]
    person_sizes = [4 + 20 * torch.rand(persons, generator=generator) for _ in IMAGE_SIZES]
    person_labels = [torch.randint(0, num_classes, (persons,), generator=generator) for _ in IMAGE_SIZES]
    detections = []
    for image, (x1, y1, x2, y2), scale, flipped in views:
        centre, size, label = centres[image], person_sizes[image], person_labels[image]
        seen = (centre[:, 0] >= x1) & (centre[:, 0] < x2) & (centre[:, 1] >= y1) & (centre[:, 1] < y2)
        repeats = torch.randint(1, 4, (int(seen.sum()),), generator=generator)
        points = centre[seen].repeat_interleave(repeats, dim=0)
        sizes = size[seen].repeat_interleave(repeats)
        points = points + 0.15 * sizes[:, None] * torch.randn(points.shape, generator=generator)
        background = torch.rand(10, 2, generator=generator) * torch.tensor([x2 - x1, y2 - y1]) + torch.tensor(
            [x1, y1]
        )
        points = torch.cat([points, background]) - torch.tensor([x1, y1])
        if flipped:
            points[:, 0] = (x2 - x1) - points[:, 0]
        detections.append(
            {
                "points": points * scale,
                "scores": torch.cat(
                    [
                        0.3 + 0.7 * torch.rand(len(sizes), generator=generator),
                        0.3 * torch.rand(10, generator=generator),
                    ]
                ),
                "labels": torch.cat(
                    [
                        label[seen].repeat_interleave(repeats),
                        torch.randint(0, num_classes, (10,), generator=generator),
                    ]
                ),
                "sizes": torch.cat([sizes, 4 + 20 * torch.rand(10, generator=generator)]) * scale,
            }
        )
    tiles = [crop for _, crop, _, _ in views]
    tile_image = [image for image, _, _, _ in views]
    tile_scales = torch.tensor([[scale, scale] for _, _, scale, _ in views])
    tile_flips = torch.tensor([flipped for _, _, _, flipped in views])
    return detections, tiles, tile_image, tile_scales, tile_flips


def plain_image_points(detections, tiles, tile_image, tile_scales, tile_flips):
    """Every detection mapped to its image point by point, in float32 as the function computes."""
    rows = []
    for tile, found in enumerate(detections):
        x1, y1, x2, y2 = (torch.tensor(float(v)) for v in tiles[tile])
        width, height = (torch.tensor(float(v)) for v in IMAGE_SIZES[tile_image[tile]])
        sx, sy = tile_scales[tile]
        for (px, py), score, label, size in zip(
            found["points"], found["scores"], found["labels"], found["sizes"], strict=True
        ):
            x, y = px / sx, py / sy
            if tile_flips[tile]:
                x = (x2 - x1) - x
            x, y = torch.clamp(x + x1, min=0), torch.clamp(y + y1, min=0)
            rows.append(
                (
                    tile,
                    tile_image[tile],
                    torch.minimum(x, width),
                    torch.minimum(y, height),
                    score,
                    int(label),
                    size / (sx * sy).sqrt(),
                )
            )
    return rows


def first_per_unit(keep, units, cap):
    """keep (by decreasing score) cut to its first `cap` entries of each unit."""
    taken, result = {}, []
    for index in keep.tolist():
        unit = int(units[index])
        taken[unit] = taken.get(unit, 0) + 1
        if cap is None or taken[unit] <= cap:
            result.append(index)
    return torch.tensor(result, dtype=torch.int64)


def plain_merge(rows, policy, threshold, score_threshold=None, max_per_img=None, class_agnostic=False):
    tile = torch.tensor([r[0] for r in rows])
    image = torch.tensor([r[1] for r in rows])
    points = torch.stack([torch.stack([r[2], r[3]]) for r in rows])
    scores = torch.stack([r[4] for r in rows])
    labels = torch.tensor([r[5] for r in rows])
    sizes = torch.stack([r[6] for r in rows])
    classes = torch.zeros_like(labels) if class_agnostic else labels
    candidates = (
        torch.arange(len(rows)) if score_threshold is None else torch.nonzero(scores > score_threshold)[:, 0]
    )

    def nms(candidates, groups, units=None):
        kept = candidates[
            reference_point_nms(
                points[candidates], scores[candidates], groups[candidates], sizes[candidates], threshold
            )
        ]
        return kept if units is None else first_per_unit(kept, units, max_per_img)

    if policy == "during":
        candidates = nms(candidates, image * 100 + classes, image)
    else:
        candidates = nms(candidates, tile * 100 + classes, tile)
        candidates = nms(candidates, image * 100 + classes)
    return [
        {"points": points[kept], "scores": scores[kept], "labels": labels[kept], "sizes": sizes[kept]}
        for kept in (candidates[image[candidates] == i] for i in range(len(IMAGE_SIZES)))
    ]


def assert_same_detections(got, expected):
    assert len(got) == len(expected)
    for image, (ours, theirs) in enumerate(zip(got, expected, strict=True)):
        for key in ("points", "scores", "labels", "sizes"):
            assert torch.equal(ours[key], theirs[key]), f"image {image}: {key} differ"


def merge(inputs, policy, threshold, **options):
    detections, tiles, tile_image, tile_scales, tile_flips = inputs
    return merge_tile_points(
        detections,
        tiles,
        tile_image,
        IMAGE_SIZES,
        policy,
        distance_threshold=threshold,
        tile_scales=tile_scales,
        tile_flips=tile_flips,
        **options,
    )


@pytest.fixture(scope="module")
def scenario():
    """Tiled detections of two images and their points mapped one by one (the slow part, done once)."""
    inputs = tiled_point_detections(seeded(1))
    return inputs, plain_image_points(*inputs)


@pytest.mark.parametrize("policy", ["during", "after"])
@pytest.mark.parametrize(
    "options",
    [{}, {"score_threshold": 0.3, "max_per_img": 50}, {"max_per_img": 5, "class_agnostic": True}],
    ids=["plain", "threshold-and-cap", "agnostic-small-cap"],
)
def test_both_policies_equal_the_plain_composition(scenario, policy, options):
    inputs, rows = scenario
    got = merge(inputs, policy, 0.5, **options)
    assert_same_detections(got, plain_merge(rows, policy, 0.5, **options))
    for found in got:
        assert torch.equal(found["scores"], found["scores"].sort(descending=True).values)
    if "max_per_img" in options and policy == "during":
        assert all(len(found["points"]) <= options["max_per_img"] for found in got)


def test_a_person_seen_by_overlapping_tiles_and_views_gives_one_point():
    # One person at (600, 450) lies in the overlaps of 4 tiles of a 1920x1080 image, each seen at 2 scales,
    # flipped and not: 16 views, one detection each, a little off the centre.
    views = [
        (crop, scale, flipped)
        for crop in tile_grid(1920, 1080)
        if crop[0] <= 600 < crop[2] and crop[1] <= 450 < crop[3]
        for scale in (1.0, 2.0)
        for flipped in (False, True)
    ]
    assert len(views) == 16
    detections = []
    for k, ((x1, y1, x2, _), scale, flipped) in enumerate(views):
        x, y = 600.0 + 0.1 * k - x1, 450.0 - 0.1 * k - y1
        x = (x2 - x1) - x if flipped else x
        detections.append(
            {
                "points": torch.tensor([[x * scale, y * scale]]),
                "scores": torch.tensor([0.5 + 0.01 * k]),
                "labels": torch.tensor([0]),
                "sizes": torch.tensor([10.0 * scale]),
            }
        )
    tiles = [crop for crop, _, _ in views]
    scales = torch.tensor([[scale, scale] for _, scale, _ in views])
    flips = torch.tensor([flipped for _, _, flipped in views])
    for policy in ("during", "after"):
        (found,) = merge_tile_points(
            detections,
            tiles,
            [0] * 16,
            [(1920, 1080)],
            policy,
            distance_threshold=0.5,
            tile_scales=scales,
            tile_flips=flips,
        )
        assert found["scores"].tolist() == [pytest.approx(0.65)]
        assert found["points"].tolist() == [[pytest.approx(601.5), pytest.approx(448.5)]]
        assert found["sizes"].tolist() == [pytest.approx(10.0)]


def test_the_policies_differ_where_a_tile_holds_more_than_the_cap():
    # Three distant persons in one tile and one in the other: with a cap of 2, "during" keeps the image's 2
    # best, "after" keeps 2 of the crowded tile and the other tile's one.
    detections = [
        {
            "points": torch.tensor([[10.0, 10.0], [100.0, 10.0], [200.0, 10.0]]),
            "scores": torch.tensor([0.9, 0.8, 0.7]),
            "labels": torch.zeros(3, dtype=torch.int64),
            "sizes": torch.full((3,), 8.0),
        },
        {
            "points": torch.tensor([[50.0, 50.0]]),
            "scores": torch.tensor([0.6]),
            "labels": torch.tensor([0]),
            "sizes": torch.tensor([8.0]),
        },
    ]
    tiles = [(0, 0, 640, 512), (540, 0, 1180, 512)]
    arguments = (detections, tiles, [0, 0], [(1180, 512)])
    during = merge_tile_points(*arguments, "during", distance_threshold=1.0, max_per_img=2)[0]
    after = merge_tile_points(*arguments, "after", distance_threshold=1.0, max_per_img=2)[0]
    assert during["scores"].tolist() == pytest.approx([0.9, 0.8])
    assert after["scores"].tolist() == pytest.approx([0.9, 0.8, 0.6])
    assert after["points"][2].tolist() == [590.0, 50.0]


def test_points_outside_the_image_are_clipped_and_classes_are_merged_apart():
    detections = [
        {
            "points": torch.tensor([[-5.0, 3.0], [-4.0, 3.0], [700.0, 600.0]]),
            "scores": torch.tensor([0.9, 0.8, 0.7]),
            "labels": torch.tensor([0, 1, 0]),
            "sizes": torch.tensor([10.0, 10.0, 10.0]),
        }
    ]
    (found,) = merge_tile_points(detections, [(0, 0, 640, 512)], [0], [(640, 512)], distance_threshold=1.0)
    assert found["points"].tolist() == [[0.0, 3.0], [0.0, 3.0], [640.0, 512.0]]
    assert found["labels"].tolist() == [0, 1, 0]
    (agnostic,) = merge_tile_points(
        detections, [(0, 0, 640, 512)], [0], [(640, 512)], distance_threshold=1.0, class_agnostic=True
    )
    assert agnostic["labels"].tolist() == [0, 0]


def test_empty_tiles_images_without_points_and_no_tiles():
    empty = {
        "points": torch.empty(0, 2),
        "scores": torch.empty(0),
        "labels": torch.empty(0, dtype=torch.int64),
        "sizes": torch.empty(0),
    }
    for policy in ("during", "after"):
        found = merge_tile_points(
            [empty, empty], [(0, 0, 10, 10)] * 2, [0, 2], [(10, 10)] * 3, policy, distance_threshold=1.0
        )
        assert len(found) == 3 and all(len(f["points"]) == 0 and f["points"].shape == (0, 2) for f in found)
        assert merge_tile_points([], [], [], [(10, 10)], policy, distance_threshold=1.0)[0][
            "scores"
        ].shape == (0,)


def test_float64_points_stay_float64():
    detections = [
        {
            "points": torch.tensor([[1.0, 2.0]], dtype=torch.float64),
            "scores": torch.tensor([0.5]),
            "labels": torch.tensor([0]),
            "sizes": torch.tensor([3.0]),
        }
    ]
    (found,) = merge_tile_points(detections, [(10, 20, 30, 40)], [0], [(100, 100)], distance_threshold=1.0)
    assert found["points"].dtype == torch.float64 and found["points"].tolist() == [[11.0, 22.0]]


def one_tile(**change):
    found = {
        "points": torch.tensor([[1.0, 2.0]]),
        "scores": torch.tensor([0.5]),
        "labels": torch.tensor([0]),
        "sizes": torch.tensor([3.0]),
    }
    return [found | change]


@pytest.mark.parametrize(
    ("arguments", "options", "match"),
    [
        ((one_tile(), [(0, 0, 9, 9)], [0], [(9, 9)], "before"), {}, "policy"),
        ((one_tile(), [(0, 0, 9, 9)] * 2, [0], [(9, 9)]), {}, "tiles"),
        ((one_tile(), [(0, 0, 9, 9)], [0, 0], [(9, 9)]), {}, "tile_image"),
        ((one_tile(), [(0, 0, 9, 9)], [1], [(9, 9)]), {}, "tile_image"),
        (
            ([{"points": torch.zeros(1, 2), "scores": torch.ones(1)}], [(0, 0, 9, 9)], [0], [(9, 9)]),
            {},
            "labels, sizes",
        ),
        ((one_tile(labels=torch.tensor([-1])), [(0, 0, 9, 9)], [0], [(9, 9)]), {}, "labels"),
        ((one_tile(labels=torch.tensor([0.0])), [(0, 0, 9, 9)], [0], [(9, 9)]), {}, "labels"),
        (
            (one_tile(), [(0, 0, 9, 9)], [0], [(9, 9)]),
            {"tile_scales": torch.tensor([[1.0, 0.0]])},
            "tile_scales",
        ),
        ((one_tile(), [(0, 0, 9, 9)], [0], [(9, 9)]), {"max_per_img": -1}, "max_per_img"),
        ((one_tile(), [(0, 0, 9, 9)], [0], [(9, 9)]), {"max_per_img": 2.5}, "max_per_img"),
        ((one_tile(sizes=torch.tensor([-3.0])), [(0, 0, 9, 9)], [0], [(9, 9)]), {}, "sizes"),
        ((one_tile(scores=torch.tensor([math.nan])), [(0, 0, 9, 9)], [0], [(9, 9)]), {}, "scores"),
        ((one_tile(), [(0, 0, 9, 9)], [0], [(9, 9)]), {"distance_threshold": -1.0}, "distance_threshold"),
    ],
)
def test_bad_input_raises_value_error_naming_it(arguments, options, match):
    options = {"distance_threshold": 1.0} | options
    with pytest.raises(ValueError, match=match):
        merge_tile_points(*arguments, **options)


class PaintedPersonLocaliser:
    """A point localiser made of PaintedPersonDetector: the centre of each visible painted person, size 4."""

    def __init__(self):
        self.boxes = PaintedPersonDetector()
        self.sizes = []

    def locate(self, tiles, sizes):
        self.sizes.append(sizes)
        found = self.boxes(tiles, None)
        return [
            {
                "points": (f["boxes"][:, :2] + f["boxes"][:, 2:]) / 2,
                "scores": f["scores"],
                "labels": f["labels"],
                "sizes": torch.full_like(f["scores"], 4.0),
            }
            for f in found
        ]


# Whole persons only: two of them inside the overlap of neighbouring tiles, seen whole by both.
WHOLE_PERSONS = [(100, 100, 112, 120), (560, 300, 580, 320), (700, 430, 712, 450), (980, 680, 1000, 700)]


@pytest.mark.parametrize("policy", ["during", "after"])
@pytest.mark.parametrize("scales", [(1.0,), ((1.5, 2.0),)])
def test_locate_images_tiles_like_detect_images_and_merges_to_one_point_per_person(policy, scales):
    localiser = PaintedPersonLocaliser()
    (found,) = locate_images(localiser, [painted_image(WHOLE_PERSONS)], policy, scales=scales, flips=True)
    expected = torch.tensor([((x1 + x2) / 2, (y1 + y2) / 2) for x1, y1, x2, y2 in WHOLE_PERSONS])
    assert len(found["points"]) == len(WHOLE_PERSONS)
    distance = torch.cdist(found["points"].float(), expected)
    assert float(distance.min(dim=1).values.max()) <= 1.0
    assert sorted(distance.argmin(dim=1).tolist()) == list(range(len(WHOLE_PERSONS)))
    assert found["scores"].tolist() == sorted(found["scores"].tolist(), reverse=True)
    shapes = {shape[-2:] for shape, _ in localiser.boxes.calls}
    assert shapes == ({(512, 640)} if scales == (1.0,) else {(1024, 960)})
    assert all(len(set(sizes)) == 1 for sizes in localiser.sizes)


def test_locate_images_names_its_bad_arguments():
    image = painted_image(WHOLE_PERSONS)
    with pytest.raises(ValueError, match="tile_batch_size"):
        locate_images(PaintedPersonLocaliser(), [image], tile_batch_size=0)
    with pytest.raises(ValueError, match="locate_images: scales"):
        locate_images(PaintedPersonLocaliser(), [image], scales=(0.0,))
    with pytest.raises(ValueError, match="policy"):
        locate_images(PaintedPersonLocaliser(), [image], "sometimes")
