"""ctface: recognize which patient a head CT belongs to from the 3D face surface."""

from ctface.errors import CtfaceError

__version__ = "0.1.0"
__all__ = ["CtfaceError", "__version__"]
