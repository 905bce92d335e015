"""How re-identifiable a shared (de-identified) dataset is: the metrics of ``ctface audit``.

Each attack (a recognizer, ctface's or an independent one) scores every probe (a shared scan)
against every identity of a reference gallery of identified scans: ``AttackScores.scores``
(P probes x G identities, higher = more alike), a row of NaN where the attack could not process
the probe (a failure). ``mate[p]`` is the gallery column of probe p's own person, -1 when that
person is not in the reference.

The searches are those of ``ctface.evaluate.metrics`` (ISO/IEC 19795-1 terms) and are measured by
its functions: a failed mated probe is a miss (rank-1, rank-5 and TPIR count it); a failed
non-mated search returns no candidate and is left out of FPIR (it is neither a false positive
nor a search there). Ties rank the mate last (``Searches.mate_rank``).

Open-set TPIR at FPIR (rank 1): the threshold lets at most that share of the non-mated searches
return a candidate. The non-mated searches are the probes whose person is not in the reference
and, "leave-mate-out", every acquired mated probe searched again with its own mate's column left
out (its best score among the other identities), so a dataset whose every probe has a mate
still gives FPIR. The two searches of one probe are resampled together by the bootstrap.

Confidence intervals: exact (Clopper-Pearson) for rank-1 and rank-5; for rank-1, rank-5 and
TPIR also a percentile bootstrap over probes (drawn with replacement). Chance: an attacker who
guesses a random identity ranks the mate first with probability 1 / G; ``at_chance`` says the
observed rank-1 hits are no more than the 97.5 % quantile of Binomial(n_mated, 1 / G).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum, StrEnum
from pathlib import PurePath
from typing import Any

import numpy as np
from scipy.stats import binom

from ctface.errors import InvalidInputError
from ctface.evaluate.metrics import Searches, clopper_pearson, cmc, fnir_at_fpir

AUDIT_FPIR = (1e-2, 1e-3)
TOP_RANK = 5  # "top-5": the mate among the attacker's first five guesses
BOOTSTRAP = 1000
DIGITS = 6


def json_ready(value: Any) -> Any:
    """``value`` as strict JSON data: floats rounded (NaN and infinities as None), tuples as
    lists, enums as their values, numpy scalars as Python numbers, dict keys and paths as
    strings."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        v = float(value)
        return round(v, DIGITS) if np.isfinite(v) else None
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset | np.ndarray):
        items = sorted(value) if isinstance(value, set | frozenset) else value
        return [json_ready(v) for v in items]
    return value


@dataclass(frozen=True)
class AttackScores:
    """One attack's similarities: ``scores`` (P, G) with a NaN row for each probe the attack
    failed on; ``mate`` (P,) the gallery column of each probe's person or -1."""

    attack: str
    scores: np.ndarray
    mate: np.ndarray
    probe_ids: list[str]
    gallery_ids: list[str]

    def __post_init__(self) -> None:
        scores = np.asarray(self.scores, np.float64)
        mate = np.asarray(self.mate)
        p, g = len(self.probe_ids), len(self.gallery_ids)
        if scores.shape != (p, g) or g == 0:
            raise InvalidInputError(
                f"attack {self.attack!r}: scores have shape {scores.shape}, expected "
                f"({p} probes, {g} gallery identities), at least one identity"
            )
        if mate.shape != (p,) or not np.issubdtype(mate.dtype, np.integer):
            raise InvalidInputError(f"attack {self.attack!r}: mate must be {p} integers")
        if ((mate < -1) | (mate >= g)).any():
            raise InvalidInputError(f"attack {self.attack!r}: mate outside -1..{g - 1}")
        failed = np.isnan(scores).all(axis=1)
        if not np.isfinite(scores[~failed]).all():
            raise InvalidInputError(
                f"attack {self.attack!r}: scores must be finite, or NaN for a whole row "
                "(a probe the attack failed on)"
            )
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "mate", mate.astype(np.int64))

    @property
    def failed(self) -> np.ndarray:
        """(P,) bool: the probes the attack could not process."""
        return np.isnan(self.scores).all(axis=1)

    def mate_id(self, p: int) -> str | None:
        return self.gallery_ids[int(self.mate[p])] if self.mate[p] >= 0 else None


