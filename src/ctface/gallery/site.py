"""Site calibration: decision thresholds estimated from a gallery's own patients.

A threshold fixed on phantoms cannot be trusted on a hospital's scanners, but a gallery holds
what a calibration needs: patients scanned more than once. Two scans under one patient ID are a
genuine pair, two scans under different IDs an impostor pair -- when the IDs are right. Archives
have wrong IDs (the reason ctface exists), and a scan of person A filed under B spoils both sides:

- its pairs with A's scans are different-ID pairs that score like one person (~0.9, where true
  impostors reach ~0.6 in 10^4 pairs). At the top of the impostor scores, a few of them raise
  the threshold of every FMR below (their number / impostor pairs) to genuine level;
- its pairs with B's scans are same-ID pairs that score like two people (~0) and add their share
  to the FNMR at every threshold.

``estimate`` cleans both sides with a robust model of the impostor scores. Assumptions: (1)
wrong IDs are few (a few percent of scans): they touch well under 1 % of the different-ID pairs,
so the median and 99th percentile of those are the true impostors'; (2) the impostor tail beyond
the 99th percentile falls off like a normal's with the spread of the upper half (the shipped
model's 10,473 phantom impostor pairs, with masks opened away: the level of step 2 for that many
pairs 0.684, and one pair above it, 0.701: two unmasked people alike at 5 mm slices, which step
2 would exclude, the one loss the bound allows; before the opening the highest was 0.639); (3)
genuine pairs score above the bulk of the impostors (the shipped model: none of its 112
phantom genuine pairs below the impostors' 95th percentile). Steps:

1. Genuine side. ``floor`` = the 95th percentile of the different-ID scores. Same-ID pairs below
   it (inside the impostor bulk) are trimmed and listed as suspected label errors ("same ID,
   scores as two people": a misfiled or unusable scan). A misfiled pair survives with
   probability 0.05; a true genuine pair that low is trimmed too, which makes the FNMR
   optimistic by the share of such pairs (the list shows them).
2. Impostor side. A different-ID pair is excluded (listed: "different IDs, scores as one
   person") when it is an outlier against the impostor tail: above the score that, under the
   normal of assumption (2), ``ALPHA`` = 0.05 of the pairs tested would reach (a Bonferroni
   bound: about 1 in 20 calibrations loses one true impostor pair). Pairs tested: all
   different-ID pairs (``cutoff``), and, at ``ALPHA_STRANGER`` = 0.5, the pairs of the
   *stranger scans* (``stranger_cutoff``, lower: fewer pairs, larger alpha): scans all of whose
   same-ID pairs were trimmed in step 1 -- a misfiled scan scores like a stranger with every scan
   of the patient it is filed under, so its high different-ID pairs are most likely its own
   person's; at most ~0.5 true impostor pairs are lost there.
3. Thresholds at FMR 1e-2 / 1e-3 / 1e-4 (where at least 1 / FMR impostor pairs remain) from the
   cleaned impostor pairs, and the FMR and FNMR they give on the cleaned pairs, with exact
   (Clopper-Pearson) 95 % intervals.

A misfiled pair scoring below the cutoffs stays in, as it would without cleaning: the estimate is
never worse than the naive one by more than the (expected < 1) true impostor pairs excluded.
Pairs: every same-ID pair; every different-ID pair up to ``MAX_IMPOSTOR_PAIRS``, beyond that a
uniform random sample of that many (seed 0), which keeps the stored calibration small. Too few
patients with two or more scans (``MIN_REPEAT_PATIENTS``) is refused (GalleryError, exit 7).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import ndtri

from ctface.errors import GalleryError
from ctface.gallery.calibration import Calibration
from ctface.gallery.scores import FMR_POINTS, ImpostorTail, clopper_pearson
from ctface.gallery.store import GalleryTemplates

MIN_REPEAT_PATIENTS = 10  # patients with 2+ scans; 10 x 2 scans: 10 genuine, 180 impostor pairs
MAX_IMPOSTOR_PAIRS = 200_000
BULK = 0.95  # different-ID quantile below which a same-ID pair is trimmed
ALPHA = 0.05  # expected true impostor pairs above the cutoff, of all different-ID pairs
ALPHA_STRANGER = 0.5  # the same, of the stranger scans' pairs
MAX_LISTED = 500  # suspected label errors listed per kind (all are counted)
SAME_PERSON, TWO_PEOPLE = "different IDs, scores as one person", "same ID, scores as two people"


@dataclass(frozen=True)
class Pairs:
    """Pairs of scans (row indices into the templates) and their scores."""

    a: np.ndarray
    b: np.ndarray
    scores: np.ndarray

    def take(self, keep: np.ndarray) -> Pairs:
        return Pairs(self.a[keep], self.b[keep], self.scores[keep])


@dataclass(frozen=True)
class Suspect:
    """A pair whose score contradicts its labels."""

    kind: str  # SAME_PERSON or TWO_PEOPLE
    score: float
    scan_keys: tuple[int, int]
    patient_ids: tuple[str, str]

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "score": round(self.score, 5),
            "scan_keys": list(self.scan_keys),
            "patient_ids": list(self.patient_ids),
        }


@dataclass(frozen=True)
class SitePoint:
    """One operating point on the cleaned pairs."""

    target_fmr: float
    threshold: float
    false_matches: int
    fmr: float
    fmr_ci95: tuple[float, float]
    false_non_matches: int
    fnmr: float
    fnmr_ci95: tuple[float, float]

    def to_json(self) -> dict[str, Any]:
        def r(v: float) -> float:
            return float(f"{v:.4g}")

        return {"threshold": round(self.threshold, 5), "fmr": r(self.fmr),
                "fmr_ci95": [r(v) for v in self.fmr_ci95], "false_matches": self.false_matches,
                "fnmr": r(self.fnmr), "fnmr_ci95": [r(v) for v in self.fnmr_ci95],
                "false_non_matches": self.false_non_matches}  # fmt: skip


@dataclass(frozen=True)
class Levels:
    """The scores that decide exclusions (module docstring)."""

    floor: float  # same-ID pairs below: trimmed
    cutoff: float  # different-ID pairs at or above: excluded
    stranger_cutoff: float  # different-ID pairs of stranger scans at or above: excluded
    strangers: int  # scans all of whose same-ID pairs were trimmed

    def to_json(self) -> dict[str, Any]:
        return {"floor": round(self.floor, 5), "cutoff": round(self.cutoff, 5),
                "stranger_cutoff": round(self.stranger_cutoff, 5),
                "stranger_scans": self.strangers}  # fmt: skip


@dataclass(frozen=True)
class SiteCalibration:
    """The estimate: the calibration to store, what was excluded and why, operating points."""

    calibration: Calibration  # cleaned genuine and impostor scores, source "gallery"
    levels: Levels
    genuine_excluded: int
    impostor_excluded: int
    impostor_sampled: bool  # different-ID pairs are a random sample of all
    suspects: tuple[Suspect, ...]  # most suspicious first, at most MAX_LISTED per kind
    points: dict[str, SitePoint | None]  # by FMR ("0.01"); None: not resolvable

    def suspected_scans(self) -> list[tuple[int, int]]:
        """(scan key, listed suspect pairs it is in), most often first: a wrongly filed scan
        is in all its pairs with its own person's scans and its filed patient's scans."""
        n = Counter(k for s in self.suspects for k in s.scan_keys)
        return sorted(n.items(), key=lambda kv: (-kv[1], kv[0]))

    def to_json(self) -> dict[str, Any]:
        cal = self.calibration
        return {
            "source": "gallery",
            "calibration": cal.label,
            "date": cal.provenance.get("date"),
            "model_version": cal.model_version,
            "pairs": {
                "genuine": {"used": len(cal.genuine), "excluded": self.genuine_excluded},
                "impostor": {
                    "used": len(cal.impostor),
                    "excluded": self.impostor_excluded,
                    "sampled": self.impostor_sampled,
                },
            },
            "levels": self.levels.to_json(),
            "operating_points": {k: p.to_json() if p else None for k, p in self.points.items()},
            "suspected_label_errors": [s.to_json() for s in self.suspects],
            "suspected_scans": [{"scan_key": k, "pairs": n} for k, n in self.suspected_scans()],
        }


def same_id_pairs(patient: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every pair (i < j) of rows with the same patient ID."""
    order = np.argsort(patient, kind="stable")
    _, start, count = np.unique(patient[order], return_index=True, return_counts=True)
    a, b = [], []
    for s, n in zip(start[count > 1], count[count > 1], strict=True):
        i, j = np.triu_indices(n, k=1)
        rows = np.sort(order[s : s + n])
        a.append(rows[i])
        b.append(rows[j])
    if not a:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(a), np.concatenate(b)


