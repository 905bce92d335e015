"""Biometric evaluation: identification and verification metrics on templates."""

from ctface.evaluate.metrics import CrossScanResult, cross_scan, roc_auc

__all__ = ["CrossScanResult", "cross_scan", "roc_auc"]
