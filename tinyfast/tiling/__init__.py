"""Tiled inference on full images: the reference's tile grid, the detector contract, the merge policies (of
boxes, and of points)."""

from tinyfast.tiling.detector import TileDetector, TileSettings, TorchvisionDetector
from tinyfast.tiling.grid import tile_grid
from tinyfast.tiling.inference import (
    MERGE_NMS_IOU,
    MergePolicy,
    coco_results,
    detect_images,
    detector_merge_policy,
    merge_policy,
    write_coco_results,
)
from tinyfast.tiling.points import POINT_POLICIES, locate_images, merge_tile_points
from tinyfast.tiling.yolo import UltralyticsDetector

__all__ = [
    "MERGE_NMS_IOU",
    "MergePolicy",
    "POINT_POLICIES",
    "TileDetector",
    "TileSettings",
    "TorchvisionDetector",
    "UltralyticsDetector",
    "coco_results",
    "detect_images",
    "detector_merge_policy",
    "merge_policy",
    "locate_images",
    "merge_tile_points",
    "tile_grid",
    "write_coco_results",
]
