"""Compiled ops of tinyfast (``torch.ops.tinyfast.*``), with argument checks and fake kernels."""

from tinyfast.ops._library import cuda_available_in_build
from tinyfast.ops.assign import max_iou_assign
from tinyfast.ops.fcos import fcos_targets
from tinyfast.ops.merge import MergedDetections, merge_tiles
from tinyfast.ops.nms import batched_nms

__all__ = [
    "MergedDetections",
    "batched_nms",
    "cuda_available_in_build",
    "fcos_targets",
    "max_iou_assign",
    "merge_tiles",
]
