"""The merge of tiled point detections (a point localiser's output): the two policies of the box merge
(docs/tiling.md), with ``tinyfast.ops.point_nms`` in place of box NMS."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from tinyfast.ops import point_nms
from tinyfast.tiling.inference import run_views, tile_views, view_scales
from tinyfast.utils.tensors import first_of_each_group

POINT_POLICIES = ("during", "after")
_KEYS = ("points", "scores", "labels", "sizes")


def merge_tile_points(
    detections: Sequence[dict[str, torch.Tensor]],
    tiles: torch.Tensor | Sequence[Sequence[float]],
    tile_image: torch.Tensor | Sequence[int],
    image_sizes: Sequence[tuple[float, float]],
    policy: str = "during",
    *,
    distance_threshold: float,
    tile_scales: torch.Tensor | None = None,
    tile_flips: torch.Tensor | Sequence[bool] | None = None,
    score_threshold: float | None = None,
    max_per_img: int | None = None,
    class_agnostic: bool = False,
) -> list[dict[str, torch.Tensor]]:
    """Merges the point detections of tiles into point detections per image, under ``policy``.

    ``detections`` holds one dict per tile: ``points`` ``[n, 2]`` (x, y in the pixels of the tile as the
    detector saw it), ``scores`` ``[n]``, ``labels`` ``[n]`` (0-based) and ``sizes`` ``[n]`` (each point's
    size estimate in the same pixels, >= 0). Per tile: its crop ``tiles[t]`` = (x1, y1, x2, y2) in its image
    ``tile_image[t]``, the resize factor of the crop ``tile_scales[t]`` = (x, y) (default 1) and whether the
    detector saw it mirrored, ``tile_flips[t]`` (default not). ``image_sizes`` is (width, height) per image.

    Each point is mapped to its image as ``merge_tiles`` maps boxes: divided by the scale, mirrored within the
    crop's width, shifted by the crop's corner, clipped to the image; its size is divided by the geometric
    mean of the two scales. Points scoring at most ``score_threshold`` are dropped first. Then:

    - ``"during"`` (one merge per full image): one ``point_nms`` of all the image's points within each class,
      then the ``max_per_img`` best points of the image;
    - ``"after"`` (every tile an image of its own): ``point_nms`` within each tile and class, the
      ``max_per_img`` best points of each tile, then one ``point_nms`` of the survivors of all the image's
      tiles within each class, no cap.

    ``distance_threshold`` is ``point_nms``'s (suppressed within that many times the kept point's size);
    ``class_agnostic`` merges across classes. Returns one dict per image with the same keys (points in image
    pixels, float32 or float64 as given), by decreasing score. Bad input raises ``ValueError`` naming it.
    """
    if policy not in POINT_POLICIES:
        raise ValueError(f"merge_tile_points: policy must be 'during' or 'after', got {policy!r}")
    num_tiles = len(detections)
    for name, value in (("tiles", tiles), ("tile_image", tile_image)):
        if len(value) != num_tiles:
            raise ValueError(f"merge_tile_points: {name} has {len(value)} rows for {num_tiles} tiles")
    for position, found in enumerate(detections):
        missing = [key for key in _KEYS if key not in found]
        if missing:
            raise ValueError(f"merge_tile_points: detections[{position}] has no {', '.join(missing)}")
    if max_per_img is not None and (
        isinstance(max_per_img, bool) or not isinstance(max_per_img, int) or max_per_img < 0
    ):
        raise ValueError(f"merge_tile_points: max_per_img must be None or an int >= 0, got {max_per_img!r}")

    device = detections[0]["points"].device if detections else torch.device("cpu")
    counts = torch.tensor([len(found["points"]) for found in detections], dtype=torch.int64)
    tile_of = torch.repeat_interleave(torch.arange(num_tiles), counts).to(device)
    points = (
        torch.cat([found["points"].reshape(-1, 2) for found in detections])
        if detections
        else torch.empty(0, 2)
    )
    dtype = torch.float64 if points.dtype == torch.float64 else torch.float32
    points = points.to(device, dtype)
    scores = _joined(detections, "scores", device)
    labels = _joined(detections, "labels", device)
    sizes = _joined(detections, "sizes", device).to(dtype)
    if labels.is_floating_point() or (labels < 0).any():
        raise ValueError("merge_tile_points: labels must be integers >= 0")
    crops = torch.as_tensor(tiles, dtype=dtype).reshape(num_tiles, 4).to(device)
    images = torch.as_tensor(tile_image, dtype=torch.int64).reshape(num_tiles).to(device)
    if ((images < 0) | (images >= len(image_sizes))).any():
        raise ValueError(f"merge_tile_points: tile_image must lie in [0, {len(image_sizes)}) (the images)")
    scales = (
        torch.ones(num_tiles, 2, dtype=dtype)
        if tile_scales is None
        else torch.as_tensor(tile_scales, dtype=dtype)
    )
    scales = scales.reshape(num_tiles, 2).to(device)
    if not (scales > 0).all():
        raise ValueError("merge_tile_points: tile_scales must be > 0")
    flips = (
        torch.zeros(num_tiles, dtype=torch.bool)
        if tile_flips is None
        else torch.as_tensor(tile_flips, dtype=torch.bool)
    )
    flips = flips.reshape(num_tiles).to(device)
    bounds = torch.as_tensor(image_sizes, dtype=dtype).reshape(len(image_sizes), 2).to(device)

    crop, scale, image = crops[tile_of], scales[tile_of], images[tile_of]
    in_crop = points / scale
    x = torch.where(flips[tile_of], (crop[:, 2] - crop[:, 0]) - in_crop[:, 0], in_crop[:, 0])
    points = torch.stack([x, in_crop[:, 1]], dim=1) + crop[:, :2]
    points = torch.minimum(points.clamp(min=0), bounds[image])
    sizes = sizes / (scale[:, 0] * scale[:, 1]).sqrt()

    candidates = torch.arange(len(points), device=device)
    if score_threshold is not None:
        candidates = candidates[scores > score_threshold]
    num_classes = int(labels.max()) + 1 if len(labels) else 1
    class_of = torch.zeros_like(labels) if class_agnostic else labels

    def suppress(candidates, groups, capped_units=None):
        """The candidates that point NMS keeps within each of their groups (by decreasing score), and with
        ``capped_units`` only the first ``max_per_img`` of each unit."""
        kept = candidates[
            point_nms(
                points[candidates],
                scores[candidates],
                groups[candidates],
                sizes[candidates],
                distance_threshold,
            )
        ]
        if capped_units is None or max_per_img is None:
            return kept
        return kept[first_of_each_group(capped_units[kept], max_per_img)]

    if policy == "during":
        candidates = suppress(candidates, image * num_classes + class_of, capped_units=image)
    else:
        candidates = suppress(candidates, tile_of * num_classes + class_of, capped_units=tile_of)
        candidates = suppress(candidates, image * num_classes + class_of)
    kept = candidates[torch.argsort(image[candidates], stable=True)]  # by image, then by decreasing score
    per_image = torch.bincount(image[kept], minlength=len(image_sizes)).tolist()
    parts = [torch.split(values[kept], per_image) for values in (points, scores, labels, sizes)]
    return [dict(zip(_KEYS, values, strict=True)) for values in zip(*parts, strict=True)]


def _joined(detections, key, device):
    if not detections:
        return torch.empty(0, dtype=torch.int64 if key == "labels" else torch.float32, device=device)
    return torch.cat([found[key].reshape(-1) for found in detections]).to(device)


def locate_images(
    localiser,
    images: Sequence[torch.Tensor],
    policy: str = "during",
    *,
    tile: tuple[int, int] = (640, 512),
    overlap: tuple[int, int] = (100, 100),
    scales: Sequence = (1.0,),
    flips: bool = False,
    tile_batch_size: int = 8,
    distance_threshold: float = 0.5,
    max_per_img: int | None = None,
) -> list[dict[str, torch.Tensor]]:
    """Points ``{"points", "scores", "labels", "sizes"}`` per full image of a point localiser, tiled as
    ``detect_images`` tiles for a box detector (the same grid, scales, flips and batching), the tiles'
    points merged by ``merge_tile_points`` under ``policy``. ``localiser.locate(tiles, sizes)`` gives the
    points of a batch of tiles of (h, w) ``sizes`` (``tinyfast.modeling.p2pnet.P2PNet.locate``)."""
    if tile_batch_size < 1:
        raise ValueError(f"locate_images: tile_batch_size must be >= 1, got {tile_batch_size}")
    views = tile_views(images, tile, overlap, scales, flips, "locate_images")

    def locate(tiles: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        return localiser.locate(tiles, [tuple(tiles.shape[-2:])] * len(tiles))

    found = run_views(locate, images, views, tile_batch_size)
    device = images[0].device if len(images) else torch.device("cpu")
    crops = torch.tensor([view.crop for view in views], dtype=torch.float32, device=device).reshape(-1, 4)
    return merge_tile_points(
        [found[position] for position in range(len(views))],
        crops,
        [view.image for view in views],
        [(float(image.shape[-1]), float(image.shape[-2])) for image in images],
        policy,
        distance_threshold=distance_threshold,
        tile_scales=view_scales(views, crops),
        tile_flips=[view.flipped for view in views],
        max_per_img=max_per_img,
    )