def audit_searches(a: AttackScores) -> Searches:
    """The attack's searches: the acquired probes in order (mated and non-mated), then a
    leave-mate-out non-mated search per acquired mated probe (its mate's score replaced by its
    lowest one, so the top score is the best among the other identities; none when the gallery
    has one identity). Probe p is subject p; the failed mated probes are ``failed_subject``."""
    failed = a.failed
    acquired = np.flatnonzero(~failed)
    mated = acquired[a.mate[acquired] >= 0]
    if a.scores.shape[1] > 1:
        left_out = a.scores[mated].copy()
        rows = np.arange(len(mated))
        left_out[rows, a.mate[mated]] = np.inf
        left_out[rows, a.mate[mated]] = left_out.min(axis=1)
    else:
        mated, left_out = mated[:0], a.scores[:0]
    subject = np.concatenate([acquired, mated])
    return Searches(
        scores=np.vstack([a.scores[acquired], left_out]),
        mate=np.concatenate([a.mate[acquired], np.full(len(mated), -1, np.int64)]),
        probe_subject=subject,
        probe_scan=subject,
        gallery_subject=np.arange(a.scores.shape[1]),
        failed_subject=np.flatnonzero(failed & (a.mate >= 0)),
    )


def _rates(s: Searches) -> np.ndarray:
    """rank-1, rank-5, then TPIR at each of ``AUDIT_FPIR``; NaN where the searches cannot
    give it (no mated probe; no non-mated search)."""
    out = np.full(2 + len(AUDIT_FPIR), np.nan)
    if s.attempts == 0:
        return out
    c = cmc(s, TOP_RANK)
    out[0], out[1] = c[0], c[TOP_RANK - 1]
    if (~s.mated).any():
        out[2:] = [1.0 - fnir_at_fpir(s, r).error for r in AUDIT_FPIR]
    return out


def _resample(s: Searches, probes: np.ndarray, rng: np.random.Generator) -> Searches:
    """``probes`` (the subjects of ``s``: one per probe) drawn with replacement; every search
    of a drawn probe (mated, leave-mate-out, failed) comes along as often as it was drawn.
    (``ctface.evaluate.results`` resamples subjects the same way, but importing it would bring
    the training code onto the library's runtime path.)"""
    times = np.zeros(int(probes.max()) + 1, np.int64)
    times[probes] = np.bincount(rng.integers(0, len(probes), len(probes)), minlength=len(probes))
    return s.rows(np.repeat(np.arange(len(s.mate)), times[s.probe_subject]),
                  np.repeat(np.arange(len(s.failed_subject)), times[s.failed_subject]))  # fmt: skip


def _bootstrap(s: Searches, n: int, seed: int) -> list[tuple[float, float]]:
    """Per rate of ``_rates``: the 2.5-97.5 percentile interval over ``n`` replicates that
    resample the probes with replacement (NaN where no replicate gives the rate)."""
    none = [(np.nan, np.nan)] * (2 + len(AUDIT_FPIR))
    probes = np.unique(np.concatenate([s.probe_subject, s.failed_subject]))
    if n <= 0 or len(probes) == 0:
        return none
    rng = np.random.default_rng(seed)
    reps = np.array([_rates(_resample(s, probes, rng)) for _ in range(n)])
    out = []
    for col in reps.T:
        ok = col[np.isfinite(col)]
        out.append(
            (float(np.percentile(ok, 2.5)), float(np.percentile(ok, 97.5)))
            if len(ok)
            else (np.nan, np.nan)
        )
    return out


@dataclass(frozen=True)
class TpirPoint:
    """Open-set identification at rank 1 where at most ``fpir`` of the non-mated searches
    return a candidate: ``tpir`` (mated probes whose mate is first and reaches the threshold;
    failures are misses) with its bootstrap CI; the threshold, the FPIR measured there, and
    ``resolved``: at least 1 / fpir non-mated searches (else the threshold is above every
    non-mated score and the point is a bound, not a measurement)."""

    fpir: float
    tpir: float
    ci95: tuple[float, float]
    threshold: float
    measured_fpir: float
    resolved: bool


@dataclass(frozen=True)
class AttackMetrics:
    """How well one attack re-identifies the shared scans (module docstring)."""

    attack: str
    n_probes: int
    n_mated: int  # probes whose person is in the reference (failed ones included)
    n_failed: int  # probes the attack could not process (mated or not)
    n_gallery: int
    n_nonmated_searches: int  # non-mated probes acquired + leave-mate-out searches
    rank1: float
    rank1_hits: int
    rank1_ci95: tuple[float, float]  # exact (Clopper-Pearson)
    rank1_boot95: tuple[float, float]
    rank5: float
    rank5_hits: int
    rank5_ci95: tuple[float, float]
    rank5_boot95: tuple[float, float]
    tpir: tuple[TpirPoint, ...]  # at AUDIT_FPIR
    chance_rank1: float  # 1 / n_gallery
    chance_interval: tuple[float, float]  # central 95 % of the hit rate of random guessing
    at_chance: bool  # rank-1 hits no more than random guessing's 97.5 % quantile
    rank1_probe_ids: frozenset[str] = field(default_factory=frozenset, repr=False)

    def tpir_at(self, fpir: float) -> TpirPoint:
        for t in self.tpir:
            if np.isclose(t.fpir, fpir):
                return t
        raise KeyError(f"no TPIR at FPIR {fpir:g} (measured at {AUDIT_FPIR})")

    def to_json(self) -> dict[str, Any]:
        """Strict JSON data (no NaN: null); the re-identified probes are left out (the
        per-scan risks list them)."""
        d = asdict(self)
        del d["rank1_probe_ids"]
        return dict(json_ready(d))


