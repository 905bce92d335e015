"""Gallery: enrolled patients' face templates (SQLite), search, calibrated decisions.

``acquire`` (scan -> template through the quality gate), ``GalleryDatabase`` (the database),
``TemplateIndex`` (exact / FAISS search), ``Calibration`` (thresholds at a false-match rate),
``identify`` / ``verify`` (decisions).
"""

from typing import TYPE_CHECKING

import lazy_loader

# names are imported on first use: `import ctface` and the gallery's database commands
# load neither torch nor FAISS
__getattr__, __dir__, _lazy_all = lazy_loader.attach(
    __name__,
    submod_attrs={
        "acquire": ["Acquisition", "acquire"],
        "records": ["ScanRecord"],
        "calibration": ["DEFAULT_FMR", "Calibration", "calibrate"],
        "decide": ["Identification", "Verification", "identify", "verify"],
        "search": ["Candidate", "TemplateIndex"],
        "store": ["GalleryDatabase", "GalleryTemplates", "default_path"],
    },
)
__all__ = _lazy_all

if TYPE_CHECKING:
    from ctface.gallery.acquire import Acquisition as Acquisition
    from ctface.gallery.acquire import acquire as acquire
    from ctface.gallery.calibration import DEFAULT_FMR as DEFAULT_FMR
    from ctface.gallery.calibration import Calibration as Calibration
    from ctface.gallery.calibration import calibrate as calibrate
    from ctface.gallery.decide import Identification as Identification
    from ctface.gallery.decide import Verification as Verification
    from ctface.gallery.decide import identify as identify
    from ctface.gallery.decide import verify as verify
    from ctface.gallery.records import ScanRecord as ScanRecord
    from ctface.gallery.search import Candidate as Candidate
    from ctface.gallery.search import TemplateIndex as TemplateIndex
    from ctface.gallery.store import GalleryDatabase as GalleryDatabase
    from ctface.gallery.store import GalleryTemplates as GalleryTemplates
    from ctface.gallery.store import default_path as default_path
