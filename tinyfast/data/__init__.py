"""TinyPerson data: annotations, cuts, transforms, Scale Match, datasets, YOLO import, synthetic sets.

Command lines: `python -m tinyfast.data.synthetic` (write a synthetic set) and
`python -m tinyfast.data.convert` (YOLO import, corner json export).
"""

from tinyfast.data.annotations import (
    TINYPERSON_CATEGORIES,
    AnnotationSet,
    ImageAnnotations,
    ImageInfo,
    annotations_from_coco,
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
from tinyfast.data.scale_match import (
    GaussianScaleMatch,
    MonotonicityScaleMatch,
    ScaleMatch,
    ScaleMatchedDataset,
    ScaleMatchResize,
    scale_match_generator,
)
from tinyfast.data.transforms import NORMALIZATIONS, Batch, collate, hflip_boxes, normalize, pad_to_multiple

__all__ = [
    "KEEP_RATIO",
    "NORMALIZATIONS",
    "OVERLAP",
    "PointAnnotationSet",
    "SUB_SIZE",
    "ScaleMatch",
    "ScaleMatchResize",
    "ScaleMatchedDataset",
    "TINYPERSON_CATEGORIES",
    "AnnotationSet",
    "Batch",
    "DataError",
    "GaussianScaleMatch",
    "ImageAnnotations",
    "ImageInfo",
    "MonotonicityScaleMatch",
    "SubImage",
    "TinyPersonDataset",
    "annotations_from_coco",
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
    "scale_match_generator",
    "to_corner_set",
]
