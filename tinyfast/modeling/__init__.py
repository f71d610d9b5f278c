"""Detectors of tinyfast: backbones, heads and losses (data, evaluation and the engine live elsewhere)."""

from tinyfast.modeling.backbone import BackboneFPN
from tinyfast.modeling.faster_fpn import FasterFPN, FasterFPNConfig
from tinyfast.modeling.fcos import AdapFCOS, FCOSConfig
from tinyfast.modeling.retinanet import AdapRetinaNet, RetinaNetConfig

# The detectors a config's `model.name` can name: the model class and its config dataclass. A class's
# `dense_head` says which merge policy of tiled inference fits it (docs/protocol.md §3.3).
DETECTORS = {
    "adap_fcos": (AdapFCOS, FCOSConfig),
    "adap_retinanet": (AdapRetinaNet, RetinaNetConfig),
    "faster_fpn": (FasterFPN, FasterFPNConfig),
}

__all__ = [
    "DETECTORS",
    "AdapFCOS",
    "AdapRetinaNet",
    "FCOSConfig",
    "FasterFPN",
    "FasterFPNConfig",
    "BackboneFPN",
    "RetinaNetConfig",
]
