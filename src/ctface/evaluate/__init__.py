"""Biometric evaluation: identification and verification metrics on templates."""

from typing import TYPE_CHECKING

import lazy_loader

# names are imported on first use: `import ctface` and the gallery's database commands
# load neither torch nor FAISS
__getattr__, __dir__, _lazy_all = lazy_loader.attach(
    __name__,
    submod_attrs={
        "metrics": ["CrossScanResult", "cross_scan", "roc_auc"],
    },
)
__all__ = _lazy_all

if TYPE_CHECKING:
    from ctface.evaluate.metrics import CrossScanResult as CrossScanResult
    from ctface.evaluate.metrics import cross_scan as cross_scan
    from ctface.evaluate.metrics import roc_auc as roc_auc
