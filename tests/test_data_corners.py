import numpy as np
import pytest

from tinyfast.data.annotations import ImageAnnotations, ImageInfo
from tinyfast.data.corners import OVERLAP, SUB_SIZE, corner_grid, crop_boxes, cut_image, cut_starts


def starts(grid):
    return sorted({c[0] for c in grid}), sorted({c[1] for c in grid})


def test_reference_example_1280x720():
    # The reference's published corner json: x in {0, 590, 640}, y in {0, 208}.
    grid = corner_grid(1280, 720, (640, 512), (50, 50))
    assert starts(grid) == ([0, 590, 640], [0, 208])
    assert grid[:3] == [(0, 0, 640, 512), (590, 0, 1230, 512), (640, 0, 1280, 512)]
    assert grid[3:] == [(0, 208, 640, 720), (590, 208, 1230, 720), (640, 208, 1280, 720)]


def test_grid_1920x1080():
    grid = corner_grid(1920, 1080)
    assert (SUB_SIZE, OVERLAP) == ((640, 512), (50, 50))
    assert starts(grid) == ([0, 590, 1180, 1280], [0, 462, 568])
    assert len(grid) == 12
    assert all(x2 - x1 == 640 and y2 - y1 == 512 for x1, y1, x2, y2 in grid)


@pytest.mark.parametrize("size", [640, 641, 700, 1279, 1280, 1920, 4000])
def test_cuts_cover_the_axis_and_end_flush(size):
    xs = cut_starts(size, 640, 50)
    assert xs[0] == 0 and xs[-1] + 640 == size
    assert all(b - a <= 590 for a, b in zip(xs, xs[1:], strict=False))


def test_small_image_gives_one_smaller_cut():
    assert corner_grid(500, 300) == [(0, 0, 500, 300)]


def test_keep_rule_on_hand_made_boxes():
    corner = (590, 0, 1230, 512)
    boxes = np.array(
        [
            [600, 10, 610, 30],  # inside: kept as is, shifted
            [580, 10, 600, 30],  # half outside: sqrt(0.5) = 0.707 >= 0.7 -> kept, clipped
            [570, 10, 600, 30],  # 10/30 inside: sqrt(0.33) = 0.58 -> dropped
            [1220, 500, 1240, 520],  # quarter inside: 0.5 -> dropped
            [10, 10, 20, 20],  # outside
            [1225, 100, 1235, 110],  # half inside across the right edge -> kept
        ],
        dtype=np.float64,
    )
    kept, index = crop_boxes(boxes, corner, 0.7)
    assert index.tolist() == [0, 1, 5]
    np.testing.assert_allclose(kept, [[10, 10, 20, 30], [0, 10, 10, 30], [635, 100, 640, 110]])


def test_keep_ratio_boundary_is_inclusive():
    # 49 of 100 px inside: sqrt(0.49) = 0.7 exactly.
    kept, index = crop_boxes(np.array([[-51.0, 0, 49, 1]]), (0, 0, 640, 512), 0.7)
    assert index.tolist() == [0]


def make_anns(boxes, erase_flags=None):
    n = len(boxes)
    flags = np.zeros(n, dtype=bool)
    boxes = np.array(boxes, dtype=np.float64)
    return ImageAnnotations(
        ids=np.arange(n),
        boxes=boxes,
        areas=(boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]),
        category_ids=np.ones(n, dtype=np.int64),
        iscrowd=flags,
        ignore=np.array(erase_flags or [False] * n),
        uncertain=flags,
        logo=flags,
        in_dense_image=flags,
    )


def test_cut_image_skips_empty_cuts_and_recomputes_area():
    image = ImageInfo(id=7, file_name="a.jpg", width=1280, height=720)
    subs = cut_image(image, make_anns([[10, 10, 20, 30]]))
    assert [s.corner for s in subs] == [(0, 0, 640, 512)]  # the other five cuts are empty
    assert all(s.image.id == 7 for s in subs)
    assert subs[0].annotations.areas.tolist() == [200.0]


def test_erase_removes_ignore_regions_and_reports_them():
    image = ImageInfo(id=0, file_name="a.jpg", width=1280, height=720)
    anns = make_anns([[10, 10, 20, 30], [100, 100, 200, 150]], erase_flags=[False, True])
    kept = cut_image(image, anns, erase=False)[0]
    erased = cut_image(image, anns, erase=True)[0]
    assert len(kept.annotations) == 2 and len(kept.erase_regions) == 0
    assert len(erased.annotations) == 1
    np.testing.assert_allclose(erased.erase_regions, [[100, 100, 200, 150]])