def chance_interval(n_mated: int, n_gallery: int) -> tuple[float, float]:
    """The central 95 % interval of the rank-1 hit rate of an attacker who guesses one of
    ``n_gallery`` identities at random for each of ``n_mated`` probes."""
    if n_mated == 0:
        return (np.nan, np.nan)
    lo, hi = binom.ppf([0.025, 0.975], n_mated, 1.0 / n_gallery)
    return float(lo) / n_mated, float(hi) / n_mated


def attack_metrics(a: AttackScores, *, n_boot: int = BOOTSTRAP, seed: int = 0) -> AttackMetrics:
    """Rank-1, rank-5 and TPIR at FPIR 1e-2 and 1e-3 of one attack, with their confidence
    intervals and the chance level (module docstring)."""
    s = audit_searches(a)
    n_mated = int((a.mate >= 0).sum())
    n_gallery = a.scores.shape[1]
    rates = _rates(s)
    boot = _bootstrap(s, n_boot, seed)
    ranks = s.mate_rank()
    hits1, hits5 = int((ranks == 1).sum()), int((ranks <= TOP_RANK).sum())
    points = []
    for i, r in enumerate(AUDIT_FPIR):
        if n_mated and (~s.mated).any():
            op = fnir_at_fpir(s, r)
            t, measured, resolved = op.threshold, op.measured_rate, op.resolved
        else:
            t, measured, resolved = np.nan, np.nan, False
        points.append(TpirPoint(r, float(rates[2 + i]), boot[2 + i], t, measured, resolved))
    lo_hi = chance_interval(n_mated, n_gallery)
    limit = binom.ppf(0.975, n_mated, 1.0 / n_gallery) if n_mated else 0.0
    hit_rows = s.probe_subject[s.mated][ranks == 1]
    return AttackMetrics(
        attack=a.attack,
        n_probes=len(a.probe_ids),
        n_mated=n_mated,
        n_failed=int(a.failed.sum()),
        n_gallery=n_gallery,
        n_nonmated_searches=int((~s.mated).sum()),
        rank1=float(rates[0]),
        rank1_hits=hits1,
        rank1_ci95=clopper_pearson(hits1, n_mated),
        rank1_boot95=boot[0],
        rank5=float(rates[1]),
        rank5_hits=hits5,
        rank5_ci95=clopper_pearson(hits5, n_mated),
        rank5_boot95=boot[1],
        tpir=tuple(points),
        chance_rank1=1.0 / n_gallery,
        chance_interval=lo_hi,
        at_chance=bool(hits1 <= limit),
        rank1_probe_ids=frozenset(a.probe_ids[int(p)] for p in hit_rows),
    )


class Risk(StrEnum):
    """A shared scan's re-identification risk, worst over the attacks (most severe first)."""

    REIDENTIFIED = "re-identified"  # some attack ranks the scan's own person first
    TOP5 = "top-5"  # some attack ranks the person 2nd to 5th, none first
    LOW = "low"  # no attack ranks the person in its first five (or every attack failed)
    NO_MATE = "no-mate"  # the person is not in the reference gallery

    @property
    def severity(self) -> int:
        """0 for the most severe; sorts scans worst first."""
        return list(Risk).index(self)


@dataclass(frozen=True)
class ProbeAttack:
    """One attack on one probe: its mate's rank (1 = best; None when the attack failed or the
    person is not in the reference) and score, and the attacker's first guess (None when it
    failed). Ties put the mate last, so a first guess tied with the mate is another identity."""

    rank: int | None
    mate_score: float | None
    top_id: str | None
    top_score: float | None


@dataclass(frozen=True)
class ProbeRisk:
    probe_id: str
    risk: Risk
    worst_rank: int | None  # the best mate rank any attack reached
    attacks: dict[str, ProbeAttack]

    def to_json(self) -> dict[str, Any]:
        return dict(json_ready(asdict(self)))


