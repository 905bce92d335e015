"""Ingest: medical image files -> the canonical CT volume type.

``read_ct`` (native geometry), ``find_head`` (crop), ``canonicalize`` (LPS, isotropic),
``load_ct`` (all three).
"""

from ctface.ingest.canonical import DEFAULT_SPACING_MM, canonicalize
from ctface.ingest.head import find_head
from ctface.ingest.reader import load_ct, read_ct
from ctface.ingest.volume import CtVolume

__all__ = ["DEFAULT_SPACING_MM", "CtVolume", "canonicalize", "find_head", "load_ct", "read_ct"]
