"""Anchors as the reference's mmdetection 2.x `AnchorGenerator` defines them.

Per level, one base anchor of width `stride * scale / sqrt(ratio)` and height `stride * scale * sqrt(ratio)`
for every (ratio, scale), centred on (0, 0) (`center_offset=0`), shifted to every feature-map cell at
`(x * stride, y * stride)`. Order within a level: cell by cell (row-major), then ratio, then scale
(`scale_major=True`), the order of a head's `[B, A * C, H, W]` output read as `[B, H, W, A, C]`.
torchvision's `AnchorGenerator` rounds the base anchors to whole pixels (the 10.08 and 12.7 px anchors of
Adap RetinaNet would become 10 and 13), hence this module.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def octave_scales(octave_base_scale: float, scales_per_octave: int) -> tuple[float, ...]:
    """RetinaNet's scales: `octave_base_scale * 2 ** (i / scales_per_octave)` for i < scales_per_octave."""
    return tuple(octave_base_scale * 2 ** (i / scales_per_octave) for i in range(scales_per_octave))


class AnchorGenerator:
    """`generator(sizes, device)` gives the anchors of each level, `[H * W * A, 4]` (x1, y1, x2, y2)."""

    def __init__(self, strides: Sequence[int], scales: Sequence[float], ratios: Sequence[float]):
        if not strides or not scales or not ratios:
            raise ValueError("AnchorGenerator: strides, scales and ratios must not be empty")
        if any(value <= 0 for value in (*strides, *scales, *ratios)):
            raise ValueError(
                f"AnchorGenerator: strides, scales and ratios must be positive, got {list(strides)}, "
                f"{list(scales)} and {list(ratios)}"
            )
        self.strides = tuple(strides)
        h_ratios = torch.tensor(ratios, dtype=torch.float32).sqrt()
        w_ratios = 1 / h_ratios
        scale_tensor = torch.tensor(scales, dtype=torch.float32)
        self.base_anchors = []
        for stride in self.strides:
            widths = (stride * w_ratios[:, None] * scale_tensor[None, :]).reshape(-1)
            heights = (stride * h_ratios[:, None] * scale_tensor[None, :]).reshape(-1)
            self.base_anchors.append(
                torch.stack([-0.5 * widths, -0.5 * heights, 0.5 * widths, 0.5 * heights], 1)
            )

    @property
    def num_anchors(self) -> int:
        """Anchors per feature-map cell."""
        return len(self.base_anchors[0])

    def __call__(self, sizes: Sequence[tuple[int, int]], device: torch.device | str = "cpu") -> list[Tensor]:
        if len(sizes) != len(self.strides):
            raise ValueError(f"AnchorGenerator: {len(sizes)} feature sizes for {len(self.strides)} strides")
        anchors = []
        for (height, width), stride, base in zip(sizes, self.strides, self.base_anchors, strict=True):
            xs = torch.arange(width, device=device, dtype=torch.float32) * stride
            ys = torch.arange(height, device=device, dtype=torch.float32) * stride
            grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
            shifts = torch.stack([grid_x, grid_y, grid_x, grid_y], dim=-1).reshape(-1, 1, 4)
            anchors.append((shifts + base.to(device)[None]).reshape(-1, 4))
        return anchors