def _probe_attacks(a: AttackScores) -> list[ProbeAttack]:
    s = audit_searches(a)
    rank = np.zeros(len(a.probe_ids), np.int64)
    acquired = np.flatnonzero(~a.failed)
    rank[acquired[a.mate[acquired] >= 0]] = s.mate_rank()
    out = []
    for p, row in enumerate(a.scores):
        if a.failed[p]:
            out.append(ProbeAttack(None, None, None, None))
            continue
        best = np.flatnonzero(row == row.max())
        others = best[best != a.mate[p]]
        top = int(others[0] if len(others) else best[0])
        m = int(a.mate[p])
        out.append(ProbeAttack(int(rank[p]) if m >= 0 else None,
                               float(row[m]) if m >= 0 else None,
                               a.gallery_ids[top], float(row[top])))  # fmt: skip
    return out


def _same_probes(attacks: list[AttackScores]) -> None:
    first = attacks[0]
    names = [a.attack for a in attacks]
    if len(set(names)) < len(names):
        raise InvalidInputError(f"attack names must differ: {names}")
    for a in attacks[1:]:
        same = a.probe_ids == first.probe_ids and all(
            a.mate_id(p) == first.mate_id(p) for p in range(len(a.probe_ids))
        )
        if not same:
            raise InvalidInputError(
                f"attacks {first.attack!r} and {a.attack!r} do not search the same probes in "
                "the same order with the same mates"
            )


def per_probe_risk(attacks: list[AttackScores]) -> list[ProbeRisk]:
    """Each probe's risk (``Risk``), in probe order: per attack the mate's rank and score and
    the first guess; ``worst_rank`` the best mate rank over the attacks. Every attack must
    search the same probes, in the same order, with the same mates (by gallery id)."""
    if not attacks:
        raise InvalidInputError("no attack to assess")
    _same_probes(attacks)
    per = {a.attack: _probe_attacks(a) for a in attacks}
    out = []
    for p, pid in enumerate(attacks[0].probe_ids):
        found = {name: v[p] for name, v in per.items()}
        ranks = [x.rank for x in found.values() if x.rank is not None]
        worst = min(ranks) if ranks else None
        if attacks[0].mate[p] < 0:
            risk = Risk.NO_MATE
        elif worst == 1:
            risk = Risk.REIDENTIFIED
        elif worst is not None and worst <= TOP_RANK:
            risk = Risk.TOP5
        else:
            risk = Risk.LOW
        out.append(ProbeRisk(pid, risk, worst, found))
    return out


@dataclass(frozen=True)
class WorstCase:
    """The strongest attack (highest rank-1; ties: highest TPIR at FPIR 1e-2, then the first
    given), and "any attack": the share of mated probes that at least one attack ranks first
    (exact CI). Picking the best of several attacks after the fact favours the attacker a
    little; "any attack" is an upper bound of what these attacks reveal together."""

    attack: str
    metrics: AttackMetrics
    attacks: tuple[str, ...]
    any_rank1: float
    any_rank1_hits: int
    any_rank1_ci95: tuple[float, float]
    n_mated: int

    def to_json(self) -> dict[str, Any]:
        return {
            "attack": self.attack,
            "metrics": self.metrics.to_json(),
            "attacks": list(self.attacks),
            "any_attack": json_ready({"rank1": self.any_rank1, "rank1_hits": self.any_rank1_hits,
                                      "rank1_ci95": self.any_rank1_ci95,
                                      "n_mated": self.n_mated}),
        }  # fmt: skip


def _strength(m: AttackMetrics) -> tuple[float, float]:
    def v(x: float) -> float:
        return x if np.isfinite(x) else -1.0

    return v(m.rank1), v(m.tpir_at(AUDIT_FPIR[0]).tpir)


def worst_case(metrics: list[AttackMetrics]) -> WorstCase:
    """The strongest attack and the any-attack rank-1 (``WorstCase``); the attacks must be on
    the same probes (``per_probe_risk``)."""
    if not metrics:
        raise InvalidInputError("no attack to assess")
    n = metrics[0].n_mated
    if len({m.attack for m in metrics}) < len(metrics):
        raise InvalidInputError("attack names must differ")
    if any(m.n_mated != n for m in metrics):
        raise InvalidInputError("the attacks were not run on the same mated probes")
    worst = max(metrics, key=_strength)  # max keeps the first of equals
    hit_ids: set[str] = set()
    for m in metrics:
        hit_ids |= m.rank1_probe_ids
    hits = len(hit_ids)
    return WorstCase(
        attack=worst.attack,
        metrics=worst,
        attacks=tuple(m.attack for m in metrics),
        any_rank1=hits / n if n else np.nan,
        any_rank1_hits=hits,
        any_rank1_ci95=clopper_pearson(hits, n),
        n_mated=n,
    )