def different_id_pairs(
    patient: np.ndarray, cap: int = MAX_IMPOSTOR_PAIRS, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Every pair of rows with different IDs, or a uniform random ``cap`` of them (and True)."""
    n = len(patient)
    if n * (n - 1) // 2 <= 2 * cap:
        i, j = np.triu_indices(n, k=1)
        keep = patient[i] != patient[j]
        if keep.sum() <= cap:
            return i[keep], j[keep], False
    rng = np.random.default_rng(seed)
    codes = np.zeros(0, np.int64)  # lo * n + hi, distinct, in the order drawn
    while len(codes) < cap:
        i, j = rng.integers(0, n, size=(2, 2 * cap))
        lo, hi = np.minimum(i, j), np.maximum(i, j)
        codes = np.concatenate([codes, (lo * n + hi)[patient[lo] != patient[hi]]])
        _, first = np.unique(codes, return_index=True)
        codes = codes[np.sort(first)]
    codes = codes[:cap]
    return codes // n, codes % n, True


def scores(vectors: np.ndarray, a: np.ndarray, b: np.ndarray, chunk: int = 16384) -> np.ndarray:
    """Cosine similarity of each pair of (unit) templates, in chunks."""
    out = np.empty(len(a), np.float64)
    for s in range(0, len(a), chunk):
        va, vb = vectors[a[s : s + chunk]], vectors[b[s : s + chunk]]
        out[s : s + chunk] = np.einsum("ij,ij->i", va, vb, dtype=np.float64)
    return out


def impostor_cutoff(impostor: np.ndarray, tested: int, alpha: float = ALPHA) -> float:
    """Score that ``alpha`` of ``tested`` impostor pairs reach under a normal fitted to the
    upper half of ``impostor`` (``ImpostorTail``; step 2 of the module docstring)."""
    tail = ImpostorTail.fit(impostor)
    return float(tail.median + tail.spread * -float(ndtri(alpha / max(tested, 1))))


def stranger_scans(gen: Pairs, trimmed: np.ndarray, n: int) -> np.ndarray:
    """Rows with same-ID pairs, all of them trimmed: scans that score like a stranger with every
    other scan of their patient (what a misfiled scan does)."""
    pairs = np.bincount(np.concatenate([gen.a, gen.b]), minlength=n)
    bad = np.bincount(np.concatenate([gen.a[trimmed], gen.b[trimmed]]), minlength=n)
    return (pairs > 0) & (bad == pairs)


def _check_size(patient: np.ndarray) -> None:
    _, counts = np.unique(patient, return_counts=True)
    repeat = int(np.sum(counts > 1))
    if repeat < MIN_REPEAT_PATIENTS:
        raise GalleryError(
            f"too few patients to calibrate on: {repeat} of {len(counts)} have two or more "
            f"scans, at least {MIN_REPEAT_PATIENTS} are needed"
        )


def _suspects(kind: str, pairs: Pairs, t: GalleryTemplates, high_first: bool) -> list[Suspect]:
    order = np.argsort(-pairs.scores if high_first else pairs.scores, kind="stable")
    out = []
    for n in order[:MAX_LISTED]:
        a, b = int(pairs.a[n]), int(pairs.b[n])
        keys = (int(t.scan_keys[a]), int(t.scan_keys[b]))
        out.append(Suspect(kind, float(pairs.scores[n]), keys,
                           (t.patient_ids[a], t.patient_ids[b])))  # fmt: skip
    return out


def operating_point(cal: Calibration, fmr: float) -> SitePoint | None:
    """Threshold at ``fmr`` and the rates it gives, or None when not resolvable."""
    if len(cal.impostor) * fmr < 1.0:
        return None
    t = cal.threshold(fmr)
    fm = int(len(cal.impostor) - np.searchsorted(cal.impostor, t, side="left"))
    fnm = int(np.searchsorted(cal.genuine, t, side="left"))
    n_i, n_g = len(cal.impostor), len(cal.genuine)
    return SitePoint(fmr, t, fm, fm / n_i, clopper_pearson(fm, n_i),
                     fnm, fnm / n_g, clopper_pearson(fnm, n_g))  # fmt: skip


def clean(gen: Pairs, imp: Pairs, n: int) -> tuple[np.ndarray, np.ndarray, Levels]:
    """Masks of the trimmed same-ID and the excluded different-ID pairs (steps 1 and 2)."""
    floor = float(np.quantile(imp.scores, BULK))
    trimmed = gen.scores < floor
    stranger = stranger_scans(gen, trimmed, n)
    tested = stranger[imp.a] | stranger[imp.b]
    cutoff = impostor_cutoff(imp.scores, len(imp.scores), ALPHA)
    low = impostor_cutoff(imp.scores, int(tested.sum()), ALPHA_STRANGER)
    excluded = (imp.scores >= cutoff) | (tested & (imp.scores >= low))
    return trimmed, excluded, Levels(floor, cutoff, low, int(stranger.sum()))


def estimate(
    t: GalleryTemplates, model_version: str, provenance: dict[str, Any] | None = None
) -> SiteCalibration:
    """Robust genuine and impostor scores of the gallery ``t`` (module docstring)."""
    patient = np.asarray(t.patient_ids)
    _check_size(patient)
    vec = np.asarray(t.vectors, np.float32)
    ga, gb = same_id_pairs(patient)
    ia, ib, sampled = different_id_pairs(patient)
    gen, imp = Pairs(ga, gb, scores(vec, ga, gb)), Pairs(ia, ib, scores(vec, ia, ib))
    trimmed, excluded, levels = clean(gen, imp, len(patient))
    if trimmed.all():
        raise GalleryError("every same-ID pair of scans scores like two different people")
    suspects = (_suspects(SAME_PERSON, imp.take(excluded), t, True)
                + _suspects(TWO_PEOPLE, gen.take(trimmed), t, False))  # fmt: skip
    n_gen, n_imp = int(trimmed.sum()), int(excluded.sum())
    prov = {**(provenance or {}), "source": "gallery", "date": dt.date.today().isoformat(),
            "model_version": model_version, "gallery_revision": t.revision,
            "scans": len(patient), "patients": len(set(t.patient_ids)),
            "genuine_pairs": {"used": len(gen.scores) - n_gen, "excluded": n_gen},
            "impostor_pairs": {"used": len(imp.scores) - n_imp, "excluded": n_imp,
                               "sampled": sampled},
            **levels.to_json(),
            "suspected_label_errors": [s.to_json() for s in suspects]}  # fmt: skip
    cal = Calibration(model_version, np.sort(gen.scores[~trimmed]),
                      np.sort(imp.scores[~excluded]), prov, "gallery")  # fmt: skip
    points = {f"{r:g}": operating_point(cal, r) for r in FMR_POINTS}
    return SiteCalibration(cal, levels, n_gen, n_imp, sampled, tuple(suspects), points)
