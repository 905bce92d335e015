"""Failures to acquire count as misses (ISO/IEC 19795-1 transaction level), with exact CIs."""

from __future__ import annotations

import numpy as np
import pytest

from ctface.evaluate import cross_scan
from ctface.evaluate.metrics import (
    Searches,
    clopper_pearson,
    cmc,
    failed_probe_count,
    fnir_at_fpir,
    pair_scores,
    summary,
)
from ctface.evaluate.protocols import FoldEmbeddings, searches
from ctface.evaluate.results import _resample


def _templates(subjects: int, scans: int, noise: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(subjects, 16))
    t = centres[np.repeat(np.arange(subjects), scans)] + noise * rng.normal(
        size=(subjects * scans, 16)
    )
    return t / np.linalg.norm(t, axis=1, keepdims=True)


def test_clopper_pearson_matches_the_exact_interval() -> None:
    lo, hi = clopper_pearson(95, 96)  # the blind test's 95 of 96: 0.943-0.9997
    assert lo == pytest.approx(0.94333, abs=1e-5) and hi == pytest.approx(0.99974, abs=1e-5)
    assert clopper_pearson(0, 10)[0] == 0.0 and clopper_pearson(10, 10)[1] == 1.0
    assert clopper_pearson(5, 10)[0] == pytest.approx(0.18709, abs=1e-5)
    assert np.isnan(clopper_pearson(0, 0)).all()


def test_failed_probe_count_separates_failed_probes_from_failed_enrolments() -> None:
    # S1: one of its scans failed (a probe); S2: both scans failed (1 enrolment + 1 probe)
    assert failed_probe_count(["S1", "S3"], ["S1"]) == 1
    assert failed_probe_count(["S1", "S3"], ["S1", "S2", "S2"]) == 2
    assert failed_probe_count(["S1"], []) == 0


def test_cross_scan_counts_a_failed_probe_as_a_miss() -> None:
    subject = np.repeat(np.arange(10), 2)
    t = _templates(10, 2, 0.05)
    clean = cross_scan(t, subject)
    assert clean.rank1 == clean.rank1_acquired == 1.0 and clean.hits == 10
    r = cross_scan(t, subject, failed_probes=2)
    assert r.rank1 == pytest.approx(10 / 12) and r.rank1_acquired == 1.0
    assert r.n_probes == 10 and r.n_failed_probes == 2
    assert tuple(r.rank1_ci95) == pytest.approx(clopper_pearson(10, 12))
    assert r.auc == clean.auc  # scores alone: unchanged
    assert r.to_json()["rank1_ci95"] == [round(v, 5) for v in clopper_pearson(10, 12)]


def test_pair_scores_are_every_pair_once() -> None:
    t = _templates(4, 3, 0.05)
    gen, imp = pair_scores(t, np.repeat(np.arange(4), 3))
    assert len(gen) == 4 * 3 and len(imp) == 66 - 12
    assert (np.diff(gen) >= 0).all() and gen.min() > imp.max()


def test_summary_counts_failed_searches_in_rank1_cmc_fnmr_and_fnir() -> None:
    scores = np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.35], [0.4, 0.2]])
    mate = np.array([0, 1, 0, -1])  # probe 2 is missed (0.3 < 0.35); probe 3 is non-mated
    base = Searches(scores, mate, np.array([0, 1, 0, 2]), np.arange(4), np.array([0, 1]))
    lost = Searches(*(getattr(base, f) for f in ("scores", "mate", "probe_subject",
                                                  "probe_scan", "gallery_subject")),
                    failed_subject=np.array([1]))  # fmt: skip
    a, b = summary(base), summary(lost)
    assert a["rank1"] == pytest.approx(2 / 3) and b["rank1"] == pytest.approx(2 / 4)
    assert b["rank1_acquired"] == pytest.approx(2 / 3)
    assert cmc(lost, 2).tolist() == pytest.approx([0.5, 0.75])
    # FNMR: 3 genuine pairs + 1 lost pair, the lost one is a false non-match
    assert b["fnmr@fmr=0.01"] == pytest.approx((a["fnmr@fmr=0.01"] * 3 + 1) / 4)
    assert fnir_at_fpir(lost, 0.01).error == pytest.approx(
        1 - (1 - fnir_at_fpir(base, 0.01).error) * 3 / 4
    )
    assert a["auc"] == b["auc"]


def _fold(subjects: int = 4, scans: int = 2, views: int = 0) -> FoldEmbeddings:
    subject = np.repeat(np.arange(subjects), scans)
    t = _templates(subjects, scans, 0.05)
    if not views:
        return FoldEmbeddings(np.arange(len(subject)), subject, t, None, None)
    image_scan = np.repeat(np.arange(len(subject)), views)
    return FoldEmbeddings(np.arange(len(subject)), subject, t, t[image_scan], image_scan)


def test_protocols_pass_failed_scans_of_the_fold_on() -> None:
    rng = np.random.default_rng(0)
    failed = np.array([1, 1, 7])  # subject 7 is in another fold: ignored
    cross = searches(_fold(), "cross-scan", rng, failed)
    assert cross.failed_subject.tolist() == [1, 1] and cross.attempts == 4 + 2
    paper = searches(_fold(views=3), "paper", rng, failed)
    assert len(paper.failed_subject) == 2 * 3  # one failed search per view the scan had
    open_set = searches(_fold(6), "open-set", rng, np.array([0, 1, 2, 3, 4, 5]))
    enrolled = np.unique(open_set.gallery_subject)
    assert sorted(open_set.failed_subject.tolist()) == sorted(enrolled.tolist())
    assert searches(_fold(), "cross-scan", rng).attempts == 4


def test_bootstrap_resample_keeps_a_drawn_subjects_failed_searches() -> None:
    s = searches(_fold(), "cross-scan", np.random.default_rng(0), np.array([2, 2]))
    rng = np.random.default_rng(1)
    for _ in range(20):
        r = _resample(s, rng)
        drawn = r.probe_subject.tolist()
        assert r.failed_subject.tolist().count(2) == 2 * drawn.count(2)
