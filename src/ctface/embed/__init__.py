"""The recognition model: face separation, depth embedding, one template per scan, training.

The paper's steps 5-9 (face separation, adjustment, ResNet embedding with triplet loss and
group sampling, transfer learning). ``FaceEmbedder.load().template(rendering)`` is the entry
point; ``ctface train ...`` reproduces the shipped weights (``weights/MODEL_CARD.md``).
"""

from typing import TYPE_CHECKING

import lazy_loader

# names are imported on first use: `import ctface` and the gallery's database commands
# load neither torch nor FAISS
__getattr__, __dir__, _lazy_all = lazy_loader.attach(
    __name__,
    submod_attrs={
        "embedder": ["FaceEmbedder", "Template"],
        "config": ["CONFIGS", "EmbedConfig"],
    },
)
__all__ = _lazy_all

if TYPE_CHECKING:
    from ctface.embed.config import CONFIGS as CONFIGS
    from ctface.embed.config import EmbedConfig as EmbedConfig
    from ctface.embed.embedder import FaceEmbedder as FaceEmbedder
    from ctface.embed.embedder import Template as Template
