"""The recognition model: face separation, depth embedding, one template per scan, training.

The paper's steps 5-9 (face separation, adjustment, ResNet embedding with triplet loss and
group sampling, transfer learning). ``FaceEmbedder.load().template(rendering)`` is the entry
point; ``ctface train ...`` reproduces the shipped weights (``weights/MODEL_CARD.md``).
"""

from ctface.embed.embedder import FaceEmbedder, Template
from ctface.embed.resnet import CONFIGS, EmbedConfig

__all__ = ["CONFIGS", "EmbedConfig", "FaceEmbedder", "Template"]
