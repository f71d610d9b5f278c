"""The TinyPerson dataset for the detectors: full images or training cuts, with targets and a loader."""

from __future__ import annotations

import os
from collections.abc import Collection
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from tinyfast.data.annotations import (
    AnnotationSet,
    Corner,
    ImageInfo,
    OnError,
    Task,
    load_annotations,
)
from tinyfast.data.corners import KEEP_RATIO, OVERLAP, SUB_SIZE, cut_annotation_set
from tinyfast.data.errors import DataError
from tinyfast.data.transforms import (
    axis_scales,
    collate,
    hflip_boxes,
    normalize,
    paint_mean,
    read_image,
    region_means,
    resized_crop,
    resized_size,
)


@dataclass(frozen=True)
class Sample:
    """What one dataset item shows: a file, the crop of it, and the targets in the crop's pixels."""

    image: ImageInfo
    source_id: int
    corner: Corner | None
    boxes: np.ndarray
    labels: np.ndarray
    ignore_boxes: np.ndarray
    erase_regions: np.ndarray
    points: np.ndarray | None = None


class TinyPersonDataset(Dataset):
    """Items are `(image, target)`: a float32 CHW image (normalised per `normalization`, or 0-255 when
    None) and a dict with `boxes` [N,4] x1y1x2y2 float32, `labels` [N] int64 (0-based into `classes`),
    `boxes_ignore` [M,4] float32, `image_id` (the full image's id), `orig_size` (H, W of the full image),
    `crop_offset` (x, y of the crop in the full image), `size` (h, w of the item) and `flipped`. When the
    annotations carry points (`tinyfast.data.points.training_points`), `points` [N,2] float32 x, y in the
    item's pixels, aligned with `labels`, cut and flipped with the image (cuts keep an object by its point).

    `cut=True` cuts each full image into the reference's training sub-images (docs/protocol.md §2)
    on the fly; a corner json (images with `corner`) is read as it is. With `train=True`, dense images are
    left out (as the reference does; `skip_dense` says otherwise) and, unless `flip_prob` says otherwise,
    images are flipped horizontally with probability 0.5. Items with fewer than `min_objects` target boxes
    (ignored ones not counted) are left out: the reference trains on every non-empty cut (1).
    `categories` (names) keeps only those categories of the json (`load_annotations`; COCO's "person").
    `image_scale` (a factor, or (x, y) factors) resizes every full image and its annotations before anything
    else, so that cuts and targets are in the resized pixels (bilinear; objects too small for the model); an
    item computes only its own pixels of the resized image, and an erased region gets the mean colour of the
    whole region in the decoded image.
    All annotation and file checks run here, in the main process, so a worker only meets decode errors.
    """

    def __init__(
        self,
        ann_file: str | Path | AnnotationSet,
        image_dir: str | Path,
        *,
        task: Task = "all",
        train: bool = True,
        cut: bool | None = None,
        erase: bool = False,
        sub_size: tuple[int, int] = SUB_SIZE,
        overlap: tuple[int, int] = OVERLAP,
        keep_ratio: float = KEEP_RATIO,
        flip_prob: float | None = None,
        skip_dense: bool | None = None,
        min_objects: int = 0,
        normalization: str | None = "torchvision",
        on_error: OnError = "raise",
        image_scale: float | tuple[float, float] = 1.0,
        categories: Collection[str] | None = None,
    ):
        if not isinstance(ann_file, AnnotationSet):
            ann_file = load_annotations(ann_file, on_error, categories)
        self.image_scale = axis_scales(image_scale)
        self.annotations = ann_file.resized(self.image_scale)
        self.image_dir = str(image_dir)
        self.task = task
        self.classes = self.annotations.classes(task)
        self.flip_prob = (0.5 if train else 0.0) if flip_prob is None else flip_prob
        skip_dense = train if skip_dense is None else skip_dense
        self.normalization = normalization
        is_corner_json = any(info.corner is not None for info in self.annotations.images)
        cut = train and not is_corner_json if cut is None else cut
        if cut:
            subs = cut_annotation_set(
                self.annotations,
                erase=erase,
                skip_dense=skip_dense,
                sub_size=sub_size,
                overlap=overlap,
                keep_ratio=keep_ratio,
            )
            self.samples = [self._sample(s.image, s.corner, s.annotations, s.erase_regions) for s in subs]
        else:
            self.samples = self._whole_samples(erase, skip_dense)
        if not isinstance(min_objects, int) or isinstance(min_objects, bool) or min_objects < 0:
            raise ValueError(f"min_objects must be an int >= 0, got {min_objects!r}")
        self.samples = [sample for sample in self.samples if len(sample.boxes) >= min_objects]
        self._check_files()

    def _whole_samples(self, erase: bool, skip_dense: bool) -> list[Sample]:
        samples = []
        for info in self.annotations.images:
            anns = self.annotations.annotations_of(info.id)
            if skip_dense and anns.is_dense:
                continue
            regions = np.array(info.erase_regions, dtype=np.float64).reshape(-1, 4)
            if erase:
                regions = np.concatenate([regions, anns.boxes[anns.erase_mask()]])
                anns = anns.select(~anns.erase_mask())
            samples.append(self._sample(info, info.corner, anns, regions))
        return samples

    def _sample(self, info: ImageInfo, corner: Corner | None, anns, erase_regions: np.ndarray) -> Sample:
        targets = self.annotations.targets(anns, self.task)
        return Sample(
            info,
            info.source_id,
            corner,
            targets.boxes,
            targets.labels,
            targets.ignore_boxes,
            erase_regions,
            targets.points,
        )

    def _check_files(self) -> None:
        missing = sorted(
            {
                s.image.file_name
                for s in self.samples
                if not os.path.isfile(os.path.join(self.image_dir, s.image.file_name))
            }
        )
        if missing:
            raise DataError(
                f"{self.annotations.path}: {len(missing)} image file(s) missing under "
                f"{self.image_dir}, e.g. {missing[:3]}"
            )

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict]:
        sample = self.samples[index]
        path = os.path.join(self.image_dir, sample.image.file_name)
        source = read_image(path)
        full_w, full_h = resized_size(source.shape[2], source.shape[1], self.image_scale)
        x1, y1, x2, y2 = sample.corner if sample.corner is not None else (0, 0, full_w, full_h)
        expected = (sample.image.width, sample.image.height)
        if (sample.corner is None and (full_w, full_h) != expected) or x2 > full_w or y2 > full_h:
            raise DataError(
                f"{path}: decoded size {full_w}x{full_h} does not match the json "
                f"(image id {sample.image.id}: {expected[0]}x{expected[1]}, corner {sample.corner})"
            )
        image = resized_crop(source, (full_w, full_h), (x1, y1, x2, y2))
        if len(sample.erase_regions):
            regions = torch.from_numpy(sample.erase_regions)
            sx, sy = self.image_scale
            means = region_means(source, regions / torch.tensor([sx, sy, sx, sy], dtype=regions.dtype))
            image = paint_mean(image, regions - torch.tensor([x1, y1, x1, y1], dtype=regions.dtype), means)
        width = x2 - x1
        boxes = _clip(torch.from_numpy(sample.boxes).float(), width, y2 - y1)
        ignore = _clip(torch.from_numpy(sample.ignore_boxes).float(), width, y2 - y1)
        points = None
        if sample.points is not None:
            points = torch.from_numpy(sample.points).float().reshape(-1, 2)
            points = torch.stack([points[:, 0].clamp(0, width), points[:, 1].clamp(0, y2 - y1)], dim=1)
        flipped = self.flip_prob > 0 and bool(torch.rand(()) < self.flip_prob)
        if flipped:
            image = image.flip(-1)
            boxes, ignore = hflip_boxes(boxes, width), hflip_boxes(ignore, width)
            if points is not None:
                points = torch.stack([width - points[:, 0], points[:, 1]], dim=1)
        image = normalize(image, self.normalization) if self.normalization else image.float()
        target = {
            "boxes": boxes,
            "labels": torch.from_numpy(sample.labels),
            "boxes_ignore": ignore,
            "image_id": sample.source_id,
            "orig_size": (full_h, full_w),
            "crop_offset": (x1, y1),
            "size": (y2 - y1, width),
            "flipped": flipped,
        }
        if points is not None:
            target["points"] = points
        return image.contiguous(), target


def _clip(boxes: torch.Tensor, width: int, height: int) -> torch.Tensor:
    boxes = boxes.reshape(-1, 4).clone()
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
    return boxes


def make_loader(
    dataset: Dataset,
    batch_size: int = 2,
    *,
    shuffle: bool = True,
    num_workers: int = 2,
    size_divisor: int = 32,
    drop_last: bool = False,
    seed: int | None = None,
) -> DataLoader:
    """A DataLoader yielding `Batch(images, targets, image_sizes)`; workers decode in parallel and stay
    alive between epochs."""
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        collate_fn=partial(collate, size_divisor=size_divisor),
        drop_last=drop_last,
        persistent_workers=num_workers > 0,
        generator=generator,
    )
