"""The merge reference: boxes placed in their images in PyTorch, torchvision's NMS per image and class, the
top boxes of each image (the plain composition ``tinyfast.ops.merge_tiles`` fuses)."""

import torch
from torchvision.ops.boxes import _batched_nms_vanilla


def place_in_images(boxes, tile_index, tiles, tile_image, image_sizes, tile_scales, tile_flips):
    """Tile boxes in image coordinates, with the operations in the order the op documents."""
    scale, tile, flipped = tile_scales[tile_index], tiles[tile_index], tile_flips[tile_index]
    x1, x2 = boxes[:, 0] / scale[:, 0], boxes[:, 2] / scale[:, 0]
    crop_width = tile[:, 2] - tile[:, 0]
    crop = torch.stack(
        [
            torch.where(flipped, crop_width - x2, x1),
            boxes[:, 1] / scale[:, 1],
            torch.where(flipped, crop_width - x1, x2),
            boxes[:, 3] / scale[:, 1],
        ],
        dim=1,
    )
    size = image_sizes[tile_image[tile_index]].repeat(1, 2)
    return torch.minimum(torch.maximum(crop + tile[:, :2].repeat(1, 2), torch.zeros(())), size)


def reference_merge(case, score_threshold=None, iou_threshold=0.5, class_agnostic=False, max_per_image=None,
                    nms=_batched_nms_vanilla):  # fmt: skip
    boxes = place_in_images(
        case["boxes"], case["tile_index"], case["tiles"], case["tile_image"], case["image_sizes"],
        case["tile_scales"], case["tile_flips"],
    )  # fmt: skip
    image = case["tile_image"][case["tile_index"]]
    labels, scores = case["labels"], case["scores"]
    selected = torch.nonzero(scores > (-torch.inf if score_threshold is None else score_threshold)).squeeze(1)
    groups = image if class_agnostic else image * (int(labels.max()) + 1) + labels
    keep = selected[nms(boxes[selected], scores[selected], groups[selected], iou_threshold)]
    keep = keep[torch.argsort(image[keep], stable=True)]
    if max_per_image is not None:
        rank = torch.arange(len(keep)) - torch.searchsorted(image[keep], image[keep])
        keep = keep[rank < max_per_image]
    return boxes[keep], scores[keep], labels[keep], image[keep]
