"""The ICT-FaceKit morphable face model (identity and expression), the identity source of the
phantoms and the shape the landmarks' face-model fit adjusts: loading (``model``), packing the
release's OBJ files into one npz (``pack``), and the five landmarks on its mesh (``landmarks``).
"""

from ctface.face_model.landmarks import FIVE_POINTS, five_landmarks
from ctface.face_model.model import FaceModel, find_face_model, load_face_model

__all__ = ["FIVE_POINTS", "FaceModel", "find_face_model", "five_landmarks", "load_face_model"]
