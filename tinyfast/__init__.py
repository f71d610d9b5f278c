"""tinyfast: tiny-object detection on TinyPerson with a compiled core."""

from tinyfast import ops

__all__ = ["ops"]
__version__ = "0.1.0"
