"""tinyfast: tiny-object detection on TinyPerson with a compiled core.

``tinyfast.ops`` (and what builds on it) needs the compiled extension ``tinyfast._C``; it is imported on first
use, so that the pure-Python parts (``tinyfast.evaluation``, ``tinyfast.data``) work without a build. The
detector API (``load_detector``, ``Detector``) pulls in the engine, also on first use.
"""

import importlib

__all__ = ["Detector", "load_detector", "ops"]
__version__ = "0.1.0"


def __getattr__(name: str):
    if name == "ops":
        return importlib.import_module("tinyfast.ops")
    if name in ("Detector", "load_detector"):
        return getattr(importlib.import_module("tinyfast.engine.predictor"), name)
    raise AttributeError(f"module 'tinyfast' has no attribute {name!r}")
