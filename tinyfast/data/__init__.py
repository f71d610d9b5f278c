"""TinyPerson data: annotations, training cuts, transforms, datasets, YOLO import, a synthetic set.

Command lines: `python -m tinyfast.data.synthetic` (write the synthetic set) and
`python -m tinyfast.data.convert` (YOLO import, corner json export).
"""

from tinyfast.data.annotations import (
    TINYPERSON_CATEGORIES,
    AnnotationSet,
    ImageAnnotations,
    ImageInfo,
    load_annotations,
)
from tinyfast.data.corners import (
    KEEP_RATIO,
    OVERLAP,
    SUB_SIZE,
    SubImage,
    corner_grid,
    crop_boxes,
    cut_annotation_set,
    cut_image,
    to_corner_set,
)
from tinyfast.data.dataset import TinyPersonDataset, make_loader
from tinyfast.data.errors import DataError
from tinyfast.data.points import (
    PointAnnotationSet,
    generate_coarse_points,
    load_point_annotations,
    save_point_annotations,
)
from tinyfast.data.transforms import NORMALIZATIONS, Batch, collate, hflip_boxes, normalize, pad_to_multiple

__all__ = [
    "KEEP_RATIO",
    "NORMALIZATIONS",
    "OVERLAP",
    "PointAnnotationSet",
    "SUB_SIZE",
    "TINYPERSON_CATEGORIES",
    "AnnotationSet",
    "Batch",
    "DataError",
    "ImageAnnotations",
    "ImageInfo",
    "SubImage",
    "TinyPersonDataset",
    "collate",
    "corner_grid",
    "crop_boxes",
    "cut_annotation_set",
    "cut_image",
    "generate_coarse_points",
    "hflip_boxes",
    "load_annotations",
    "load_point_annotations",
    "make_loader",
    "normalize",
    "pad_to_multiple",
    "save_point_annotations",
    "to_corner_set",
]
