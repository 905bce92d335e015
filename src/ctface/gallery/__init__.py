"""Gallery: enrolled patients' face templates (SQLite), search, calibrated decisions.

``acquire`` (scan -> template through the quality gate), ``Gallery`` (the database),
``TemplateIndex`` (exact / FAISS search), ``Calibration`` (thresholds at a false-match rate),
``identify`` / ``verify`` (decisions).
"""

from ctface.gallery.acquire import Acquisition, ScanRecord, acquire
from ctface.gallery.calibration import DEFAULT_FMR, Calibration, calibrate
from ctface.gallery.decide import Identification, Verification, identify, verify
from ctface.gallery.search import Candidate, TemplateIndex
from ctface.gallery.store import Gallery, GalleryTemplates, default_path

__all__ = [
    "DEFAULT_FMR", "Acquisition", "Calibration", "Candidate", "Gallery", "GalleryTemplates",
    "Identification", "ScanRecord", "TemplateIndex", "Verification", "acquire", "calibrate",
    "default_path", "identify", "verify",
]  # fmt: skip
