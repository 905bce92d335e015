"""Decision thresholds from measured scores: the false-match rate (FMR) a threshold gives.

A calibration holds the genuine (same person, different scans) and impostor (different
people) template similarities of a cohort no model was trained or selected on, for one model
version. ``threshold(fmr)`` is the lowest score that at most a fraction ``fmr`` of the
impostor comparisons reach; ``fmr_at`` / ``fnmr_at`` give the measured rates at any score.
An FMR below 1 / (impostor comparisons) cannot be estimated and is refused.

The shipped calibration (``CALIBRATION``, beside the model weights) is rebuilt with
``ctface calibrate --cohort`` (the model card gives the cohort); ``ctface calibrate --gallery``
estimates one from a gallery's own patients (``gallery/site.py``) and stores it there.
``label`` says which one a decision used.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ctface.embed.shipped import CALIBRATION
from ctface.errors import GalleryError, InvalidInputError, MissingDataError
from ctface.files import write_text_atomic
from ctface.gallery.scores import pair_scores, rate_at, threshold_at_rate

FORMAT = "ctface-calibration-1"
DEFAULT_FMR = 1e-3


@dataclass(frozen=True)
class DecisionThreshold:
    """The threshold that decisions compare scores with (exact), the FMR it was chosen for, and
    where it comes from (``Calibration.describe``)."""

    threshold: float
    fmr: float
    fnmr_at_threshold: float  # measured share of genuine comparisons below it (rounded)
    impostor_comparisons: int
    genuine_comparisons: int
    calibration: str  # ``Calibration.label``

    def to_json(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "fmr": self.fmr,
            "fnmr_at_threshold": self.fnmr_at_threshold,
            "impostor_comparisons": self.impostor_comparisons,
            "genuine_comparisons": self.genuine_comparisons,
            "calibration": self.calibration,
        }


@dataclass(frozen=True)
class Calibration:
    model_version: str
    genuine: np.ndarray  # sorted similarities of same-person pairs of scans
    impostor: np.ndarray  # sorted similarities of different-person pairs
    provenance: dict[str, Any]
    source: str = ""  # where it was read from: a file name, or "gallery"

    @property
    def label(self) -> str:
        """Which calibration this is, as decisions print it."""
        p = self.provenance
        if self.source == "gallery":
            return (f"gallery ({p.get('date', '?')}, {len(self.genuine):,} genuine / "
                    f"{len(self.impostor):,} impostor pairs)")  # fmt: skip
        return f"{self.source or 'calibration'} ({p.get('cohort', '?')})"

    def threshold(self, fmr: float = DEFAULT_FMR) -> float:
        """Lowest score reached by at most ``fmr`` of the impostor comparisons."""
        n = len(self.impostor)
        if not 0.0 < fmr < 1.0:
            raise InvalidInputError(f"FMR must be between 0 and 1, got {fmr:g}.")
        if fmr * n < 1.0:
            raise InvalidInputError(
                f"FMR {fmr:g} is below what the calibration can measure: it has {n} impostor "
                f"comparisons (lowest FMR 1/{n} = {1 / n:.1e}); calibrate on a larger cohort."
            )
        return threshold_at_rate(self.impostor, fmr)

    def fmr_at(self, score: float) -> float:
        """Share of the impostor comparisons scoring ``score`` or more."""
        return rate_at(self.impostor, score, above=True)

    def fnmr_at(self, score: float) -> float:
        """Share of the genuine comparisons scoring below ``score``."""
        return rate_at(self.genuine, score, above=False)

    def check_model(self, model_version: str) -> None:
        if model_version != self.model_version:
            raise GalleryError(
                f"the calibration was made for model {self.model_version}, not {model_version}"
                ": recalibrate with `ctface calibrate` (or pass the matching --calibration)"
            )

    def describe(self, fmr: float) -> DecisionThreshold:
        """Threshold (exact: decisions compare with it) and provenance, as printed."""
        t = self.threshold(fmr)
        return DecisionThreshold(
            threshold=t,
            fmr=fmr,
            fnmr_at_threshold=round(self.fnmr_at(t), 4),
            impostor_comparisons=len(self.impostor),
            genuine_comparisons=len(self.genuine),
            calibration=self.label,
        )

    def save(self, path: Path) -> None:
        data = {
            "format": FORMAT,
            "model_version": self.model_version,
            "provenance": self.provenance,
            "genuine": [round(float(s), 5) for s in self.genuine],
            "impostor": [round(float(s), 5) for s in self.impostor],
        }
        write_text_atomic(path, json.dumps(data, separators=(",", ":")))

    @classmethod
    def load(cls, path: Path | None = None) -> Calibration:
        p = path or CALIBRATION
        if not p.is_file():
            raise MissingDataError(
                f"decision calibration not found: {p} (reinstall ctface, or make one with "
                "`ctface calibrate`)"
            )
        try:
            data = json.loads(p.read_text())
            if data.get("format") != FORMAT:
                raise ValueError(f"format {data.get('format')!r}, expected {FORMAT}")
            gen, imp = np.sort(data["genuine"]), np.sort(data["impostor"])
            if len(gen) == 0 or len(imp) == 0:
                raise ValueError("no scores")
        except (ValueError, KeyError, TypeError) as e:
            raise MissingDataError(f"decision calibration unreadable: {p} ({e})") from e
        name = f"shipped {p.name}" if p == CALIBRATION else p.name
        return cls(str(data["model_version"]), gen, imp, dict(data.get("provenance", {})), name)


def calibrate(
    templates: np.ndarray, subject: np.ndarray, model_version: str, provenance: dict[str, Any]
) -> Calibration:
    """Every pair of scans: same subject -> genuine, different subjects -> impostor."""
    genuine, impostor = pair_scores(templates, subject)
    if len(genuine) == 0 or len(impostor) == 0:
        raise InvalidInputError("calibration needs people with two or more scans, and 2+ people")
    info = {**provenance, "date": dt.date.today().isoformat(), "scans": len(subject),
            "subjects": len(np.unique(subject))}  # fmt: skip
    return Calibration(model_version, genuine, impostor, info)
