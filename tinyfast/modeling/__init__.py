"""Detectors of tinyfast: backbones, heads and losses (data, evaluation and the engine live elsewhere)."""

from tinyfast.modeling.backbone import ResNetFPN
from tinyfast.modeling.fcos import AdapFCOS, FCOSConfig

__all__ = ["AdapFCOS", "FCOSConfig", "ResNetFPN"]
