"""Detectors of tinyfast: backbones, heads and losses (data, evaluation and the engine live elsewhere)."""

from tinyfast.modeling.backbone import BackboneConfig, BackboneFPN
from tinyfast.modeling.build import DETECTORS, build_model, load_model, policy_for_model
from tinyfast.modeling.faster_fpn import FasterFPN, FasterFPNConfig
from tinyfast.modeling.fcos import AdapFCOS, FCOSConfig
from tinyfast.modeling.retinanet import AdapRetinaNet, RetinaNetConfig

__all__ = [
    "DETECTORS",
    "AdapFCOS",
    "AdapRetinaNet",
    "FCOSConfig",
    "FasterFPN",
    "FasterFPNConfig",
    "BackboneConfig",
    "BackboneFPN",
    "build_model",
    "load_model",
    "policy_for_model",
    "RetinaNetConfig",
]
