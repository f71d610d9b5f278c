"""Tiling of full images into the overlapping crops used for tiled inference."""

from tinyfast.tiling.grid import tile_grid

__all__ = ["tile_grid"]
