"""Facial landmarks in CT (the paper's CT-FAN, step 2) and the face frame they define.

Five landmarks: eye centres, nose tip, mouth corners (the patient's own right and left), in
patient LPS mm. ``detect_landmarks`` runs the trained 3-D CT-FAN, cross-checked by fitting the
face model to the skin surface; ``face_frame`` gives the render step its camera.
"""

from ctface.landmarks.detect import Landmark, LandmarkSet, detect_landmarks, face_frame
from ctface.landmarks.sampling import LANDMARKS

__all__ = ["LANDMARKS", "Landmark", "LandmarkSet", "detect_landmarks", "face_frame"]
