"""The point NMS reference: greedy point NMS as ``tinyfast.ops.point_nms`` documents it, in plain NumPy and
PyTorch (the tests' oracle and the benchmark's baseline)."""

import numpy as np
import torch


def reference_point_nms(points, scores, idxs, sizes, distance_threshold, max_per_group=None):
    """Greedy point NMS as the contract states it: O(N) memory, each kept point compared with the rest of its
    group (O(kept x N) time, as torchvision's CPU box NMS).

    Points are visited by decreasing score, ties by lower index (a stable sort); a kept point of radius
    ``r = distance_threshold * size`` suppresses every later point of its group at offset ``(dx, dy)`` with
    ``|dx| < r``, ``|dy| < r`` and ``(dx / r)^2 + (dy / r)^2 < 1``, all in float64 (the operations of
    ``csrc/point_math.h``). ``max_per_group`` keeps each group's first kept points.
    """
    points = points.detach().cpu().double().numpy()
    with np.errstate(invalid="ignore", over="ignore"):  # inf * 0 is NaN, huge products inf: both are rules
        radii = sizes.detach().cpu().double().numpy() * float(distance_threshold)
    scores = scores.detach().cpu().double()
    idxs = idxs.detach().cpu().long().numpy()
    order = torch.sort(scores, descending=True, stable=True).indices.numpy()
    keep = []
    for group in np.unique(idxs):
        ranked = order[idxs[order] == group]
        xs, ys, rs = points[ranked, 0], points[ranked, 1], radii[ranked]
        alive = np.ones(len(ranked), dtype=bool)
        kept = 0
        for k in range(len(ranked)):
            if not alive[k]:
                continue
            if max_per_group is not None and kept == max_per_group:
                break
            keep.append(ranked[k])
            kept += 1
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                dx, dy, r = xs[k + 1 :] - xs[k], ys[k + 1 :] - ys[k], rs[k]
                u, v = dx / r, dy / r
                within = (dx < r) & (-dx < r) & (dy < r) & (-dy < r) & (u * u + v * v < 1.0)
            alive[k + 1 :] &= ~within
    keep = torch.tensor(sorted(keep), dtype=torch.int64)
    return keep[torch.sort(scores[keep], descending=True, stable=True).indices]
