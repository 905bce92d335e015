"""Where the shipped recognition model and its decision calibration live (no torch import:
the gallery finds the calibration without loading the network)."""

from __future__ import annotations

from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
WEIGHTS = WEIGHTS_DIR / "embedder.pt"
CALIBRATION = WEIGHTS_DIR / "calibration.json"
PRETRAINED = WEIGHTS_DIR / "pretrained.pt"
