"""The detectors a config's `[model]` section can name, built, loaded, and their merge policies."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from torch import Tensor, nn

from tinyfast.modeling.backbone import BackboneConfig
from tinyfast.modeling.cpr import CPR, CPRConfig
from tinyfast.modeling.faster_fpn import FasterFPN, FasterFPNConfig
from tinyfast.modeling.fcos import AdapFCOS, FCOSConfig
from tinyfast.modeling.p2pnet import P2PNet, P2PNetConfig
from tinyfast.modeling.retinanet import AdapRetinaNet, RetinaNetConfig
from tinyfast.tiling import MergePolicy, detector_merge_policy
from tinyfast.utils.schema import checks

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


def model_keys(model_config: Mapping) -> tuple[str, ...]:
    """Every key the `[model]` section of detector `model.name` may hold (those it leaves out take their
    defaults)."""
    _, config_class = _detector(model_config)
    return ("name", *checks(config_class))


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


@dataclass(frozen=True)
class PartialLoad:
    """What `load_matching` loaded into a model and what not."""

    loaded: tuple[str, ...]
    mismatched: tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...]  # name, shape given, shape here
    missing: tuple[str, ...]  # tensors of the model the state does not have
    unexpected: tuple[str, ...]  # tensors of the state the model does not have

    @property
    def not_loaded(self) -> tuple[str, ...]:
        """The model's tensors that kept their initialisation."""
        return tuple(name for name, _, _ in self.mismatched) + self.missing

    def summary(self, shown: int = 4) -> str:
        """One line: how many tensors loaded, and which did not (the first `shown` of each kind)."""
        total = len(self.loaded) + len(self.not_loaded)
        parts = []
        if self.mismatched:
            names = [f"{n} {list(there)} there, {list(here)} here" for n, there, here in self.mismatched]
            parts.append(f"{len(names)} of another shape ({_first(names, shown)})")
        if self.missing:
            parts.append(f"{len(self.missing)} not in the checkpoint ({_first(self.missing, shown)})")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} of the checkpoint not in this model "
                         f"({_first(self.unexpected, shown)})")  # fmt: skip
        return f"loaded {len(self.loaded)} of the model's {total} tensors" + (
            "; not loaded: " + "; ".join(parts) if parts else ""
        )


def _first(names, shown: int) -> str:
    names = list(names)
    return ", ".join(names[:shown]) + (f", ... {len(names) - shown} more" if len(names) > shown else "")


def load_matching(model: nn.Module, state: Mapping[str, Tensor]) -> PartialLoad:
    """Loads every tensor of `state` (a model's state dict) whose name and shape match one of `model`'s
    (a pre-trained detector of another class count: all but its classifier); the rest keeps its values."""
    own = model.state_dict()
    matching = {k: v for k, v in state.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    model.load_state_dict(matching, strict=False)
    return PartialLoad(
        loaded=tuple(matching),
        mismatched=tuple(
            (k, tuple(v.shape), tuple(own[k].shape))
            for k, v in state.items()
            if k in own and k not in matching
        ),
        missing=tuple(k for k in own if k not in state),
        unexpected=tuple(k for k in state if k not in own),
    )


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
