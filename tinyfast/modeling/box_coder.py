"""The reference's box regression targets: mmdetection's `DeltaXYWHBBoxCoder` (target means 0).

`encode` gives `((gx - px) / pw, (gy - py) / ph, log(gw / pw), log(gh / ph)) / stds` for a reference box p
(anchor or proposal) and a target box g, centres and sizes without mmdetection 1.x's +1; `decode` inverts it
with the log-sizes clamped to +-log(1000 / 16) and, given an image size, clips the boxes to the image.
Written out rather than torchvision's `BoxCoder` (weights = 1 / stds) so that the arithmetic is the
reference's: dividing by 0.1 and multiplying by 10 differ in the last bit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor


class DeltaBoxCoder:
    """Works on any leading shape: `[..., 4]` reference boxes broadcast against `[..., 4]` deltas."""

    def __init__(
        self, stds: Sequence[float] = (1.0, 1.0, 1.0, 1.0), max_log_ratio: float = abs(math.log(16 / 1000))
    ):
        if len(stds) != 4 or any(s <= 0 for s in stds):
            raise ValueError(f"DeltaBoxCoder: stds must be 4 positive numbers, got {list(stds)}")
        self.stds = tuple(float(s) for s in stds)
        self.max_log_ratio = max_log_ratio

    def encode(self, boxes: Tensor, targets: Tensor) -> Tensor:
        boxes, targets = boxes.float(), targets.float()
        px, py = (boxes[..., 0] + boxes[..., 2]) * 0.5, (boxes[..., 1] + boxes[..., 3]) * 0.5
        pw, ph = boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]
        gx, gy = (targets[..., 0] + targets[..., 2]) * 0.5, (targets[..., 1] + targets[..., 3]) * 0.5
        gw, gh = targets[..., 2] - targets[..., 0], targets[..., 3] - targets[..., 1]
        deltas = torch.stack([(gx - px) / pw, (gy - py) / ph, torch.log(gw / pw), torch.log(gh / ph)], dim=-1)
        return deltas / deltas.new_tensor(self.stds)

    def decode(
        self,
        boxes: Tensor,
        deltas: Tensor,
        image_size: tuple[int, int] | None = None,
        exp: Callable[[Tensor], Tensor] = torch.exp,
    ) -> Tensor:
        """`image_size` is (height, width); None leaves the boxes unclipped. `exp` computes the size factors
        (`tinyfast.modeling.postprocess.exp_in_runs` keeps each tile's boxes independent of its batch)."""
        deltas = deltas.float() * deltas.new_tensor(self.stds, dtype=torch.float32)
        boxes = boxes.float()
        px, py = (boxes[..., 0] + boxes[..., 2]) * 0.5, (boxes[..., 1] + boxes[..., 3]) * 0.5
        pw, ph = boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]
        dw = deltas[..., 2].clamp(-self.max_log_ratio, self.max_log_ratio)
        dh = deltas[..., 3].clamp(-self.max_log_ratio, self.max_log_ratio)
        gw, gh = pw * exp(dw), ph * exp(dh)
        gx, gy = px + pw * deltas[..., 0], py + ph * deltas[..., 1]
        decoded = torch.stack([gx - gw * 0.5, gy - gh * 0.5, gx + gw * 0.5, gy + gh * 0.5], dim=-1)
        if image_size is not None:
            height, width = image_size
            decoded[..., 0::2] = decoded[..., 0::2].clamp(0, width)
            decoded[..., 1::2] = decoded[..., 1::2].clamp(0, height)
        return decoded
