"""ctface audit's metrics and outputs on tiny hand-computed cases."""

from __future__ import annotations

import csv
import io
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import binom

from ctface.deid.audit_metrics import (
    AttackScores,
    Risk,
    _resample,
    attack_metrics,
    audit_searches,
    chance_interval,
    per_probe_risk,
    worst_case,
)
from ctface.deid.audit_report import (
    audit_document,
    report_html,
    scans_csv,
    write_audit_outputs,
)
from ctface.errors import InvalidInputError
from ctface.evaluate.metrics import clopper_pearson, fnir_at_fpir

NAN = np.nan
PROBES = ["p0", "p1", "p2", "p3", "p4"]
GALLERY = ["A", "B", "C"]
MATE = np.array([0, 1, 2, -1, 2])


def attack_x() -> AttackScores:
    """p0 rank 1 (0.9); p1 tied with C (rank 2); p2 failed; p3 not in the reference; p4 rank 1
    with a low score (0.6). Non-mated top scores: p3 0.7; leave-mate-out p0 0.2, p1 0.8, p4 0.5."""
    s = np.array([[0.9, 0.1, 0.2],
                  [0.3, 0.8, 0.8],
                  [NAN, NAN, NAN],
                  [0.1, 0.2, 0.7],
                  [0.5, 0.4, 0.6]])  # fmt: skip
    return AttackScores("x", s, MATE, PROBES, GALLERY)


def attack_y() -> AttackScores:
    """p0 rank 2; p1, p2 rank 1 (0.9); p4 rank 2. Non-mated top scores: p3 0.3; leave-mate-out
    p0 0.3, p1 0.2, p2 0.2, p4 0.6."""
    s = np.array([[0.2, 0.1, 0.3],
                  [0.1, 0.9, 0.2],
                  [0.1, 0.2, 0.9],
                  [0.3, 0.3, 0.3],
                  [0.6, 0.1, 0.2]])  # fmt: skip
    return AttackScores("y", s, MATE, PROBES, GALLERY)


def test_rank1_rank5_failures_and_ties() -> None:
    m = attack_metrics(attack_x(), n_boot=20)
    assert (m.n_probes, m.n_mated, m.n_failed, m.n_gallery) == (5, 4, 1, 3)
    # hits: p0, p4 at rank 1; p1 (tie: mate last) rank 2; p2 failed = miss
    assert (m.rank1_hits, m.rank1) == (2, 0.5)
    assert (m.rank5_hits, m.rank5) == (3, 0.75)
    assert m.rank1_ci95 == clopper_pearson(2, 4)
    assert m.rank5_ci95 == clopper_pearson(3, 4)
    assert m.rank1_probe_ids == {"p0", "p4"}
    for ci, v in ((m.rank1_boot95, m.rank1), (m.rank5_boot95, m.rank5)):
        assert 0.0 <= ci[0] <= v <= ci[1] <= 1.0


def test_leave_mate_out_searches_and_tpir() -> None:
    s = audit_searches(attack_x())
    # acquired probes p0 p1 p3 p4, then leave-mate-out searches of p0 p1 p4; p2 is a failure
    assert list(s.probe_subject) == [0, 1, 3, 4, 0, 1, 4]
    assert list(s.failed_subject) == [2]
    nonmated_top = np.sort(s.scores[~s.mated].max(axis=1))
    assert np.allclose(nonmated_top, [0.2, 0.5, 0.7, 0.8])
    # FPIR 1/4: the threshold is just above 0.7; only p0 (0.9) is first and reaches it
    op = fnir_at_fpir(s, 0.25)
    assert op.threshold == pytest.approx(0.7) and op.threshold > 0.7
    assert (op.measured_rate, 1 - op.error) == (0.25, 0.25)
    # FPIR 1/2: just above 0.5: p0 and p4 (0.6) -> 2 of 4 mated attempts
    assert 1 - fnir_at_fpir(s, 0.5).error == 0.5

    m = attack_metrics(attack_x(), n_boot=20)
    assert m.n_nonmated_searches == 4
    t = m.tpir_at(1e-2)  # no non-mated search may return a candidate: above 0.8
    assert t.threshold == pytest.approx(0.8) and t.threshold > 0.8
    assert (t.tpir, t.measured_fpir, t.resolved) == (0.25, 0.0, False)
    assert m.tpir_at(1e-3).tpir == 0.25
    assert 0.0 <= t.ci95[0] <= 0.25 <= t.ci95[1] <= 1.0


def test_bootstrap_draws_a_probe_with_all_its_searches() -> None:
    s = audit_searches(attack_x())
    probes = np.arange(5)
    for seed in range(5):
        r = _resample(s, probes, np.random.default_rng(seed))
        mated = np.bincount(r.probe_subject[r.mated], minlength=5)
        left_out = np.bincount(r.probe_subject[~r.mated], minlength=5)
        assert (mated[[0, 1, 4]] == left_out[[0, 1, 4]]).all()  # each with its search again
        assert mated.sum() + left_out[3] + len(r.failed_subject) == 5  # 5 probes drawn


