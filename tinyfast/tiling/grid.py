"""The inference tile grid of the TinyPerson reference (docs/protocol.md §3.1)."""

from __future__ import annotations

import operator

from tinyfast.data.corners import cut_starts

Tile = tuple[int, int, int, int]


def tile_grid(
    width: int, height: int, tile: tuple[int, int] = (640, 512), overlap: tuple[int, int] = (100, 100)
) -> list[Tile]:
    """The reference's tiles ``(x1, y1, x2, y2)`` of a ``width`` x ``height`` image, row by row.

    ``tile`` and ``overlap`` are ``(width, height)``. Offsets step by ``tile - overlap`` and the last one is
    moved back so that its tile ends at the image border; a tile never extends past the image, so an image
    smaller than the tile in one dimension gets tiles of the image's size in that dimension. 1920x1080
    gives x1 in {0, 540, 1080, 1280} and y1 in {0, 412, 568}: 12 tiles.

    The reference's inference loops give the same offsets as its training cuts, so both take them from
    ``tinyfast.data.corners.cut_starts``; they never yield a negative offset nor a duplicate tile.

    Raises ``ValueError`` for a size below 1, a non-positive tile, or an overlap outside ``[0, tile)``.
    """
    width = _as_int("width", width)
    height = _as_int("height", height)
    tile_w, tile_h = (_as_int("tile", v) for v in _pair("tile", tile))
    overlap_w, overlap_h = (_as_int("overlap", v) for v in _pair("overlap", overlap))
    if width < 1 or height < 1:
        raise ValueError(f"tile_grid: width and height must be >= 1, got {width}x{height}")
    if tile_w < 1 or tile_h < 1:
        raise ValueError(f"tile_grid: tile sizes must be >= 1, got {(tile_w, tile_h)}")
    if not (0 <= overlap_w < tile_w and 0 <= overlap_h < tile_h):
        raise ValueError(
            f"tile_grid: overlap must be >= 0 and smaller than the tile, got {(overlap_w, overlap_h)} "
            f"for tile {(tile_w, tile_h)}"
        )
    xs = cut_starts(width, tile_w, overlap_w)
    ys = cut_starts(height, tile_h, overlap_h)
    return [(x, y, min(x + tile_w, width), min(y + tile_h, height)) for y in ys for x in xs]


def _pair(name: str, value) -> tuple:
    try:
        first, second = value
    except (TypeError, ValueError):
        raise ValueError(f"tile_grid: {name} must be a (width, height) pair, got {value!r}") from None
    return first, second


def _as_int(name: str, value) -> int:
    if isinstance(value, bool):
        raise ValueError(f"tile_grid: {name} must be an integer, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise ValueError(f"tile_grid: {name} must be an integer, got {value!r}") from None
