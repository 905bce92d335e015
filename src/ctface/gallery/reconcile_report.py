"""A reconciliation's outputs: ``findings.json`` (what ``ctface reconcile --json`` prints),
``findings.csv`` (one row per scan of each finding) and ``report.html`` (each finding with the
frontal depth images of its scans side by side, scores, and what to check). Every scan carries
its series UID and source (relative to the archive folder when it is inside it)."""

from __future__ import annotations

import csv
import html
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ctface.errors import OutputError
from ctface.files import write_text_atomic
from ctface.gallery.reconcile import Reconciliation, is_unlabeled
from ctface.gallery.report import STYLE, png_data_uri
from ctface.gallery.store import StoredScan

CARD_STYLE = ".card{width:200px}.card small{word-break:break-all;color:#555}h2{margin-top:1.5em}"
MAX_PICTURED = 100  # findings shown with images in the HTML report (all are listed)
CSV_COLUMNS = ("rank", "kind", "score", "evidence", "patient_ids", "suggested_patient_id",
               "role", "patient_id", "series_uid", "study_uid", "source", "check")  # fmt: skip


def _source(path: str, root: Path | None) -> str:
    if root is not None and Path(path).is_relative_to(root.resolve()):
        return str(Path(path).relative_to(root.resolve()))
    return path


def findings_json(
    result: Reconciliation, stored: dict[int, StoredScan], root: Path | None
) -> list[dict[str, Any]]:
    """The findings as JSON-ready data, strongest evidence first."""
    out = []
    for f in result.findings:
        scans = []
        for s in f.scans:
            rec = stored[int(result.scan_keys[s.row])]
            r = rec.record
            filed = "" if is_unlabeled(rec.patient_id) else rec.patient_id
            scans.append({"role": str(s.role), "patient_id": filed,
                          "dicom_patient_id": r.dicom_patient_id, "series_uid": r.series_uid,
                          "study_uid": r.study_uid, "source": _source(r.source, root),
                          "scan_key": rec.scan_key})  # fmt: skip
        out.append({"kind": str(f.kind), "score": round(f.score, 5),
                    "evidence": round(f.evidence, 3), "patient_ids": list(f.patient_ids),
                    "suggested_patient_id": f.suggested_patient_id,
                    "best_other_score": None if f.match_score is None
                    else round(f.match_score, 5), "check": f.check, "scans": scans})  # fmt: skip
    return out


