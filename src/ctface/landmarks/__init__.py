"""Facial landmarks in CT (the paper's CT-FAN, step 2) and the face frame they define.

Five landmarks: eye centres, nose tip, mouth corners (the patient's own right and left), in
patient LPS mm. ``detect_landmarks`` runs the trained 3-D CT-FAN, cross-checked by fitting the
face model to the skin surface; ``face_frame`` gives the render step its camera.
"""

from typing import TYPE_CHECKING

import lazy_loader

# names are imported on first use: `import ctface` and the gallery's database commands
# load neither torch nor FAISS
__getattr__, __dir__, _lazy_all = lazy_loader.attach(
    __name__,
    submod_attrs={
        "detect": ["Landmark", "LandmarkSet", "detect_landmarks", "face_frame"],
        "sampling": ["LANDMARKS"],
    },
)
__all__ = _lazy_all

if TYPE_CHECKING:
    from ctface.landmarks.detect import Landmark as Landmark
    from ctface.landmarks.detect import LandmarkSet as LandmarkSet
    from ctface.landmarks.detect import detect_landmarks as detect_landmarks
    from ctface.landmarks.detect import face_frame as face_frame
    from ctface.landmarks.sampling import LANDMARKS as LANDMARKS
