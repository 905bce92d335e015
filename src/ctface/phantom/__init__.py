"""Synthetic head-CT cohorts: ICT-FaceKit identities made solid, dressed and scanned."""

from ctface.phantom.cohort import CohortSpec, generate_cohort
from ctface.phantom.face_model import FaceModel, find_face_model, load_face_model
from ctface.phantom.generator import PhantomScan, synthesize_scan
from ctface.phantom.params import NuisanceConfig, ScanParams, SubjectParams, draw_scan, draw_subject

__all__ = [
    "CohortSpec",
    "FaceModel",
    "NuisanceConfig",
    "PhantomScan",
    "ScanParams",
    "SubjectParams",
    "draw_scan",
    "draw_subject",
    "find_face_model",
    "generate_cohort",
    "load_face_model",
    "synthesize_scan",
]
