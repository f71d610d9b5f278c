"""The detectors' post-processing as it was before it was batched: one image (tile) and one FPN level at a
time, the per-tile NMS tile by tile, Faster-FPN's RoI detections image by image. Moved here from
`tinyfast.modeling` unchanged but for the signatures, as the reference that the batched code must equal."""

import torch

from tinyfast.modeling import AdapFCOS
from tinyfast.modeling.faster_fpn import multi_level_roi_align
from tinyfast.modeling.fcos import distances_to_boxes
from tinyfast.modeling.inference import run_network
from tinyfast.modeling.layers import flatten_levels
from tinyfast.modeling.postprocess import with_tile_settings
from tinyfast.ops import batched_nms


def level_candidates(class_scores, nms_pre, score_threshold, quality=None):
    """One image, one FPN level: locations (rows), classes and scores of the candidates."""
    ranking = class_scores if quality is None else class_scores * quality[:, None]
    locations = torch.arange(len(class_scores), device=class_scores.device)
    if 0 < nms_pre < len(class_scores):
        locations = ranking.max(1).values.topk(nms_pre).indices
        class_scores, ranking = class_scores[locations], ranking[locations]
    location, label = (class_scores > score_threshold).nonzero(as_tuple=True)
    return locations[location], label, ranking[location, label]


def fcos_level_candidates(model, outputs, priors, image, level, image_size, config):
    logits, distances, centerness = outputs
    height, width = image_size
    location, label, score = level_candidates(
        logits[level][image].flatten(1).T.sigmoid(),
        config.nms_pre,
        config.score_threshold,
        quality=centerness[level][image].flatten().sigmoid(),
    )
    level_distances = distances[level][image].flatten(1).T[location] * config.strides[level]
    boxes = distances_to_boxes(priors[level][location], level_distances)
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
    return boxes, score, label


def retinanet_level_candidates(model, outputs, priors, image, level, image_size, config):
    logits, deltas = outputs
    location, label, score = level_candidates(
        flatten_levels([logits[level][image : image + 1]], config.num_classes)[0].float().sigmoid(),
        config.nms_pre,
        config.score_threshold,
    )
    level_deltas = flatten_levels([deltas[level][image : image + 1]], 4)[0]
    boxes = model.box_coder.decode(priors[level][location], level_deltas[location], tuple(image_size))
    return boxes, score, label


def dense_candidates(model, level_candidates_of_model, outputs, priors, image_size, config):
    """`DenseDetector.candidates`: image after image, level after level."""
    results = []
    for image in range(outputs[0][0].shape[0]):
        boxes, scores, labels = zip(
            *(
                level_candidates_of_model(model, outputs, priors, image, level, image_size, config)
                for level in range(len(priors))
            ),
            strict=True,
        )
        results.append({"boxes": torch.cat(boxes), "scores": torch.cat(scores), "labels": torch.cat(labels)})
    return results


def tile_nms(found, settings, iou_threshold):
    """Class-aware NMS in each tile, then the cap, tile by tile (in place)."""
    if not settings.per_tile_nms and settings.max_per_tile is None:
        return found
    iou = iou_threshold if settings.per_tile_nms else 1.0
    for detections in found:
        keep = batched_nms(detections["boxes"], detections["scores"], detections["labels"], iou)
        if settings.max_per_tile is not None:
            keep = keep[: settings.max_per_tile]
        for key in detections:
            detections[key] = detections[key][keep]
    return found


def dense_detect_tiles(model, tiles, settings):
    """`DenseDetector.detect_tiles` for an `AdapFCOS` or an `AdapRetinaNet`."""
    per_level = fcos_level_candidates if isinstance(model, AdapFCOS) else retinanet_level_candidates
    config = with_tile_settings(model.config, settings)
    model.eval()
    with torch.no_grad():
        outputs = run_network(model.inference_dtype, lambda images: model.head(model.backbone(images)), tiles)
        priors = model.priors(outputs, tiles.device)
        found = dense_candidates(model, per_level, outputs, priors, tiles.shape[-2:], config)
    return tile_nms(found, settings, config.nms_iou)


def rpn_proposals(model, objectness, deltas, anchors, image_size, nms_pre, max_proposals):
    """`FasterFPN.proposals`: the levels batched, the best proposals picked image by image."""
    num_images, num_levels = objectness[0].shape[0], len(objectness)
    boxes, scores, groups = [], [], []
    for level, level_anchors in enumerate(anchors):
        level_scores = flatten_levels([objectness[level]], 1).reshape(num_images, -1).float().sigmoid()
        level_deltas = flatten_levels([deltas[level]], 4)
        if 0 < nms_pre < level_scores.shape[1]:
            level_scores, chosen = level_scores.topk(nms_pre, dim=1)
        else:
            chosen = torch.arange(level_scores.shape[1], device=level_scores.device).expand_as(level_scores)
        picked_deltas = torch.gather(level_deltas, 1, chosen[..., None].expand(-1, -1, 4))
        boxes.append(model.rpn_coder.decode(level_anchors[chosen], picked_deltas, image_size).reshape(-1, 4))
        scores.append(level_scores.reshape(-1))
        image = torch.arange(num_images, device=chosen.device)[:, None].expand_as(chosen)
        groups.append((image * num_levels + level).reshape(-1))
    boxes, scores, groups = torch.cat(boxes), torch.cat(scores), torch.cat(groups)
    sizes = boxes[:, 2:] - boxes[:, :2]
    valid = torch.nonzero((sizes > 0).all(dim=1)).flatten()
    keep = valid[batched_nms(boxes[valid], scores[valid], groups[valid], model.config.rpn_nms_iou)]
    kept_image = groups[keep] // num_levels
    return [boxes[keep[kept_image == image][:max_proposals]] for image in range(num_images)]


def faster_fpn_detect_tiles(model, tiles, settings):
    """`FasterFPN.detect_tiles`, its RoI detections image by image."""
    config = with_tile_settings(model.config, settings)
    model.eval()
    with torch.no_grad():
        image_size = tuple(tiles.shape[-2:])
        features = run_network(model.inference_dtype, model.backbone, tiles)
        objectness, deltas = model.rpn_head(features)
        anchors = model.anchor_generator([tuple(level.shape[-2:]) for level in objectness], tiles.device)
        proposals = rpn_proposals(
            model, objectness, deltas, anchors, image_size, config.nms_pre, config.rpn_max_proposals
        )
        image_index = torch.repeat_interleave(
            torch.arange(len(proposals), device=tiles.device),
            torch.tensor([len(p) for p in proposals], device=tiles.device),
        )
        rois = torch.cat([image_index[:, None].to(proposals[0]), torch.cat(proposals)], dim=1)
        class_logits, box_deltas = run_network(
            model.inference_dtype,
            model.box_head,
            multi_level_roi_align(features[:4], rois, config.strides[:4], config.roi_size),
        )
        scores = class_logits.float().softmax(dim=1)[:, : config.num_classes]
        boxes = model.roi_coder.decode(
            rois[:, None, 1:], box_deltas.reshape(len(rois), config.num_classes, 4), image_size
        )
        results = []
        for image in range(len(proposals)):
            mine = image_index == image
            roi, label = (scores[mine] > config.score_threshold).nonzero(as_tuple=True)
            results.append(
                {"boxes": boxes[mine][roi, label], "scores": scores[mine][roi, label], "labels": label}
            )
    return tile_nms(results, settings, config.nms_iou)
