"""Reconciling an archive: which scans are filed under the wrong patient, which patients exist
under two IDs, and whom the scans without an ID belong to -- from the templates of every scan
(a gallery enrolled from the archive by its DICOM PatientIDs).

Three steps, each a test with its own threshold and its own expected number of false findings
(README "Reconcile an archive" shows the numbers for 10^3 - 10^6 scans):

1. **Within each ID** (``split``). The scans of one patient ID are linked where their score
   reaches ``link`` = the score impostor pairs reach 1 % of the time (``LINK_RATE``): a scan of
   another person filed under the ID links to each of its scans with probability <= 1 %. An ID
   whose link graph falls apart is a split: the largest group of linked scans is the patient
   (the *core*), the others are odd ones out. Between two groups of one scan each (an ID with
   two scans) the one that matches another patient is the odd one; if neither does, both are
   listed and none is called the odd one. A genuine scan is isolated when it is a bad scan
   (tube, mask, motion): about G(link)/2 per scan, with G the genuine scores' share below
   ``link`` (half a pair added: never 0), so false splits ~ sum over IDs with 2+ scans of
   k * G(link) / 2: with the shipped calibration (0.5 of 113) 22 at 10^4 scans, 221 at 10^5.
   Where that exceeds ``MAX_FALSE_UNMATCHED`` only the splits whose odd scans match another
   patient (step 3) are listed -- their false ones are counted with the matches -- and the
   others are counted (``all_splits`` lists them; a site calibration with many genuine pairs
   measures G better).
2. **Patients** (``merge``). Each ID is one template: the normalized mean of its core's
   templates (several scans of a patient average out their noise: a person's means agree more
   than two single scans). Every pair of IDs is compared; a pair at or above ``match`` is a merge.
3. **Scans without an ID** (``unlabeled``; an empty or placeholder PatientID) and the odd ones
   out are compared with every patient: the best one at or above ``match`` is suggested.

``match`` is set at the false-match rate ``fmr`` per comparison; by default (``fmr`` None)
``EXPECTED_FALSE_MATCHES / comparisons``, at most ``DEFAULT_FMR``: at most ten false merges or
suggestions expected in the whole archive, however large (a list a person can review). Rates
that low are beyond any measured impostor pairs: they come from ``ImpostorTail``s of the
archive's own pairs of different IDs (a random sample of up to ``site.MAX_IMPOSTOR_PAIRS``;
wrong IDs are too few to move their median and 99th percentile), one per kind of comparison:
scan with scan (``link``), patient mean with patient mean (``match``: merges), scan with patient
mean (``suggest``: odd and unlabeled scans) -- means of several scans lose their noise but not
what two people share, so they reach high scores more often than single scans. An archive with
fewer than ``MIN_ARCHIVE_PAIRS`` patient pairs uses the calibration's single-scan pairs for all
three. Expected false findings = false splits + patient pairs x rate(match) + scan-patient
comparisons x rate(suggest).

Findings are ranked by evidence: -log10 of the chance the scores would be seen without the
error (the genuine share below a split's score, times the impostor rate of its suggested match;
the impostor rate of a merge's or unlabeled scan's score). Nothing is written anywhere: the
findings are a worklist for a person.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

from ctface.gallery.calibration import DEFAULT_FMR, Calibration
from ctface.gallery.scores import ImpostorTail
from ctface.gallery.site import different_id_pairs
from ctface.gallery.store import GalleryTemplates

UNLABELED_PREFIX = "unlabeled:"  # gallery ID of a scan without a PatientID: + its study UID
PLACEHOLDER_IDS = frozenset({"", "0", "-", "?", "NA", "N/A", "NONE", "NULL", "UNKNOWN", "UNK",
                             "ANON", "ANONYMOUS", "NOID", "NO ID", "TEMP", "XXX"})  # fmt: skip
LINK_RATE = 0.01  # the impostor rate at the link threshold (step 1)
MAX_FALSE_UNMATCHED = 10.0  # expected false splits up to which unmatched splits are listed
EXPECTED_FALSE_MATCHES = 10.0  # the default FMR's expected false merges and suggestions
MIN_ARCHIVE_PAIRS = 2000  # patient pairs from which the archive's own impostor tail is used
BLOCK_FLOATS = 1 << 25  # scores per block of the all-pairs products (128 MB)
TILE_ROWS = 2048  # rows per tile of the all-pairs products


def is_unlabeled(patient_id: str) -> bool:
    """A scan without a usable PatientID: empty, a placeholder, or enrolled as unlabeled."""
    pid = patient_id.strip()
    return pid.upper() in PLACEHOLDER_IDS or pid.startswith(UNLABELED_PREFIX)


def archive_patient_id(patient_id: str, study_uid: str) -> str:
    """The gallery ID of an archive scan: its PatientID, or ``unlabeled:<study UID>`` for an
    empty or placeholder one (scans under "UNKNOWN" are not one patient)."""
    return f"{UNLABELED_PREFIX}{study_uid}" if is_unlabeled(patient_id) else patient_id.strip()


class FindingKind(StrEnum):
    SPLIT = "split"  # an ID whose scans are not one person: a scan filed under a wrong ID
    MERGE = "merge"  # two IDs whose scans are one person
    UNLABELED = "unlabeled"  # a scan without an ID: its best match, or not in the archive


class Role(StrEnum):
    """What a scan is in a finding."""

    ODD = "odd one out"  # filed under the ID, does not match its other scans
    UNDECIDED = "does not match the other"  # two groups, neither matches another patient
    FILED = "filed patient"  # the ID's own (core) scans
    SUGGESTED = "suggested patient"  # scans of the patient the odd or unlabeled scan matches
    MERGED = "same person"  # a merge: scans of either ID
    UNLABELED = "no patient ID"


@dataclass(frozen=True)
class FindingScan:
    row: int  # row in the templates
    role: Role


@dataclass(frozen=True)
class Finding:
    kind: FindingKind
    score: float  # the similarity that decided it (split: the odd scan's best with its ID)
    evidence: float  # -log10 of the chance of these scores without the error
    patient_ids: tuple[str, ...]
    suggested_patient_id: str | None
    scans: tuple[FindingScan, ...]
    match_score: float | None = None  # split, unlabeled: the best other patient's score
    check: str = ""  # what a person should check


@dataclass(frozen=True)
class Levels:
    """The thresholds and what each test expects to find falsely."""

    link: float
    match: float  # merges: two patients' mean templates
    suggest: float  # suggestions: a scan (odd or unlabeled) and a patient's mean template
    fmr: float  # per comparison, at ``match`` and ``suggest``
    tail_source: str  # "archive" or the calibration's label
    split_tests: int  # IDs with 2+ scans
    comparisons: int  # patient pairs + (unlabeled and odd scans) x patients
    expected_false_splits: float  # of the listed splits
    expected_false_matches: float
    unmatched_splits_hidden: int  # splits without a match elsewhere, not listed (see reconcile)

    def to_json(self) -> dict[str, Any]:
        return {"link_threshold": round(self.link, 5), "match_threshold": round(self.match, 5),
                "suggest_threshold": round(self.suggest, 5),
                "fmr": float(f"{self.fmr:.3g}"), "impostor_tail": self.tail_source,
                "split_tests": self.split_tests, "comparisons": self.comparisons,
                "expected_false_splits": round(self.expected_false_splits, 3),
                "expected_false_matches": round(self.expected_false_matches, 3),
                "unmatched_splits_hidden": self.unmatched_splits_hidden}  # fmt: skip


@dataclass(frozen=True)
class _Tails:
    """Impostor tails of the three kinds of comparison (module docstring)."""

    scan: ImpostorTail  # scan with scan: the link threshold
    merge: ImpostorTail  # patient mean with patient mean
    suggest: ImpostorTail  # scan with patient mean
    source: str


@dataclass(frozen=True)
class Reconciliation:
    findings: list[Finding]  # strongest evidence first
    levels: Levels
    patient_ids: list[str]  # row -> gallery ID
    scan_keys: np.ndarray  # row -> scan key
    patients: int  # labeled IDs
    unlabeled: int  # scans without an ID
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def expected_false_findings(self) -> float:
        return self.levels.expected_false_splits + self.levels.expected_false_matches


@dataclass
class _Patient:
    pid: str
    groups: list[np.ndarray]  # linked groups of rows, largest first
    link_scores: list[float]  # each group's best score with the ID's other scans
    core: int | None = None  # the group that is the patient (None: undecided)

    @property
    def odd(self) -> list[int]:
        return [k for k in range(len(self.groups)) if k != self.core]


def reconcile(
    t: GalleryTemplates,
    calibration: Calibration,
    fmr: float | None = None,
    all_splits: bool = False,
) -> Reconciliation:
    """The findings of the templates ``t`` (module docstring). ``fmr``: the per-comparison
    false-match rate of merges and suggestions (default: at most ten false ones expected).
    Splits whose odd scans match no other patient are listed while the expected number of
    false splits is at most ``MAX_FALSE_UNMATCHED`` (or ``all_splits``); beyond, only counted."""
    vec = np.asarray(t.vectors, np.float32)
    ids = list(t.patient_ids)
    unlabeled = np.array([i for i, p in enumerate(ids) if is_unlabeled(p)], np.int64)
    by_id: dict[str, list[int]] = {}
    for i, p in enumerate(ids):
        if not is_unlabeled(p):
            by_id.setdefault(p, []).append(i)
    first = np.array([r[0] for _, r in sorted(by_id.items())], np.int64)
    archive_tail = len(first) * (len(first) - 1) // 2 >= MIN_ARCHIVE_PAIRS
    scan_tail = _archive_tail(vec[first], vec[first]) if archive_tail else None
    link = (scan_tail or ImpostorTail.fit(calibration.impostor)).threshold(LINK_RATE)
    patients = [_split(p, np.array(r, np.int64), vec, link) for p, r in sorted(by_id.items())]
    decided = _centroids(patients, vec)  # before the ties are resolved
    tails = _tails(vec, decided, calibration, scan_tail)
    odd_scans = sum(len(p.groups[k]) for p in patients for k in p.odd)
    m = len(patients)
    pairs, probes = m * (m - 1) // 2, (odd_scans + len(unlabeled)) * m
    comparisons = pairs + probes
    rate = (
        fmr if fmr is not None else min(DEFAULT_FMR, EXPECTED_FALSE_MATCHES / max(comparisons, 1))
    )
    match, suggest = tails.merge.threshold(rate), tails.suggest.threshold(rate)
    _resolve_undecided(patients, vec, decided, suggest)
    c = _centroids(patients, vec)
    multi = [sum(map(len, p.groups)) for p in patients if sum(map(len, p.groups)) > 1]
    false_splits = float(sum(multi) * genuine_below(calibration, link) / 2)
    splits = _splits(patients, vec, c, calibration, tails.suggest, suggest)
    hidden = []
    if false_splits > MAX_FALSE_UNMATCHED and not all_splits:
        hidden = [f for f in splits if f.suggested_patient_id is None]
        splits, false_splits = [f for f in splits if f.suggested_patient_id is not None], 0.0
    false_matches = (pairs * float(tails.merge.rate(match))
                     + probes * float(tails.suggest.rate(suggest)))  # fmt: skip
    levels = Levels(link, match, suggest, rate, tails.source, len(multi), comparisons,
                    false_splits, false_matches, len(hidden))  # fmt: skip
    findings = (splits + _merges(c, match, tails.merge)
                + _unlabeled(unlabeled, vec, c, tails.suggest, suggest))  # fmt: skip
    findings.sort(key=lambda f: (-f.evidence, f.kind, f.patient_ids))
    return Reconciliation(findings, levels, ids, np.asarray(t.scan_keys), m, len(unlabeled))


def _archive_tail(a: np.ndarray, b: np.ndarray) -> ImpostorTail:
    """The impostor tail of rows of ``a`` with rows of ``b`` of other indices (row i of both is
    one patient): a random sample of up to ``site.MAX_IMPOSTOR_PAIRS`` pairs of different IDs,
    almost all of different people (wrong IDs are too few to move the median and the 99th
    percentile)."""
    i, j, _ = different_id_pairs(np.arange(len(a)))
    return ImpostorTail.fit(np.einsum("ij,ij->i", a[i], b[j], dtype=np.float64))


def _tails(
    vec: np.ndarray, c: _Centroids, calibration: Calibration, scan_tail: ImpostorTail | None
) -> _Tails:
    """The archive's own tails where it has ``MIN_ARCHIVE_PAIRS`` patient pairs: scans with
    scans (each ID's first scan), patient means with patient means, a scan with another
    patient's mean (averaging several scans removes their noise but not what two people share:
    mean templates of different people reach high scores more often than single scans). Else
    the calibration's single-scan pairs for all three."""
    if scan_tail is None or len(c.ids) * (len(c.ids) - 1) // 2 < MIN_ARCHIVE_PAIRS:
        tail = scan_tail or ImpostorTail.fit(calibration.impostor)
        return _Tails(tail, tail, tail, "archive" if scan_tail else calibration.label)
    rows = np.array([r[0] for r in c.rows], np.int64)  # a scan of each decided patient
    return _Tails(scan_tail, _archive_tail(c.vectors, c.vectors),
                  _archive_tail(vec[rows], c.vectors), "archive")  # fmt: skip


