import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tinyfast.tiling import tile_grid


def offsets(tiles):
    return sorted({t[0] for t in tiles}), sorted({t[1] for t in tiles})


def reference_grid(width, height, tile_w=640, tile_h=512, overlap_w=100, overlap_h=100):
    """The reference's loops (docs/protocol.md §3.1) as written there, cropping an image."""
    image = torch.arange(width * height).reshape(height, width)
    crops = []
    for y in range(0, max(1, height - overlap_h), tile_h - overlap_h):
        if y > 0:
            y = min(height - tile_h, y)
        for x in range(0, max(1, width - overlap_w), tile_w - overlap_w):
            if x > 0:
                x = min(width - tile_w, x)
            crops.append((x, y, image[y : y + tile_h, x : x + tile_w]))
    return crops


def test_full_hd_gives_the_reference_12_tiles():
    tiles = tile_grid(1920, 1080)
    assert len(tiles) == 12
    assert offsets(tiles) == ([0, 540, 1080, 1280], [0, 412, 568])
    assert all((x2 - x1, y2 - y1) == (640, 512) for x1, y1, x2, y2 in tiles)
    assert tiles[:4] == [(0, 0, 640, 512), (540, 0, 1180, 512), (1080, 0, 1720, 512), (1280, 0, 1920, 512)]
    assert tiles[-1] == (1280, 568, 1920, 1080)


def test_720p():
    tiles = tile_grid(1280, 720)
    assert offsets(tiles) == ([0, 540, 640], [0, 208])
    assert len(tiles) == 6


def test_image_smaller_than_the_tile_gives_one_tile_of_the_image_size():
    assert tile_grid(600, 500) == [(0, 0, 600, 500)]
    assert tile_grid(1, 1) == [(0, 0, 1, 1)]


def test_image_smaller_than_the_tile_in_one_dimension():
    assert tile_grid(1920, 300) == [
        (0, 0, 640, 300),
        (540, 0, 1180, 300),
        (1080, 0, 1720, 300),
        (1280, 0, 1920, 300),
    ]
    assert tile_grid(300, 600) == [(0, 0, 300, 512), (0, 88, 300, 600)]


def test_one_pixel_more_than_the_tile_gives_a_second_tile_one_pixel_further():
    assert tile_grid(641, 513) == [(0, 0, 640, 512), (1, 0, 641, 512), (0, 1, 640, 513), (1, 1, 641, 513)]


def test_custom_tile_and_overlap():
    tiles = tile_grid(1000, 100, tile=(300, 100), overlap=(0, 0))
    assert tiles == [(0, 0, 300, 100), (300, 0, 600, 100), (600, 0, 900, 100), (700, 0, 1000, 100)]


SIZES = [
    (w, h)
    for w in (1, 99, 100, 101, 540, 639, 640, 641, 1180, 1181, 1279, 1280, 1920)
    for h in (1, 512, 513, 1080)
]


@pytest.mark.parametrize(("width", "height"), SIZES)
def test_matches_the_reference_crops_and_covers_every_pixel_once_or_more(width, height):
    tiles = tile_grid(width, height)
    crops = reference_grid(width, height)
    assert [(x1, y1) for x1, y1, _, _ in tiles] == [(x, y) for x, y, _ in crops]
    coverage = torch.zeros(height, width, dtype=torch.int32)
    for (x1, y1, x2, y2), (_, _, crop) in zip(tiles, crops, strict=True):
        assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
        assert (y2 - y1, x2 - x1) == tuple(crop.shape)
        coverage[y1:y2, x1:x2] += 1
    assert bool((coverage >= 1).all())
    assert len(set(tiles)) == len(tiles)


@settings(deadline=None)
@given(
    width=st.integers(1, 64),
    height=st.integers(1, 64),
    tile=st.tuples(st.integers(1, 32), st.integers(1, 32)),
    overlap_fraction=st.tuples(st.floats(0, 0.99), st.floats(0, 0.99)),
)
def test_any_valid_grid_matches_the_reference_and_covers_the_image(width, height, tile, overlap_fraction):
    overlap = tuple(int(t * f) for t, f in zip(tile, overlap_fraction, strict=True))
    tiles = tile_grid(width, height, tile=tile, overlap=overlap)
    crops = reference_grid(width, height, *tile, *overlap)
    assert [t[:2] for t in tiles] == [(x, y) for x, y, _ in crops]
    coverage = torch.zeros(height, width, dtype=torch.int32)
    for x1, y1, x2, y2 in tiles:
        assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
        coverage[y1:y2, x1:x2] += 1
    assert bool((coverage >= 1).all())
    assert len(set(tiles)) == len(tiles)


@pytest.mark.parametrize(
    ("args", "kwargs", "name"),
    [
        ((0, 100), {}, "width"),
        ((100, 0), {}, "height"),
        ((-5, 100), {}, "width"),
        ((100.0, 100), {}, "width"),
        ((True, 100), {}, "width"),
        ((100, 100), {"tile": (0, 512)}, "tile"),
        ((100, 100), {"tile": (640,)}, "tile"),
        ((100, 100), {"overlap": (640, 100)}, "overlap"),
        ((100, 100), {"overlap": (100, 600)}, "overlap"),
        ((100, 100), {"overlap": (-1, 100)}, "overlap"),
        ((100, 100), {"overlap": 100}, "overlap"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(args, kwargs, name):
    with pytest.raises(ValueError, match=name):
        tile_grid(*args, **kwargs)
