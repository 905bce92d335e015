"""Ingest: medical image files -> the canonical CT volume type."""

from ctface.ingest.volume import CtVolume

__all__ = ["CtVolume"]