def _split(pid: str, rows: np.ndarray, vec: np.ndarray, link: float) -> _Patient:
    """Link the ID's scans; the largest linked group is the core, unless groups tie."""
    if len(rows) == 1:
        return _Patient(pid, [rows], [np.nan], 0)
    sim = vec[rows] @ vec[rows].T
    if bool(np.all(sim >= link)):  # the common case: every pair linked
        return _Patient(pid, [rows], [np.nan], 0)
    n, labels = connected_components(csr_matrix(sim >= link), directed=False)
    order = sorted(range(n), key=lambda k: -int(np.sum(labels == k)))
    groups = [rows[labels == k] for k in order]
    scores = [float(sim[np.ix_(labels == k, labels != k)].max()) if n > 1 else np.nan
              for k in order]  # fmt: skip
    tie = n > 1 and len(groups[0]) == len(groups[1])
    return _Patient(pid, groups, scores, None if tie else 0)


@dataclass(frozen=True)
class _Centroids:
    ids: list[str]
    vectors: np.ndarray  # (M, D) unit
    rows: list[np.ndarray]  # each patient's core rows


def _unit(v: np.ndarray) -> np.ndarray:
    """The normalized mean of unit templates (one scan: itself)."""
    m = v.reshape(-1, v.shape[-1]).mean(axis=0)
    return (m / max(float(np.linalg.norm(m)), 1e-12)).astype(np.float32)