def test_fpir_without_non_mated_probes_and_failed_non_mated_probe() -> None:
    s = np.array([[0.9, 0.1, 0.5], [0.2, 0.8, 0.1], [NAN, NAN, NAN]])
    everyone = AttackScores("z", s, np.array([0, 1, 2]), ["a", "b", "c"], GALLERY)
    m = attack_metrics(everyone, n_boot=10)
    assert m.n_nonmated_searches == 2  # every acquired probe, its mate left out: 0.5, 0.2
    assert m.tpir_at(1e-2).tpir == pytest.approx(2 / 3)  # both above 0.5; the failure a miss
    lost = AttackScores("z", s, np.array([0, 1, -1]), ["a", "b", "c"], GALLERY)
    m = attack_metrics(lost, n_boot=10)
    assert (m.n_nonmated_searches, m.n_failed, m.rank1) == (2, 1, 1.0)  # failure not a search


def test_chance_level() -> None:
    m = attack_metrics(attack_x(), n_boot=0)
    lo, hi = binom.ppf([0.025, 0.975], 4, 1 / 3)
    assert m.chance_rank1 == pytest.approx(1 / 3)
    assert m.chance_interval == (lo / 4, hi / 4) == chance_interval(4, 3)
    assert m.at_chance  # 2 hits <= 3
    assert math.isnan(m.rank1_boot95[0])  # no bootstrap asked for

    n = 20  # a perfect attack on 20 probes, 4 identities: far above chance
    s = np.tile([0.1, 0.2, 0.3, 0.4], (n, 1))
    mate = np.full(n, 3)
    m = attack_metrics(AttackScores("p", s, mate, [str(i) for i in range(n)], list("ABCD")),
                       n_boot=20)  # fmt: skip
    assert m.rank1 == 1.0 and not m.at_chance
    assert m.chance_interval[1] == binom.ppf(0.975, n, 0.25) / n
    assert m.rank1_boot95 == (1.0, 1.0)


def test_constant_scores_rank_the_mate_last() -> None:
    a = AttackScores("c", np.full((2, 3), 0.5), np.array([0, 2]), ["a", "b"], GALLERY)
    m = attack_metrics(a, n_boot=5)
    assert (m.rank1, m.rank5) == (0.0, 1.0)
    risk = per_probe_risk([a])
    assert [r.attacks["c"].rank for r in risk] == [3, 3]
    assert [r.attacks["c"].top_id for r in risk] == ["B", "A"]  # never the tied mate


def test_per_probe_risk_classes() -> None:
    risks = per_probe_risk([attack_x()])
    assert [r.risk for r in risks] == [Risk.REIDENTIFIED, Risk.TOP5, Risk.LOW, Risk.NO_MATE,
                                       Risk.REIDENTIFIED]  # fmt: skip
    assert [r.worst_rank for r in risks] == [1, 2, None, None, 1]
    p1, p2, p3 = (risks[i].attacks["x"] for i in (1, 2, 3))
    assert (p1.rank, p1.mate_score, p1.top_id, p1.top_score) == (2, 0.8, "C", 0.8)
    assert (p2.rank, p2.mate_score, p2.top_id, p2.top_score) == (None, None, None, None)
    assert (p3.rank, p3.mate_score, p3.top_id, p3.top_score) == (None, None, "C", 0.7)
    # ranked 6th of 6 everywhere: low
    far = AttackScores("f", np.array([[0.1, 0.2, 0.3, 0.4, 0.5, 0.6]]), np.array([0]), ["q"],
                       list("ABCDEF"))  # fmt: skip
    (r,) = per_probe_risk([far])
    assert (r.risk, r.worst_rank) == (Risk.LOW, 6)


def test_risk_over_attacks_and_worst_case() -> None:
    x, y = attack_x(), attack_y()
    risks = per_probe_risk([x, y])
    assert [r.worst_rank for r in risks] == [1, 1, 1, None, 1]
    assert risks[2].attacks["x"].rank is None and risks[2].attacks["y"].rank == 1
    mx, my = attack_metrics(x, n_boot=10), attack_metrics(y, n_boot=10)
    assert my.rank1 == mx.rank1 == 0.5
    assert my.tpir_at(1e-2).tpir == 0.5  # threshold above 0.6: p1, p2 (0.9)
    w = worst_case([mx, my])
    assert w.attack == "y"  # rank-1 tied, higher TPIR at FPIR 1e-2
    assert (w.any_rank1_hits, w.any_rank1) == (4, 1.0)  # x: p0 p4, y: p1 p2
    assert w.any_rank1_ci95 == clopper_pearson(4, 4)
    assert w.any_rank1_hits == sum(r.risk is Risk.REIDENTIFIED for r in risks)
    twin = attack_metrics(AttackScores("x2", x.scores, MATE, PROBES, GALLERY), n_boot=10)
    assert worst_case([mx, twin]).attack == "x"  # all equal: the first given
    json.dumps(w.to_json(), allow_nan=False)


