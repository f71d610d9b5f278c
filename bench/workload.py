"""The benchmark workloads, shared with the tests: TinyPerson-like inputs of each op.

The "TinyPerson merge" workload: detections of tiled inference on full images, before the merge NMS.

Each image is cut on the reference tile grid; every person visible enough in a tile is detected there by a
few jittered candidates (as a dense head proposes several locations per object), clipped to the tile. A
person in the overlap of k tiles is thus detected in each of them, and a person cut by a tile border gives
truncated boxes. Low-score background boxes are added to every tile.

The FCOS and RetinaNet workloads: 640x512 sub-images with 800 tiny GTs in clusters (``tiny_person_gt_boxes``),
the points of FCOS's five levels or RetinaNet's anchors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from tests.reference.fcos_targets import TINY_PERSON_RANGES, TINY_PERSON_STRIDES, fcos_points
from tests.reference.max_iou_assign import retinanet_anchors
from tinyfast.tiling import tile_grid

IMAGE_SIZE = (1920, 1080)
CANDIDATES_PER_PERSON = (1, 4)  # inclusive range, per tile that sees the person
MIN_VISIBLE_FRACTION = 0.25  # of a candidate's area, for it to be detected in a tile
NOISE_SHARE = 0.15  # of the boxes of a tile
JITTER = 0.1  # of the person's width / height, standard deviation per coordinate


@dataclass(frozen=True)
class TinyPersonMerge:
    """One workload, in image coordinates (the NMS input) and per tile (the raw form a merge op reads).

    Row ``i`` of every per-box tensor is the same detection; rows are grouped by tile, tiles by image.
    """

    boxes: torch.Tensor  # [N, 4] float32, x1y1x2y2 in image coordinates
    scores: torch.Tensor  # [N] float32, all distinct
    idxs: torch.Tensor  # [N] int64, image index
    tile_boxes: torch.Tensor  # [N, 4] float32, in the coordinates of the box's tile
    tile_index: torch.Tensor  # [N] int64, into the per-tile tensors below
    tiles: torch.Tensor  # [T, 4] float32, each tile's x1y1x2y2 in its image
    tile_image: torch.Tensor  # [T] int64, image index of each tile

    @property
    def tile_offsets(self) -> torch.Tensor:
        """[T, 2] (x, y) to add to a tile's boxes to get image coordinates."""
        return self.tiles[:, :2]


def tiny_person_merge(
    num_images: int = 8, boxes_per_tile: int = 1000, seed: int = 0, device: torch.device | str = "cpu"
) -> TinyPersonMerge:
    """Builds the workload (deterministic for a seed, on any device: it is generated on the CPU)."""
    generator = torch.Generator().manual_seed(seed)
    width, height = IMAGE_SIZE
    tiles = torch.tensor(tile_grid(width, height), dtype=torch.float32)
    parts = [_one_image(tiles, boxes_per_tile, generator) for _ in range(num_images)]
    tile_boxes = torch.cat([p[0] for p in parts])
    tile_index = torch.cat([p[1] + image * len(tiles) for image, p in enumerate(parts)])
    raw_scores = torch.cat([p[2] for p in parts])
    all_tiles = tiles.repeat(num_images, 1)
    tile_image = torch.arange(num_images).repeat_interleave(len(tiles))
    workload = TinyPersonMerge(
        boxes=tile_boxes + all_tiles[tile_index, :2].repeat(1, 2),
        scores=_distinct_float32(raw_scores),
        idxs=tile_image[tile_index],
        tile_boxes=tile_boxes,
        tile_index=tile_index,
        tiles=all_tiles,
        tile_image=tile_image,
    )
    return TinyPersonMerge(**{name: value.to(device) for name, value in vars(workload).items()})


def _one_image(tiles, boxes_per_tile, generator):
    """Tile-local boxes, tile index and raw scores of one image's detections, grouped by tile."""
    persons = _persons(_person_count(tiles, boxes_per_tile), generator)
    person_boxes, person_tiles, person_scores = _detections(persons, tiles, generator)
    noise_per_tile = round(NOISE_SHARE * boxes_per_tile)
    noise_tiles = torch.arange(len(tiles)).repeat_interleave(noise_per_tile)
    noise_boxes = _boxes_at_random(tiles[noise_tiles], len(noise_tiles), generator)
    noise_scores = 0.1 * torch.rand(len(noise_tiles), generator=generator, dtype=torch.float64)

    image_boxes = torch.cat([person_boxes, noise_boxes])
    tile_of_box = torch.cat([person_tiles, noise_tiles])
    order = torch.argsort(tile_of_box, stable=True)
    tile_boxes = image_boxes[order] - tiles[tile_of_box[order], :2].repeat(1, 2)
    return tile_boxes, tile_of_box[order], torch.cat([person_scores, noise_scores])[order]