def _centroids(patients: list[_Patient], vec: np.ndarray) -> _Centroids:
    keep = [(p.pid, p.groups[p.core]) for p in patients if p.core is not None]
    if not keep:
        return _Centroids([], np.zeros((0, vec.shape[1]), np.float32), [])
    return _Centroids([k for k, _ in keep], np.stack([_unit(vec[r]) for _, r in keep]),
                      [r for _, r in keep])  # fmt: skip


def _nearest(
    probes: np.ndarray, c: _Centroids, exclude: list[str] | None = None
) -> list[tuple[str, float]]:
    """For each probe (unit vector) the nearest patient other than ``exclude[i]``, and the
    score; blocked products (``BLOCK_FLOATS`` scores at a time)."""
    if not c.ids:
        return [("", -1.0)] * len(probes)
    column = {pid: k for k, pid in enumerate(c.ids)}
    block = max(1, BLOCK_FLOATS // len(c.ids))
    out: list[tuple[str, float]] = []
    for s0 in range(0, len(probes), block):
        sim = probes[s0 : s0 + block] @ c.vectors.T
        for r, pid in enumerate((exclude or [])[s0 : s0 + block]):
            if pid in column:
                sim[r, column[pid]] = -np.inf
        best = sim.argmax(axis=1)
        out += [(c.ids[k], float(sim[r, k])) for r, k in enumerate(best)]
    return out


def _resolve_undecided(
    patients: list[_Patient], vec: np.ndarray, c: _Centroids, match: float
) -> None:
    """Groups that tie (two single scans): the ones matching another patient are odd; the one
    left, when exactly one is, is the core."""
    for p in patients:
        if p.core is None:
            probes = np.stack([_unit(vec[g]) for g in p.groups])
            near = _nearest(probes, c, [p.pid] * len(p.groups))
            own = [k for k, (_, score) in enumerate(near) if score < match]
            p.core = own[0] if len(own) == 1 else None


def _scan_refs(rows: Iterable[int], role: Role) -> tuple[FindingScan, ...]:
    return tuple(FindingScan(int(r), role) for r in rows)


def genuine_below(calibration: Calibration, score: float) -> float:
    """The genuine share below ``score``, never 0 (half a pair added)."""
    n = len(calibration.genuine)
    k = int(np.searchsorted(calibration.genuine, score, side="left"))
    return (k + 0.5) / (n + 1)


def _evidence(p: float) -> float:
    return float(-np.log10(max(p, 1e-300)))


def _splits(
    patients: list[_Patient],
    vec: np.ndarray,
    c: _Centroids,
    calibration: Calibration,
    tail: ImpostorTail,
    match: float,
) -> list[Finding]:
    """One finding per odd group; an ID left undecided is one finding with all its groups."""
    todo = [
        (p, k)
        for p in patients
        for k in (p.odd if p.core is not None else [0] if len(p.groups) > 1 else [])
    ]
    if not todo:
        return []
    probes = np.stack([_unit(vec[p.groups[k]]) for p, k in todo])
    rows_of = dict(zip(c.ids, c.rows, strict=True))
    out = []
    for (p, k), (other, best) in zip(todo, _nearest(probes, c, [p.pid for p, _ in todo]),
                                     strict=True):  # fmt: skip
        score = p.link_scores[k]
        hit = other if best >= match and p.core is not None else None
        p_value = genuine_below(calibration, score) * (float(tail.rate(best)) if hit else 1)
        if p.core is not None:
            scans = _scan_refs(p.groups[k], Role.ODD) + _scan_refs(p.groups[p.core], Role.FILED)
        else:
            scans = tuple(s for g in p.groups for s in _scan_refs(g, Role.UNDECIDED))
        if hit:
            scans += _scan_refs(rows_of[hit], Role.SUGGESTED)
        check = (
            f"is this scan {hit}'s, filed under {p.pid}?"
            if hit
            else f"which of these scans are {p.pid}'s? (headers, acquisition, faces)"
        )
        out.append(Finding(FindingKind.SPLIT, score, _evidence(p_value),
                           (p.pid, hit) if hit else (p.pid,), hit, scans,
                           best if np.isfinite(best) else None, check))  # fmt: skip
    return out


def _merges(c: _Centroids, match: float, tail: ImpostorTail) -> list[Finding]:
    out = []
    for i, j, s in all_pairs_above(c.vectors, match):
        a, b = c.ids[i], c.ids[j]
        scans = _scan_refs(c.rows[i], Role.MERGED) + _scan_refs(c.rows[j], Role.MERGED)
        out.append(Finding(FindingKind.MERGE, s, _evidence(float(tail.rate(s))), (a, b), None,
                           scans, None, f"are {a} and {b} one person under two IDs?"))  # fmt: skip
    return out


def _unlabeled(
    rows: np.ndarray, vec: np.ndarray, c: _Centroids, tail: ImpostorTail, match: float
) -> list[Finding]:
    rows_of = dict(zip(c.ids, c.rows, strict=True))
    out = []
    for r, (other, best) in zip(rows.tolist(), _nearest(vec[rows], c), strict=True):
        hit = other if best >= match else None
        scans = _scan_refs([r], Role.UNLABELED)
        if hit:
            scans += _scan_refs(rows_of[hit], Role.SUGGESTED)
        evidence = _evidence(float(tail.rate(best))) if hit else 0.0
        check = (f"is this {hit}? (file it under that ID if so)" if hit
                 else "not in the archive: whose scan is it?")  # fmt: skip
        out.append(Finding(FindingKind.UNLABELED, best, evidence, (), hit, scans,
                           best if np.isfinite(best) else None, check))  # fmt: skip
    return out


def pair_tiles(n: int) -> list[tuple[int, int, int, int]]:
    """The upper triangle of an n x n score matrix as tiles (rows i0:i1, columns j0:j1) of
    ``TILE_ROWS`` rows and at most ``BLOCK_FLOATS`` scores each: a tile's columns are read
    once per ``TILE_ROWS`` rows, whatever n."""
    cols = max(TILE_ROWS, BLOCK_FLOATS // TILE_ROWS)
    return [(i0, min(i0 + TILE_ROWS, n), j0, min(j0 + cols, n))
            for i0 in range(0, n, TILE_ROWS) for j0 in range(i0, n, cols)]  # fmt: skip


def pairs_above(
    vectors: np.ndarray, threshold: float, tiles: list[tuple[int, int, int, int]]
) -> list[tuple[int, int, float]]:
    """The pairs i < j inside ``tiles`` whose dot product reaches ``threshold``, highest first."""
    hits: list[tuple[int, int, float]] = []
    for i0, i1, j0, j1 in tiles:
        sim = vectors[i0:i1] @ vectors[j0:j1].T
        mask = sim >= threshold
        if j0 == i0:  # a diagonal tile: only j > i
            mask = np.triu(mask, k=1)
        ii, jj = np.nonzero(mask)
        hits += [(i0 + int(i), j0 + int(j), float(sim[i, j])) for i, j in zip(ii, jj, strict=True)]
    return sorted(hits, key=lambda h: -h[2])


def all_pairs_above(vectors: np.ndarray, threshold: float) -> list[tuple[int, int, float]]:
    """Every pair i < j of rows whose dot product reaches ``threshold``, highest first: tiled
    matrix products over the upper triangle (exact; N^2 / 2 dot products, measured in
    ``benchmarks/reconcile.py``)."""
    return pairs_above(vectors, threshold, pair_tiles(len(vectors)))
