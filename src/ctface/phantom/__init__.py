"""Synthetic head-CT cohorts: ICT-FaceKit identities made solid, dressed and scanned."""

from typing import TYPE_CHECKING

import lazy_loader

from ctface.face_model import FaceModel, find_face_model, load_face_model

# names are imported on first use: `import ctface` and the gallery's database commands
# load neither torch nor FAISS
__getattr__, __dir__, _lazy_all = lazy_loader.attach(
    __name__,
    submod_attrs={
        "cohort": ["CohortSpec", "generate_cohort"],
        "generator": ["PhantomScan", "synthesize_scan"],
        "params": [
            "GeneratorStyle",
            "NuisanceConfig",
            "ScanParams",
            "SubjectParams",
            "draw_scan",
            "draw_subject",
        ],
    },
)
__all__ = [*_lazy_all, "FaceModel", "find_face_model", "load_face_model"]

if TYPE_CHECKING:
    from ctface.phantom.cohort import CohortSpec as CohortSpec
    from ctface.phantom.cohort import generate_cohort as generate_cohort
    from ctface.phantom.generator import PhantomScan as PhantomScan
    from ctface.phantom.generator import synthesize_scan as synthesize_scan
    from ctface.phantom.params import GeneratorStyle as GeneratorStyle
    from ctface.phantom.params import NuisanceConfig as NuisanceConfig
    from ctface.phantom.params import ScanParams as ScanParams
    from ctface.phantom.params import SubjectParams as SubjectParams
    from ctface.phantom.params import draw_scan as draw_scan
    from ctface.phantom.params import draw_subject as draw_subject