def _cell(value: Any) -> Any:
    """A text cell a spreadsheet will not run as a formula (IDs come from DICOM headers)."""
    text = str(value) if value is not None else ""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def findings_csv(findings: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for n, f in enumerate(findings, 1):
        for s in f["scans"]:
            text = [";".join(f["patient_ids"]), f["suggested_patient_id"] or "", s["role"],
                    s["patient_id"], s["series_uid"] or "", s["study_uid"] or "", s["source"],
                    f["check"]]  # fmt: skip
            w.writerow([n, f["kind"], f["score"], f["evidence"], *map(_cell, text)])
    return buf.getvalue()


def _card(scan: dict[str, Any], image: np.ndarray | None) -> str:
    img = (f'<img src="{png_data_uri(image)}" alt="frontal face depth image">'
           if image is not None else
           '<div style="width:192px;height:192px;border:3px dashed #ccc">source not readable'
           "</div>")  # fmt: skip
    who = html.escape(scan["patient_id"] or "(no PatientID)")
    series = f"series {html.escape(scan['series_uid'])}<br>" if scan["series_uid"] else ""
    return (f'<div class="card"><b>{html.escape(scan["role"])}</b><br>{img}<br>{who}<br>'
            f"<small>{series}"
            f'{html.escape(scan["source"])}</small></div>')  # fmt: skip


def _levels_html(summary: dict[str, Any], lv: dict[str, Any], n: int) -> str:
    """The report's first paragraphs: counts, thresholds and expected false findings."""
    return (f"<p>{summary['scans']} scans of {summary['patients']} patient IDs, "
            f"{summary['unlabeled']} without an ID, {summary['failed_to_acquire']} failed to "
            f"acquire. <b>{n} findings</b>; expected false findings at these "
            f"thresholds: {summary['expected_false_findings']:.2f} "
            f"({lv['expected_false_splits']:.2f} splits, {lv['expected_false_matches']:.2f} "
            f"merges or suggestions).</p><p>Scans of one ID are linked at score >= "
            f"{lv['link_threshold']:.3f} (impostor pairs reach it 1 % of the time); merges need "
            f">= {lv['match_threshold']:.3f}, suggested IDs >= {lv['suggest_threshold']:.3f} "
            f"(false-match rate "
            f"{lv['fmr']:.2g} per comparison, {lv['comparisons']:,} comparisons; impostor "
            f"tail: {html.escape(lv['impostor_tail'])}). Nothing in the archive was changed: "
            "this is a worklist.</p>")  # fmt: skip


def report_html(
    path: Path,
    summary: dict[str, Any],
    findings: list[dict[str, Any]],
    image: Callable[[int], np.ndarray | None],
) -> None:
    """Write the report (atomically); ``image(scan_key)``: a scan's frontal depth image."""
    lv = summary["levels"]
    if lv is None:  # nothing acquired
        head = (f"<p>No scan could be acquired: {summary['failed_to_acquire']} failed "
                "(findings.json lists them with the reasons).</p>")  # fmt: skip
    else:
        head = _levels_html(summary, lv, len(findings))
    parts = []
    for n, f in enumerate(findings, 1):
        pictured = n <= MAX_PICTURED
        cards = "".join(_card(s, image(s["scan_key"]) if pictured else None) for s in f["scans"])
        suggested = f["suggested_patient_id"]
        parts.append(
            f"<h2>{n}. {f['kind']}: {html.escape(', '.join(f['patient_ids']) or '(no ID)')}</h2>"
            f"<p>score {f['score']:.3f}; evidence {f['evidence']:.1f} (-log10 p)"
            + (f"; suggested patient <b>{html.escape(suggested)}</b>" if suggested else "")
            + f". <b>Check:</b> {html.escape(f['check'])}</p><div class='row'>{cards}</div>"
        )  # fmt: skip
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>ctface reconcile: "
        f"{html.escape(summary['archive'])}</title><style>{STYLE}{CARD_STYLE}</style></head><body>"
        f"<h1>Reconciliation of {html.escape(summary['archive'])}</h1>{head}"
        f"{''.join(parts) or '<p>No findings.</p>'}<p>Images: frontal face depth "
        "(brighter = nearer), rendered again from each scan's source.</p></body></html>"
    )
    write_text_atomic(path, page)


def write_outputs(
    out: Path,
    summary: dict[str, Any],
    image: Callable[[int], np.ndarray | None],
) -> dict[str, str]:
    """``findings.json``, ``findings.csv``, ``report.html`` in ``out``; their paths. Each is
    written whole (a temporary file renamed), and ``findings.json`` is removed first and
    written last: where it is present, the other two are of the same run (a run killed while
    writing leaves no findings.json, never one beside an older run's report); temporary files
    of killed runs are removed."""
    import json

    out.mkdir(parents=True, exist_ok=True)
    files = {"json": out / "findings.json", "csv": out / "findings.csv",
             "html": out / "report.html"}  # fmt: skip
    for folder in (out, out / "images"):
        remove_stale_temporaries(folder)
    try:
        files["json"].unlink(missing_ok=True)
    except OSError as e:
        raise OutputError(f"cannot write {files['json']}: {e.strerror or e}") from e
    write_text_atomic(files["csv"], findings_csv(summary["findings"]))
    report_html(files["html"], summary, summary["findings"], image)
    write_text_atomic(files["json"], json.dumps(summary, indent=1, allow_nan=False))
    return {k: str(v) for k, v in files.items()}


def remove_stale_temporaries(folder: Path) -> int:
    """Remove the temporary files (``files.atomic_path``: ``.NAME.PID-N.tmpSUFFIX``) that
    processes no longer running left in ``folder`` (killed while writing); how many."""
    import re

    gone = 0
    for tmp in folder.glob(".*.tmp*"):
        found = re.fullmatch(r"\..+\.(\d+)-\d+\.tmp(\.[^.]*)?", tmp.name)
        if found is None or _alive(int(found.group(1))):
            continue
        try:
            tmp.unlink()
            gone += 1
        except OSError:
            continue
    return gone


def _alive(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # another user's process
    return True
