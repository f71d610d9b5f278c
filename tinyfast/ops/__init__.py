"""Compiled ops of tinyfast (``torch.ops.tinyfast.*``), with argument checks and fake kernels."""

from tinyfast.ops._library import cuda_available_in_build
from tinyfast.ops.batched_nms import batched_nms
from tinyfast.ops.fcos_targets import fcos_targets
from tinyfast.ops.max_iou_assign import max_iou_assign
from tinyfast.ops.merge_tiles import MergedDetections, merge_tiles
from tinyfast.ops.point_nms import point_nms

__all__ = [
    "MergedDetections",
    "batched_nms",
    "cuda_available_in_build",
    "fcos_targets",
    "max_iou_assign",
    "merge_tiles",
    "point_nms",
]
