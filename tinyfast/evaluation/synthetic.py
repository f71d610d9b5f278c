"""Random TinyPerson-like ground truths and detections, for benchmarks and sanity checks."""

from __future__ import annotations

from typing import Any

import numpy as np


def synthetic_dataset(
    n_images: int,
    gts_per_image: int,
    dets_per_image: int,
    *,
    seed: int = 0,
    n_categories: int = 1,
    ignore_fraction: float = 0.07,
    uncertain_fraction: float = 0.09,
    crowd_fraction: float = 0.0,
    empty_image_fraction: float = 0.0,
    zero_area_fraction: float = 0.0,
    score_decimals: int | None = None,
    image_size: tuple[int, int] = (1920, 1080),
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A COCO ground truth dict and a results list.

    GT boxes are tiny (sides of about 3 to 40 px), partly packed in groups so that they overlap.
    Roughly half the detections are jittered copies of GTs, the rest are random boxes; scores are
    higher for the copies. ``score_decimals`` rounds scores to create ties.
    """
    rng = np.random.default_rng(seed)
    width, height = image_size
    images, annotations, results = [], [], []
    for image_id in range(1, n_images + 1):
        images.append({"id": image_id, "file_name": f"{image_id}.jpg", "width": width, "height": height})
        n_gts = 0 if rng.random() < empty_image_fraction else gts_per_image
        sides = np.exp(rng.uniform(np.log(3), np.log(40), size=(n_gts, 2)))
        centres = rng.uniform([0, 0], [width, height], size=(max(1, n_gts // 4), 2))
        xy = centres[rng.integers(0, len(centres), n_gts)] + rng.normal(0, 25, size=(n_gts, 2))
        gt_boxes = np.column_stack([np.clip(xy, 0, [width - 50, height - 50]), sides])
        gt_categories = rng.integers(1, n_categories + 1, n_gts)
        for box, category in zip(gt_boxes, gt_categories, strict=True):
            annotation = {
                "id": len(annotations) + 1,
                "image_id": image_id,
                "category_id": int(category),
                "bbox": box.tolist(),
                "area": float(box[2] * box[3]),
                "iscrowd": int(rng.random() < crowd_fraction),
            }
            if rng.random() < ignore_fraction:
                annotation["ignore"] = 1
            if rng.random() < uncertain_fraction:
                annotation["uncertain"] = 1
            annotations.append(annotation)
        n_copies = dets_per_image // 2 if n_gts else 0
        source = rng.integers(0, max(n_gts, 1), n_copies)
        copies = gt_boxes[source] if n_gts else np.zeros((0, 4))
        copies = copies + rng.normal(0, 0.1, size=copies.shape) * np.repeat(copies[:, 2:], 2, axis=1)
        copies[:, 2:] = np.abs(copies[:, 2:])
        n_random = dets_per_image - n_copies
        random_boxes = np.column_stack(
            [
                rng.uniform([0, 0], [width, height], size=(n_random, 2)),
                np.exp(rng.uniform(1, 3.7, (n_random, 2))),
            ]
        )
        det_boxes = np.concatenate([copies, random_boxes])
        zero = rng.random(len(det_boxes)) < zero_area_fraction
        det_boxes[zero, 2 + rng.integers(0, 2, int(zero.sum()))] = 0.0
        scores = np.concatenate([rng.beta(4, 2, n_copies), rng.beta(2, 4, n_random)])
        if score_decimals is not None:
            scores = np.round(scores, score_decimals)
        det_categories = np.concatenate(
            [gt_categories[source] if n_gts else [], rng.integers(1, n_categories + 1, n_random)]
        )
        for box, score, category in zip(det_boxes, scores, det_categories, strict=True):
            results.append(
                {
                    "image_id": image_id,
                    "category_id": int(category),
                    "bbox": box.tolist(),
                    "score": float(score),
                }
            )
    categories = [{"id": c, "name": f"person{c}"} for c in range(1, n_categories + 1)]
    return {"images": images, "annotations": annotations, "categories": categories}, results
