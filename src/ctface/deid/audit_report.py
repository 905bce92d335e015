"""An audit's outputs: ``audit.json`` (the audit as given, plus the per-scan risks),
``scans.csv`` (one row per shared scan: risk, best rank, each attack's rank and score) and
``report.html`` (a self-contained page a privacy officer can file: what was audited, the attacks'
rates with confidence intervals and chance level, the worst case, every scan by risk).

The audit dict (``audit_document`` builds one) is written as given; the page reads from it
``title`` and ``date`` (optional), ``inputs`` (name -> value, shown as a list), ``attacks``
(``AttackMetrics.to_json()`` each) and ``worst_case`` (``WorstCase.to_json()``, optional)."""

from __future__ import annotations

import csv
import datetime as dt
import html
import io
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from ctface.deid.audit_metrics import (
    AUDIT_FPIR,
    AttackMetrics,
    ProbeAttack,
    ProbeRisk,
    Risk,
    WorstCase,
    json_ready,
)
from ctface.files import atomic_path
from ctface.gallery.reconcile_report import _cell
from ctface.gallery.report import STYLE

AUDIT_STYLE = (
    "tr.worst{font-weight:bold}.re-identified{background:#fbdcdc}.top-5{background:#fdf0d0}"
    "td img{width:64px;height:64px;background:#000}td.n{text-align:right}"
    ".note{color:#555;font-size:.9em;max-width:60em}"
)
UNRESOLVED = "†"


def audit_document(
    metrics: list[AttackMetrics],
    worst: WorstCase | None,
    inputs: dict[str, Any],
    *,
    title: str = "Re-identification audit",
    date: str | None = None,
) -> dict[str, Any]:
    """The audit dict ``write_audit_outputs`` writes and the page reads (JSON-ready)."""
    return {
        "title": title,
        "date": date or dt.date.today().isoformat(),
        "inputs": json_ready(inputs),
        "attacks": [m.to_json() for m in metrics],
        "worst_case": worst.to_json() if worst is not None else None,
    }


def _write(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _attack_columns(risks: list[ProbeRisk]) -> list[str]:
    return list(dict.fromkeys(name for r in risks for name in r.attacks))


def scans_csv(risks: list[ProbeRisk]) -> str:
    """One row per probe: id, risk, best rank, then each attack's mate rank and mate score
    (empty where the attack failed or the person is not in the reference). Text cells that a
    spreadsheet would run as a formula are quoted (probe ids come from the shared data)."""
    names = _attack_columns(risks)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["probe_id", "risk", "worst_rank",
                *(_cell(f"{n} {k}") for n in names for k in ("rank", "score"))])  # fmt: skip
    for r in risks:
        cells: list[Any] = [_cell(r.probe_id), str(r.risk), r.worst_rank]
        for n in names:
            x = r.attacks.get(n)
            cells += [x.rank, json_ready(x.mate_score)] if x is not None else [None, None]
        w.writerow(["" if c is None else c for c in cells])
    return buf.getvalue()


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f} %"


def _rate(v: float | None, ci: list[float | None] | None, mark: str = "") -> str:
    """``12.5 % [3.1, 40.2]``: a rate and its 95 % interval, in percent."""
    if v is None:
        return "–"
    text = _pct(v)
    if ci and None not in ci:
        lo, hi = ci
        assert lo is not None and hi is not None
        text += f" <small>[{100 * lo:.1f}, {100 * hi:.1f}]</small>"
    return text + mark


def _tpir_cell(m: dict[str, Any], fpir: float) -> str:
    for t in m.get("tpir", []):
        if t["fpir"] is not None and abs(t["fpir"] - fpir) <= 1e-12:
            return _rate(t["tpir"], t["ci95"], "" if t["resolved"] else f" {UNRESOLVED}")
    return "–"


