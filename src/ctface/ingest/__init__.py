"""Ingest: medical image files -> the canonical CT volume type.

``read_ct`` (native geometry), ``find_head`` (crop), ``canonicalize`` (LPS, isotropic),
``load_ct`` (all three).
"""

from typing import TYPE_CHECKING

import lazy_loader

# names are imported on first use: `import ctface` and the gallery's database commands
# load neither torch nor FAISS
__getattr__, __dir__, _lazy_all = lazy_loader.attach(
    __name__,
    submod_attrs={
        "canonical": ["DEFAULT_SPACING_MM", "canonicalize"],
        "head": ["find_head"],
        "reader": ["load_ct", "read_ct"],
        "volume": ["CtVolume"],
    },
)
__all__ = _lazy_all

if TYPE_CHECKING:
    from ctface.ingest.canonical import DEFAULT_SPACING_MM as DEFAULT_SPACING_MM
    from ctface.ingest.canonical import canonicalize as canonicalize
    from ctface.ingest.head import find_head as find_head
    from ctface.ingest.reader import load_ct as load_ct
    from ctface.ingest.reader import read_ct as read_ct
    from ctface.ingest.volume import CtVolume as CtVolume
