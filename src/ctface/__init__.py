"""ctface: recognize which patient a head CT belongs to from the 3D face surface.

The library API (``ctface.api``)::

    import ctface
    gallery = ctface.Gallery.open("gallery.db")
    gallery.enroll(["scan_a/"], patient_id="P1")
    result = gallery.identify("scan_b.nii.gz")  # result.patient_id: "P1", or None

Verbs: ``load_ct``, ``detect_landmarks``, ``render_face``, ``face_template``, ``verify``,
``Gallery`` (``open``, ``enroll``, ``identify``, ``verify``). Errors are ``CtfaceError``
subclasses with a one-line message. Importing ctface loads neither torch nor FAISS: each verb
imports what it needs when first called.
"""

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

import lazy_loader

from ctface.errors import (
    CtfaceError,
    FailureCode,
    FailureToAcquire,
    GalleryError,
    InvalidInputError,
    MissingDataError,
    NoFaceError,
    OutputError,
)

try:
    __version__ = version("ctface")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__getattr__, __dir__, _lazy_all = lazy_loader.attach(
    __name__,
    submod_attrs={
        "api": [
            "Gallery",
            "acquire",
            "deface",
            "default_model",
            "detect_landmarks",
            "face_template",
            "load_ct",
            "render_face",
            "verify",
        ],
    },
)
__all__ = [
    *_lazy_all,
    "CtfaceError",
    "FailureCode",
    "FailureToAcquire",
    "GalleryError",
    "InvalidInputError",
    "MissingDataError",
    "NoFaceError",
    "OutputError",
    "__version__",
]

if TYPE_CHECKING:
    from ctface.api import Gallery as Gallery
    from ctface.api import acquire as acquire
    from ctface.api import deface as deface
    from ctface.api import default_model as default_model
    from ctface.api import detect_landmarks as detect_landmarks
    from ctface.api import face_template as face_template
    from ctface.api import load_ct as load_ct
    from ctface.api import render_face as render_face
    from ctface.api import verify as verify