def _person_count(tiles, boxes_per_tile):
    """Persons per image giving about ``boxes_per_tile`` boxes per tile with uniform persons."""
    width, height = IMAGE_SIZE
    tile_area = float(((tiles[:, 2] - tiles[:, 0]) * (tiles[:, 3] - tiles[:, 1])).mean())
    mean_candidates = sum(CANDIDATES_PER_PERSON) / 2
    persons_per_tile = (1 - NOISE_SHARE) * boxes_per_tile / mean_candidates
    return round(persons_per_tile * width * height / tile_area)


def _person_sizes(count, generator):
    """(width, height) of tiny persons: sqrt(area) log-normal around 10 px in [2, 32], mostly < 20 px."""
    side = torch.exp(math.log(10) + 0.5 * torch.randn(count, generator=generator)).clamp(2, 32)
    aspect = 1 + 1.5 * torch.rand(count, generator=generator)  # height / width
    return side / aspect.sqrt(), side * aspect.sqrt()


def _boxes_at_random(regions, count, generator):
    """Boxes of person sizes placed uniformly inside ``regions`` ([count, 4])."""
    box_w, box_h = _person_sizes(count, generator)
    box_w = torch.minimum(box_w, regions[:, 2] - regions[:, 0])
    box_h = torch.minimum(box_h, regions[:, 3] - regions[:, 1])
    x1 = regions[:, 0] + torch.rand(count, generator=generator) * (regions[:, 2] - regions[:, 0] - box_w)
    y1 = regions[:, 1] + torch.rand(count, generator=generator) * (regions[:, 3] - regions[:, 1] - box_h)
    return torch.stack([x1, y1, x1 + box_w, y1 + box_h], dim=1)


def _persons(count, generator):
    width, height = IMAGE_SIZE
    image = torch.tensor([[0.0, 0.0, width, height]]).expand(count, 4)
    return _boxes_at_random(image, count, generator)


def _detections(persons, tiles, generator):
    """Jittered candidates of each person in each tile, clipped to the tile (image coordinates)."""
    person, tile = _overlapping_pairs(persons, tiles).unbind(1)
    low, high = CANDIDATES_PER_PERSON
    candidates = torch.randint(low, high + 1, (len(person),), generator=generator)
    person, tile = person.repeat_interleave(candidates), tile.repeat_interleave(candidates)

    boxes = persons[person]
    size = (boxes[:, 2:] - boxes[:, :2]).repeat(1, 2)
    boxes = boxes + JITTER * size * torch.randn(boxes.shape, generator=generator)
    boxes[:, 2:] = torch.maximum(boxes[:, 2:], boxes[:, :2] + 1)
    clipped = torch.maximum(torch.minimum(boxes, tiles[tile, 2:].repeat(1, 2)), tiles[tile, :2].repeat(1, 2))
    visible = _area(clipped) >= MIN_VISIBLE_FRACTION * _area(boxes)

    confidence = 0.1 + 0.9 * torch.rand(len(persons), generator=generator, dtype=torch.float64)
    scores = confidence[person] * (
        0.6 + 0.4 * torch.rand(len(person), generator=generator, dtype=torch.float64)
    )
    return clipped[visible], tile[visible], scores[visible]


def _overlapping_pairs(boxes, tiles):
    """[P, 2] (box, tile) index pairs whose rectangles intersect."""
    low = torch.maximum(boxes[:, None, :2], tiles[None, :, :2])
    high = torch.minimum(boxes[:, None, 2:], tiles[None, :, 2:])
    return torch.nonzero((high > low).all(dim=2))


def _area(boxes):
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def _distinct_float32(scores: torch.Tensor) -> torch.Tensor:
    """float32 scores as close as possible to ``scores`` (>= 0) with no two equal and the order kept.

    Non-negative float32 are ordered like their bit patterns, so raising each sorted value to at least one
    ulp above its predecessor is a running maximum over the bits.
    """
    order = torch.argsort(scores, stable=True)
    bits = scores[order].to(torch.float32).view(torch.int32).to(torch.int64)
    rank = torch.arange(len(bits))
    distinct_bits = torch.cummax(bits - rank, dim=0).values + rank
    distinct = torch.empty(len(bits), dtype=torch.float32)
    distinct[order] = distinct_bits.to(torch.int32).view(torch.float32)
    return distinct