def _attacks_table(attacks: list[dict[str, Any]], worst: str | None) -> str:
    head = ("<tr><th>attack</th><th>rank-1 [95 % CI]</th><th>rank-5 [95 % CI]</th>"
            + "".join(f"<th>TPIR at FPIR {100 * r:g} % [95 % CI]</th>" for r in AUDIT_FPIR)
            + "<th>chance (1/N) [95 % range]</th><th>at chance?</th>"
            "<th>failures</th></tr>")  # fmt: skip
    rows = []
    for m in attacks:
        css = " class='worst'" if m["attack"] == worst else ""
        failed = f"{m['n_failed']} of {m['n_probes']}"
        rows.append(
            f"<tr{css}><td>{html.escape(str(m['attack']))}</td>"
            f"<td>{_rate(m['rank1'], m['rank1_ci95'])}</td>"
            f"<td>{_rate(m['rank5'], m['rank5_ci95'])}</td>"
            + "".join(f"<td>{_tpir_cell(m, r)}</td>" for r in AUDIT_FPIR)
            + f"<td>{_rate(m['chance_rank1'], m['chance_interval'])}</td>"
            f"<td>{'yes' if m['at_chance'] else '<b>no</b>'}</td><td class='n'>{failed}</td></tr>"
        )  # fmt: skip
    return f"<table>{head}{''.join(rows)}</table>"


def _worst_html(w: dict[str, Any] | None) -> str:
    if not w:
        return ""
    m, any_ = w["metrics"], w["any_attack"]
    verdict = ("not distinguishable from random guessing" if m["at_chance"]
               else "better than random guessing")  # fmt: skip
    return (
        f"<p><b>Worst case: {html.escape(str(w['attack']))} names the right person first for "
        f"{m['rank1_hits']} of {m['n_mated']} shared scans whose person is in the reference "
        f"(rank-1 {_rate(m['rank1'], m['rank1_ci95'])}; chance {_pct(m['chance_rank1'])}: "
        f"{verdict}). Any of the {len(w['attacks'])} attacks: {any_['rank1_hits']} of "
        f"{any_['n_mated']} ({_rate(any_['rank1'], any_['rank1_ci95'])}).</b></p>"
    )


def _inputs_html(inputs: dict[str, Any]) -> str:
    if not inputs:
        return ""
    items = []
    for k, v in inputs.items():
        text = v if isinstance(v, str) else json.dumps(json_ready(v), allow_nan=False)
        items.append(f"<li>{html.escape(str(k))}: {html.escape(text)}</li>")
    return f"<h2>Inputs</h2><ul>{''.join(items)}</ul>"


def _image_src(path: str) -> str | None:
    """A relative path (URL-quoted) or an inline PNG; None for anything else (absolute paths,
    other schemes): the page must not reach outside its folder."""
    if path.startswith("data:image/png;base64,"):
        return path
    if urlsplit(path).scheme or path.startswith(("/", "\\")) or ":" in path:
        return None
    return quote(path.replace("\\", "/"))


def _attack_text(x: ProbeAttack | None, mated: bool) -> str:
    if x is None or x.top_id is None:
        return "failed"
    if not mated or x.rank is None or x.mate_score is None:
        return "–"
    return f"{x.rank} <small>({x.mate_score:.3f})</small>"


