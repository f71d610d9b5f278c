"""Refining the points of a point-annotated json with a trained point refiner (CPR): every person's point
moved (`tinyfast.modeling.cpr.refine_bags`), the rest of the json left as it is, and how far the points
lie from the box centres before and after."""

from __future__ import annotations

import copy
import os

import numpy as np
import torch
from torchvision.transforms.v2.functional import InterpolationMode, resize
from tqdm import tqdm

from tinyfast.data.points import point_annotations_from_coco
from tinyfast.data.transforms import axis_scales, normalize, pad_to_multiple, read_image, resized_size


def refine_point_json(
    refiner,
    data: dict,
    image_dir: str,
    *,
    normalization: str,
    task: str = "all",
    device: torch.device | str = "cpu",
    progress: bool = True,
    name: str = "<COCO dict>",
    image_scale: float | tuple[float, float] = 1.0,
) -> tuple[dict, dict[str, float]]:
    """A copy of the point-annotated COCO json `data` (images under `image_dir`, `name` in errors) whose
    persons of `task` carry their refined `point` (ignore regions keep theirs), and the report:
    `mean_distance_input` and `mean_distance_refined` (pixels from the refined annotations' points to their
    box centres), `refined_share` (the share whose point moved: the others had no bag point passing the
    rules) and `refined_points` (how many). `image_scale` (`data.image_scale`: a factor or (x, y) factors)
    resizes each image, and its points, as the refiner was trained; the refined points are written back in
    the json's own pixels."""
    scale = axis_scales(image_scale)
    annotations = point_annotations_from_coco(data, name).attached()
    refined_by_id: dict[int, list[float]] = {}
    before, after, centres, moved = [], [], [], []
    for info in tqdm(annotations.images, desc="refine", disable=not progress):
        anns = annotations.annotations_of(info.id)
        positive = annotations.positives(anns, task)
        if not positive.any():
            continue
        image = read_image(os.path.join(image_dir, info.file_name))
        if info.corner is not None:
            x1, y1, x2, y2 = info.corner
            image = image[:, y1:y2, x1:x2]
        factors = torch.ones(2)
        if scale != (1, 1):
            width, height = resized_size(image.shape[2], image.shape[1], scale)
            factors = torch.tensor([width / image.shape[2], height / image.shape[1]])
            image = resize(image, [height, width], interpolation=InterpolationMode.BILINEAR, antialias=True)
        image = normalize(image, normalization).to(device)
        points = (torch.from_numpy(anns.points[positive]).float() * factors).to(device)
        labels = torch.zeros(len(points), dtype=torch.long, device=device)  # one class per task
        size = tuple(image.shape[-2:])
        ((refined, counts),) = refiner.refine(pad_to_multiple([image], 32), [size], [points], [labels])
        refined = (refined.cpu() / factors).double().numpy()
        for ann_id, point in zip(anns.ids[positive].tolist(), refined.tolist(), strict=True):
            refined_by_id[ann_id] = point
        boxes = anns.boxes[positive]
        centres.append((boxes[:, :2] + boxes[:, 2:]) / 2)
        before.append(anns.points[positive])
        after.append(refined)
        moved.append(counts.cpu().numpy() > 0)
    out = copy.deepcopy(data)
    for ann in out["annotations"]:
        if ann["id"] in refined_by_id:
            ann["point"] = refined_by_id[ann["id"]]
    return out, _report(before, after, centres, moved)


def _report(before, after, centres, moved) -> dict[str, float]:
    if not centres:
        return {
            "refined_points": 0,
            "refined_share": 0.0,
            "mean_distance_input": -1.0,
            "mean_distance_refined": -1.0,
        }
    centre = np.concatenate(centres)
    return {
        "refined_points": len(centre),
        "refined_share": float(np.concatenate(moved).mean()),
        "mean_distance_input": float(np.linalg.norm(np.concatenate(before) - centre, axis=1).mean()),
        "mean_distance_refined": float(np.linalg.norm(np.concatenate(after) - centre, axis=1).mean()),
    }


def format_refine_report(report: dict) -> str:
    """`refine_point_json`'s report in one line."""
    return (
        f"{report['refined_points']} points, {100 * report['refined_share']:.1f}% moved; mean distance to "
        f"the box centres: {report['mean_distance_input']:.2f} px before, "
        f"{report['mean_distance_refined']:.2f} px after"
    )