@dataclass
class FcosWorkload:
    points: torch.Tensor
    level_sizes: list
    strides: tuple
    regress_ranges: tuple
    gt_boxes: torch.Tensor
    gt_labels: torch.Tensor
    gt_counts: torch.Tensor
    num_classes: int = 1

    def arguments(self):
        return (
            self.points, self.level_sizes, self.strides, self.regress_ranges, self.gt_boxes, self.gt_labels,
            self.gt_counts, self.num_classes,
        )  # fmt: skip


def tiny_person_fcos(num_images=2, gts_per_image=800, height=512, width=640, seed=0, device="cpu"):
    """A TinyPerson-like FCOS batch: 640x512 sub-images, strides 4..64 (27,280 points), and the GTs of
    ``tiny_person_gt_boxes``."""
    generator = torch.Generator().manual_seed(seed)
    points, level_sizes = fcos_points(height, width)
    gt_boxes = tiny_person_gt_boxes(num_images, gts_per_image, height, width, generator)
    return FcosWorkload(
        points=points.to(device),
        level_sizes=level_sizes,
        strides=TINY_PERSON_STRIDES,
        regress_ranges=TINY_PERSON_RANGES,
        gt_boxes=gt_boxes.to(device),
        gt_labels=torch.zeros(len(gt_boxes), dtype=torch.int64, device=device),
        gt_counts=torch.full((num_images,), gts_per_image, dtype=torch.int64, device=device),
    )


def tiny_person_gt_boxes(num_images, gts_per_image, height, width, generator):
    """[num_images * gts_per_image, 4] tiny people (2-32 px wide, 1-3x as high) in clusters, some touching
    or crossing the image border, with integer pixel corners as annotations have: many ties and edge hits."""
    boxes = []
    for _ in range(num_images):
        centres = torch.rand(8, 2, generator=generator) * torch.tensor([width, height])
        around = centres[torch.randint(0, 8, (gts_per_image,), generator=generator)]
        xy = around + torch.randn(gts_per_image, 2, generator=generator) * 60
        w = 2 + torch.rand(gts_per_image, generator=generator) ** 2 * 30
        h = w * (1 + 2 * torch.rand(gts_per_image, generator=generator))
        image_boxes = torch.stack((xy[:, 0] - w / 2, xy[:, 1] - h / 2, xy[:, 0] + w / 2, xy[:, 1] + h / 2), 1)
        boxes.append(image_boxes.clamp(min=torch.zeros(4), max=torch.tensor([width, height, width, height])))
    return torch.cat(boxes).round()


@dataclass
class AssignWorkload:
    boxes: torch.Tensor
    box_counts: torch.Tensor
    gt_boxes: torch.Tensor
    gt_counts: torch.Tensor
    ignore_boxes: torch.Tensor
    ignore_counts: torch.Tensor

    def arguments(self):
        return self.boxes, self.box_counts, self.gt_boxes, self.gt_counts

    def ignore_arguments(self):
        return {"ignore_boxes": self.ignore_boxes, "ignore_counts": self.ignore_counts}


# RetinaNet's MaxIoUAssigner, with TinyPerson's ignore regions.
RETINANET_ASSIGNER = {"pos_iou": 0.5, "neg_iou": 0.4, "min_pos_iou": 0.0, "ignore_iof": 0.5}


def tiny_person_retinanet(
    num_images=1, gts_per_image=800, ignores_per_image=8, height=512, width=640, seed=0, device="cpu"
):
    """A TinyPerson-like RetinaNet batch: the anchors of a 640x512 sub-image on P2-P6 (245,520), the GTs of
    ``tiny_person_gt_boxes`` and a few ignore regions (16-96 px, integer corners) per image."""
    generator = torch.Generator().manual_seed(seed)
    anchors = retinanet_anchors(height, width)
    gt_boxes = tiny_person_gt_boxes(num_images, gts_per_image, height, width, generator)
    num_ignores = num_images * ignores_per_image
    corner = torch.rand(num_ignores, 2, generator=generator) * torch.tensor([width, height])
    sides = 16 + torch.rand(num_ignores, 2, generator=generator) * 80
    ignore_boxes = torch.cat((corner, corner + sides), 1).round()
    counts = torch.full((num_images,), 1, dtype=torch.int64, device=device)
    return AssignWorkload(
        boxes=anchors.repeat(num_images, 1).to(device),
        box_counts=counts * len(anchors),
        gt_boxes=gt_boxes.to(device),
        gt_counts=counts * gts_per_image,
        ignore_boxes=ignore_boxes.to(device),
        ignore_counts=counts * ignores_per_image,
    )
