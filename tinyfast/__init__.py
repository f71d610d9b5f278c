"""tinyfast: tiny-object detection on TinyPerson with a compiled core."""

from tinyfast import ops

__all__ = ["Detector", "load_detector", "ops"]
__version__ = "0.1.0"


def __getattr__(name: str):
    # The detector API pulls in the engine: imported on first use, not with `import tinyfast`.
    if name in ("Detector", "load_detector"):
        from tinyfast.engine import predictor

        return getattr(predictor, name)
    raise AttributeError(f"module 'tinyfast' has no attribute {name!r}")
