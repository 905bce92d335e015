"""Optional parts of ctface, installed as pip extras: ``plot`` (matplotlib: QC pictures and the
evaluation report's figures), ``faiss`` (faiss-cpu: approximate search in large galleries),
``dask`` and ``ray`` (the distributed engines of ``ctface reconcile``), ``audit`` (dlib's face
recognizer and quickshear: ``ctface audit``'s independent attacks and ``--compare``),
``service`` (FastAPI, uvicorn, python-multipart, prometheus-client: ``ctface serve``),
``pacs`` (highdicom and dicomweb-client: ``ctface pacs``, DICOMweb and the SR it stores).
The core imports and runs without them; a feature that needs a missing one says which extra
to install (MissingDataError), and the gallery search falls back to exact search."""

from __future__ import annotations

import importlib
from types import ModuleType

from ctface.errors import MissingDataError

# module -> the extra that installs it
EXTRAS = {
    "matplotlib": "plot",
    "faiss": "faiss",
    "distributed": "dask",
    "ray": "ray",
    "dlib": "audit",
    "face_recognition_models": "audit",
    "quickshear": "audit",
    "fastapi": "service",
    "uvicorn": "service",
    "python_multipart": "service",
    "prometheus_client": "service",
    "highdicom": "pacs",
    "dicomweb_client": "pacs",
}


def optional(module: str) -> ModuleType | None:
    """``module`` imported, or None when it is not installed."""
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


def available(module: str) -> bool:
    return optional(module) is not None


def require(module: str, feature: str) -> ModuleType:
    """``module`` imported; MissingDataError naming the extra when it is not installed."""
    found = optional(module)
    if found is None:
        top = module.split(".")[0]
        raise MissingDataError(
            f"{feature} needs {top}, which is not installed: pip install 'ctface[{EXTRAS[top]}]'"
        )
    return found


def pyplot(feature: str) -> ModuleType:
    """``matplotlib.pyplot`` on the non-interactive Agg backend (needs the ``plot`` extra)."""
    require("matplotlib", feature).use("Agg")
    return importlib.import_module("matplotlib.pyplot")
