"""The detectors a config's `[model]` section can name, built, loaded, and their merge policies."""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn

from tinyfast.modeling.backbone import BackboneConfig
from tinyfast.modeling.cpr import CPR, CPRConfig
from tinyfast.modeling.faster_fpn import FasterFPN, FasterFPNConfig
from tinyfast.modeling.fcos import AdapFCOS, FCOSConfig
from tinyfast.modeling.p2pnet import P2PNet, P2PNetConfig
from tinyfast.modeling.retinanet import AdapRetinaNet, RetinaNetConfig
from tinyfast.tiling import MergePolicy, detector_merge_policy

# The detectors a config's `model.name` can name: the model class and its config dataclass. A class's
# `dense_head` says which merge policy of tiled inference fits it (docs/protocol.md §3.3); its `kind` (see
# `model_kind`) what it is trained on and how it is evaluated.
DETECTORS = {
    "adap_fcos": (AdapFCOS, FCOSConfig),
    "adap_retinanet": (AdapRetinaNet, RetinaNetConfig),
    "faster_fpn": (FasterFPN, FasterFPNConfig),
    "p2pnet": (P2PNet, P2PNetConfig),
    "cpr": (CPR, CPRConfig),
}
MODEL_KINDS = ("detector", "localiser", "refiner")


def _detector(model_config: Mapping) -> tuple[type[nn.Module], type[BackboneConfig]]:
    name = model_config.get("name") if isinstance(model_config, Mapping) else None
    if name not in DETECTORS:
        raise ValueError(
            f"model.name {name!r} is not a known detector (known: {', '.join(sorted(DETECTORS))})"
        )
    return DETECTORS[name]


def model_kind(model_config: Mapping) -> str:
    """What `model.name` is: a "detector" (boxes: trained on boxes, scored by box AP), a "localiser"
    (points: trained on points, scored by point AP, `tinyfast.evaluation.evaluate_points`) or a "refiner"
    (CPR: trained on points, moves annotated points; scored by their distance to the box centres)."""
    return _detector(model_config)[0].kind


def model_settings(model_config: Mapping) -> BackboneConfig:
    """The `[model]` section as the config dataclass of the detector `model.name` names, every key checked
    (ValueError naming the key and the value)."""
    if not isinstance(model_config, Mapping):
        raise ValueError(f"model must be a table of settings ([model]), got {model_config!r}")
    _, config_class = _detector(model_config)
    return config_class.from_config(model_config, ignore=("name",), owner=model_config["name"])


def build_model(model_config: Mapping) -> nn.Module:
    """The detector that `model.name` names, with the section's other keys as its config."""
    model_class, _ = _detector(model_config)
    return model_class(model_settings(model_config))


def load_model(model_config: Mapping, checkpoint: Mapping, source: str) -> nn.Module:
    """The config's detector with the weights of `checkpoint` (a loaded checkpoint dict, read from the file
    `source`); ValueError naming `source` when it does not hold a model of this config."""
    model = build_model(model_config)
    try:
        model.load_state_dict(checkpoint["model"])
    except (KeyError, RuntimeError) as error:
        raise ValueError(f"{source} does not hold a model of this config ({error})") from error
    return model


def policy_for_model(
    name: str,
    model_config: Mapping,
    *,
    nms_pre: int | None = None,
    max_per_img: int | None = None,
    truncated: str = "keep",
) -> MergePolicy:
    """The merge policy `name` with the model's test settings (`nms_pre` overridable here) and its kind:
    see `tinyfast.tiling.detector_merge_policy`."""
    model_class, _ = _detector(model_config)
    if model_class.kind != "detector":
        raise ValueError(
            f"model.name = {model_config['name']!r} is a point model: tiled inference with a box merge "
            "policy (test policies, predict, study) is for the box detectors (docs/points.md)"
        )
    settings = model_settings(model_config)
    return detector_merge_policy(
        name,
        dense_head=model_class.dense_head,
        nms_pre=settings.nms_pre if nms_pre is None else nms_pre,
        nms_iou=settings.nms_iou,
        score_threshold=settings.score_threshold,
        max_per_img=max_per_img,
        truncated=truncated,
    )
