"""tinyfast: tiny-object detection on TinyPerson with a compiled core.

``tinyfast.ops`` (and what builds on it) needs the compiled extension ``tinyfast._C``; it is imported on first
use, so that the pure-Python parts (``tinyfast.evaluation``, ``tinyfast.data``) work without a build.
"""

import importlib

__all__ = ["ops"]
__version__ = "0.1.0"


def __getattr__(name: str):
    if name == "ops":
        return importlib.import_module("tinyfast.ops")
    raise AttributeError(f"module 'tinyfast' has no attribute {name!r}")