def _scans_table(risks: list[ProbeRisk], names: list[str], images: dict[str, str]) -> str:
    def key(r: ProbeRisk) -> tuple[int, int]:
        return r.risk.severity, r.worst_rank if r.worst_rank is not None else 1 << 62

    pictured = bool(images)
    per_attack = "".join(f"<th>{html.escape(n)}: rank (score)</th>" for n in names)
    head = ("<tr>" + ("<th>image</th>" if pictured else "") + "<th>shared scan</th><th>risk</th>"
            f"<th>best rank</th>{per_attack}</tr>")  # fmt: skip
    rows = []
    for r in sorted(risks, key=key):
        cells = ""
        if pictured:
            src = _image_src(images[r.probe_id]) if r.probe_id in images else None
            cells += (f"<td><img src=\"{html.escape(src)}\" alt=\"scan image\"></td>"
                      if src else "<td></td>")  # fmt: skip
        mated = r.risk is not Risk.NO_MATE
        best = r.worst_rank if r.worst_rank is not None else "–"
        cells += (f"<td>{html.escape(r.probe_id)}</td><td>{html.escape(str(r.risk))}</td>"
                  f"<td class='n'>{best}</td>"
                  + "".join(f"<td>{_attack_text(r.attacks.get(n), mated)}</td>"
                            for n in names))  # fmt: skip
        rows.append(f"<tr class='{r.risk.value}'>{cells}</tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def _risk_counts(risks: list[ProbeRisk]) -> str:
    counts = {k: sum(r.risk is k for r in risks) for k in Risk}
    return ", ".join(f"{n} {html.escape(str(k))}" for k, n in counts.items())


HOW_TO_READ = (
    "<h2>How to read this</h2><p class='note'>Each attack compares every shared scan with the "
    "identified scans of the reference and lists the reference's people from most to least "
    "alike. <b>Rank-1</b> is the share of shared scans (of people in the reference) whose own "
    "person is the attacker's first guess; <b>rank-5</b>, among its first five. <b>Chance</b> is "
    "1/N for N people in the reference: what guessing at random achieves; its range is where "
    "random guessing lands 95 % of the time with this many scans, and <i>at chance</i> means the "
    "attack did no better. <b>TPIR at FPIR 1 %</b> (0.1 %) is the share re-identified when the "
    "attacker names someone only above a score that at most 1 % (0.1 %) of people not in the "
    "reference reach, i.e. when at most 1 % (0.1 %) of them get a false name. People not in the "
    "reference are the shared scans without a person in it and every shared scan searched again "
    "with its own person left out. Scans an attack could not process count as not "
    f"re-identified by it. {UNRESOLVED}: fewer than 1/FPIR such searches, so the rate is a bound "
    "(no false name at all was allowed), not a measurement. Intervals are 95 % confidence "
    "intervals: exact for rank-1 and rank-5, bootstrap over scans for TPIR. A scan is "
    "<i>re-identified</i> when some attack's first guess is its person, <i>top-5</i> when some "
    "attack has its person among the first five; <i>best rank</i> is the best rank any attack "
    "gave its person. Ties count against the attacker.</p>"
)


def report_html(audit: dict[str, Any], risks: list[ProbeRisk], images: dict[str, str]) -> str:
    """The page (a string): no script, no remote resource; every text escaped."""
    title = html.escape(str(audit.get("title") or "Re-identification audit"))
    date = html.escape(str(audit.get("date") or dt.date.today().isoformat()))
    worst = audit.get("worst_case") or None
    attacks = list(audit.get("attacks") or [])
    table = (_attacks_table(attacks, worst["attack"] if worst else None) if attacks
             else "<p>No attack results.</p>")  # fmt: skip
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title>"
        f"<style>{STYLE}{AUDIT_STYLE}</style></head><body><h1>{title}</h1>"
        f"<p>Date: {date}. {len(risks)} shared scans: {_risk_counts(risks)}.</p>"
        f"{_inputs_html(dict(audit.get('inputs') or {}))}<h2>Attacks</h2>{_worst_html(worst)}"
        f"{table}{HOW_TO_READ}<h2>Shared scans, highest risk first</h2>"
        f"{_scans_table(risks, _attack_columns(risks), images)}</body></html>"
    )


def write_audit_outputs(
    out: Path,
    audit: dict[str, Any],
    risks: list[ProbeRisk],
    images: dict[str, str] | None = None,
) -> dict[str, Path]:
    """``audit.json`` (``audit`` with its ``date``, today when it has none, and the risks under
    ``scans``), ``scans.csv`` and ``report.html`` in ``out``, each written whole; their paths.
    ``images``: probe id -> a PNG path relative to ``out`` (or a PNG data URI), shown inline."""
    out = Path(out)
    files = {"json": out / "audit.json", "csv": out / "scans.csv", "html": out / "report.html"}
    doc = {**audit, "date": audit.get("date") or dt.date.today().isoformat(),
           "scans": [r.to_json() for r in risks]}  # fmt: skip
    _write(files["json"], json.dumps(json_ready(doc), indent=1, allow_nan=False))
    _write(files["csv"], scans_csv(risks))
    _write(files["html"], report_html(doc, risks, images or {}))
    return files