def test_inconsistent_inputs_are_refused() -> None:
    y = attack_y()
    other = AttackScores("z", y.scores, MATE, ["p0", "p1", "p2", "p4", "p3"], GALLERY)
    with pytest.raises(InvalidInputError):
        per_probe_risk([attack_x(), other])
    with pytest.raises(InvalidInputError):
        per_probe_risk([attack_x(), attack_x()])  # one name twice
    partial = np.array([[0.1, NAN, 0.2]])
    with pytest.raises(InvalidInputError):
        AttackScores("bad", partial, np.array([0]), ["q"], GALLERY)
    with pytest.raises(InvalidInputError):
        AttackScores("bad", np.zeros((1, 3)), np.array([3]), ["q"], GALLERY)


def test_json_has_no_nan() -> None:
    nobody = AttackScores("n", np.array([[0.1, 0.2, 0.3]]), np.array([-1]), ["q"], GALLERY)
    m = attack_metrics(nobody, n_boot=5)
    assert math.isnan(m.rank1)
    d = m.to_json()
    text = json.dumps(d, allow_nan=False)
    assert "NaN" not in text and "Infinity" not in text
    assert d["rank1"] is None and d["rank1_ci95"] == [None, None]
    assert isinstance(attack_metrics(attack_x(), n_boot=5).to_json()["rank1_boot95"], list)


def test_report_escapes_and_csv_is_formula_safe(tmp_path: Path) -> None:
    hostile = "<script>alert(1)</script>"
    ids = [hostile, '=HYPERLINK("http://x")', "-2+3", "p3", "@sum"]
    x = AttackScores("<b>x</b>", attack_x().scores, MATE, ids, GALLERY)
    neg = AttackScores("y", attack_y().scores - 1.0, MATE, ids, GALLERY)  # negative scores
    mx, my = attack_metrics(x, n_boot=5), attack_metrics(neg, n_boot=5)
    risks = per_probe_risk([x, neg])
    audit = audit_document([mx, my], worst_case([mx, my]), {"shared": "<dataset>", "probes": 5},
                           date="2024-01-02")  # fmt: skip
    images = {hostile: "thumbs/a b.png", "p3": "javascript:alert(1)", "-2+3": "/etc/x.png"}
    files = write_audit_outputs(tmp_path / "audit", audit, risks, images)
    assert sorted(p.name for p in (tmp_path / "audit").iterdir()) == [
        "audit.json", "report.html", "scans.csv"]  # fmt: skip  # nothing half-written left

    page = files["html"].read_text(encoding="utf-8")
    assert "<script" not in page and "&lt;script&gt;" in page
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page
    assert "&lt;dataset&gt;" in page and "2024-01-02" in page
    assert 'src="thumbs/a%20b.png"' in page
    assert "javascript:" not in page and "/etc/x.png" not in page
    assert "http" not in page.split("<body>")[0]  # no remote resource in the head
    one = report_html(audit, per_probe_risk([x]), {})  # highest risk first:
    assert [c for c in re.findall(r"<tr class='([a-z0-9-]+)'>", one) if c != "worst"] == [
        "re-identified", "re-identified", "top-5", "low", "no-mate"]  # fmt: skip
    assert "<tr class='worst'><td>y</td>" in page

    rows = list(csv.reader(io.StringIO(files["csv"].read_text(encoding="utf-8"))))
    assert rows[0] == ["probe_id", "risk", "worst_rank", "<b>x</b> rank", "<b>x</b> score",
                       "y rank", "y score"]  # fmt: skip
    first = [r[0] for r in rows[1:]]
    assert first == [hostile, '\'=HYPERLINK("http://x")', "'-2+3", "p3", "'@sum"]
    assert rows[2][1:] == ["re-identified", "1", "2", "0.8", "1", "-0.1"]  # numbers stay
    assert rows[3][1:] == ["re-identified", "1", "", "", "1", "-0.1"]  # x failed on it
    assert scans_csv(risks) == files["csv"].read_text(encoding="utf-8")

    doc = json.loads(files["json"].read_text(encoding="utf-8"))
    assert doc["date"] == "2024-01-02" and doc["inputs"]["shared"] == "<dataset>"
    assert doc["worst_case"]["attack"] == "y" and len(doc["attacks"]) == 2
    assert [s["risk"] for s in doc["scans"]] == [str(r.risk) for r in risks]
