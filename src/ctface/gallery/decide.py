"""Decisions at a calibrated threshold: 1:N identification (open set) and 1:1 verification.

Identification answers the best-ranked patient when their score reaches the threshold of the
chosen false-match rate (FMR, per comparison of two scans), else "not in gallery". With N
scans in the gallery a person who is not enrolled is compared N times, so the chance of a
false positive identification is about 1 - (1 - FMR)^N (``fpir_estimate``), printed with
every decision.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ctface.gallery.calibration import Calibration, DecisionThreshold
from ctface.gallery.search import Candidate, TemplateIndex


@dataclass(frozen=True)
class Identification:
    """The answer to "who is this?" for one probe.

    Attributes
    ----------
    candidates : list of Candidate
        The best-scoring patients, best first (rank, patient ID, score -1..1, best scan).
    patient_id : str or None
        The decision: the top candidate when their score reaches ``threshold.threshold``,
        else None ("not in gallery").
    threshold : DecisionThreshold
        The threshold, the FMR it was set at and the calibration it comes from.
    gallery_scans, gallery_patients : int
        The gallery's size when searched; ``to_json`` adds the estimated false-positive
        identification rate for it, 1 - (1 - FMR)^scans.
    search : str
        ``exact`` or the FAISS index used.
    """

    candidates: list[Candidate]
    patient_id: str | None  # the decision: None = not in gallery
    threshold: DecisionThreshold  # Calibration.describe(fmr)
    gallery_scans: int
    gallery_patients: int
    search: str

    def to_json(self) -> dict[str, Any]:
        fmr = float(self.threshold.fmr)
        decision = {
            "patient_id": self.patient_id,
            "in_gallery": self.patient_id is not None,
            **self.threshold.to_json(),
            "fpir_estimate": round(1.0 - (1.0 - fmr) ** self.gallery_scans, 6),
        }
        return {
            "decision": decision,
            "candidates": [c.to_json() for c in self.candidates],
            "gallery": {"patients": self.gallery_patients, "scans": self.gallery_scans,
                        "search": self.search},
        }  # fmt: skip

    def summary(
        self, scan: str, model_version: str, probe_quality: dict[str, Any], seconds: float
    ) -> dict[str, Any]:
        """What ``ctface identify --json`` prints and ``POST /v1/identify`` answers."""
        return {"scan": scan, **self.to_json(), "model_version": model_version,
                "probe_quality": probe_quality, "seconds": round(seconds, 2)}  # fmt: skip


def identify(
    probe: np.ndarray, index: TemplateIndex, calibration: Calibration, fmr: float, top_k: int = 5
) -> Identification:
    """Rank the gallery's patients for ``probe`` and decide at the FMR ``fmr`` threshold."""
    info = calibration.describe(fmr)
    candidates = index.rank_patients(probe, top_k)
    best = candidates[0] if candidates else None
    hit = best.patient_id if best is not None and best.score >= info.threshold else None
    n_patients = len(set(index.gallery.patient_ids))
    return Identification(
        candidates, hit, info, len(index.gallery.patient_ids), n_patients, index.kind
    )


@dataclass(frozen=True)
class Verification:
    """The answer to "are these two scans the same person?".

    Attributes
    ----------
    score : float
        The templates' similarity (dot product, -1..1).
    same_person : bool
        ``score >= threshold.threshold``.
    threshold : DecisionThreshold
        The threshold, the FMR it was set at and the calibration it comes from.
    fmr_at_score, fnmr_at_score : float
        The calibration's measured false-match rate at this score (impostor comparisons
        scoring this high or higher) and false non-match rate (genuine ones scoring lower).
    """

    score: float
    same_person: bool
    threshold: DecisionThreshold
    fmr_at_score: float  # measured share of impostor comparisons scoring this high or higher
    fnmr_at_score: float  # measured share of genuine comparisons scoring lower

    def to_json(self) -> dict[str, Any]:
        return {
            "score": round(self.score, 6),
            "decision": {"same_person": self.same_person, **self.threshold.to_json()},
            "fmr_at_score": self.fmr_at_score,
            "fnmr_at_score": self.fnmr_at_score,
        }


def verify(a: np.ndarray, b: np.ndarray, calibration: Calibration, fmr: float) -> Verification:
    """Are templates ``a`` and ``b`` the same person, at the FMR ``fmr`` threshold?"""
    info = calibration.describe(fmr)
    score = float(np.dot(a, b))
    return Verification(
        score,
        score >= info.threshold,
        info,
        round(calibration.fmr_at(score), 6),
        round(calibration.fnmr_at(score), 6),
    )
