"""`ctface reconcile`: every scan of an archive checked against its PatientID -- scans filed
under the wrong patient, patients under two IDs, scans without an ID -- as a worklist
(findings.json, findings.csv, report.html). Nothing in the archive is modified."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from ctface.cli.common import out_console, progress_bar
from ctface.cli.main import app, err
from ctface.errors import InvalidInputError

KEEP_FRONTALS = 20_000


@app.command()
def reconcile(
    archive: Path | None = typer.Argument(
        None,
        help="A DICOM archive folder (one CT per study, by its PatientID tag); "
        "leave out to reconcile the gallery --db as it is.",
    ),  # fmt: skip
    out: Path = typer.Option(..., "--out", help="Folder for findings.json/.csv, report.html."),
    db: Path | None = typer.Option(
        None,
        "--db",
        help="Gallery of the archive's templates (default OUT/archive.db): "
        "a second run processes only new scans.",
    ),  # fmt: skip
    fmr: float | None = typer.Option(
        None,
        "--fmr",
        help="False-match rate per comparison for merges and suggested IDs "
        "(default: 10 / comparisons, at most 1e-3: <= 10 false matches in the archive).",
    ),
    engine: str = typer.Option("local", "--engine", help="local (process pool), dask or ray."),
    address: str | None = typer.Option(
        None, "--address", help="Dask scheduler / Ray head address (default: a local cluster)."
    ),
    jobs: int = typer.Option(2, "--jobs", min=1, help="Worker processes (or cluster actors)."),
    weights: Path | None = typer.Option(None, "--weights", help="Recognition model file."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Retry earlier failures."),
    all_splits: bool = typer.Option(
        False,
        "--all-splits",
        help="List splits matching no other patient even where more "
        "than 10 false ones are expected (large archives).",
    ),  # fmt: skip
    json_out: bool = typer.Option(False, "--json", help="Print the findings as JSON."),
) -> None:
    """Find the scans filed under the wrong patient (split), patients under two IDs (merge)
    and whom the scans without an ID belong to (unlabeled), ranked by evidence."""
    from ctface.api import Gallery, _engine
    from ctface.jobs import check_engine

    if archive is None and db is None:
        raise InvalidInputError("give an ARCHIVE folder, or --db GALLERY to reconcile a gallery")
    if archive is not None and not archive.is_dir():
        raise InvalidInputError(f"{archive} is not a folder (ARCHIVE is a DICOM folder tree)")
    if fmr is not None and not 0.0 < fmr < 1.0:
        raise InvalidInputError(f"--fmr must be between 0 and 1, got {fmr:g}")
    if out.exists() and not out.is_dir():
        raise InvalidInputError(f"--out {out} exists and is not a folder")
    engine_kind = _engine(engine)
    t0 = time.perf_counter()
    check_engine(engine_kind)
    with Gallery.open(db or out / "archive.db", model=weights) as gallery:
        gallery.calibration.threshold(1e-3)  # model, calibration: before the slow work
        if gallery.path.exists():
            gallery.db.check_model(gallery.model.version)
        _check_writable(out)
        frontals: dict[int, Any] = {}  # this run's scans' report images, by scan key
        if archive is not None:
            _update(gallery, archive, jobs, engine_kind, address, retry_failed, json_out,
                    frontals)  # fmt: skip
        summary, files = reconcile_gallery(
            gallery, archive, out, fmr, frontals, json_out, all_splits, jobs
        )
    summary["seconds"] = round(time.perf_counter() - t0, 1)
    if json_out:
        print(json.dumps({**summary, "outputs": files}, indent=1))
        return
    print_findings(summary, files)


def reconcile_gallery(
    gallery: Any,
    archive: Path | None,
    out: Path,
    fmr: float | None,
    frontals: dict[int, Any],
    quiet: bool,
    all_splits: bool = False,
    jobs: int = 1,
) -> tuple[dict[str, Any], dict[str, str]]:
    """Reconcile the gallery, keep its findings in it for review (``ctface serve``'s review
    page; a finding found again keeps its decisions) and write the three files
    (``frontals``: report images at hand, by scan key); the summary (what --json prints) and
    the files written."""
    if archive is not None and (not gallery.path.exists() or gallery.db.is_empty()):
        summary = _nothing_acquired(gallery, archive)  # a report that says so, not an error
    else:
        from ctface.gallery.review import save_reconcile_findings

        result = gallery.reconcile(fmr=fmr, all_splits=all_splits)
        summary = _summary(gallery, result, archive, gallery.model.version)
        save_reconcile_findings(gallery.db, summary["findings"])  # for the review page
    return summary, _write(gallery, summary, out, frontals, quiet, jobs)


def _failures(gallery: Any) -> list[dict[str, str]]:
    """The scans that failed to acquire (source label, code, reason)."""
    if not gallery.path.exists():
        return []
    return [{k: f[k] for k in ("source", "code", "reason")} for f in gallery.db.failures()]


def _nothing_acquired(gallery: Any, archive: Path) -> dict[str, Any]:
    """The summary of an archive none of whose scans could be acquired."""
    failures = _failures(gallery)
    return {"archive": str(archive), "db": str(gallery.path),
            "model_version": gallery.model.version, "scans": 0, "patients": 0, "unlabeled": 0,
            "failed_to_acquire": len(failures), "expected_false_findings": 0.0, "levels": None,
            "calibration": gallery.calibration.label, "findings": [],
            "failures": failures}  # fmt: skip


def _check_writable(out: Path) -> None:
    """OutputError now, not after the archive's templates, when ``out`` cannot be written."""
    from ctface.errors import OutputError
    from ctface.files import write_text_atomic

    probe = out / ".ctface-write-test"
    try:
        out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(probe, "")
        probe.unlink()
    except OSError as e:
        raise OutputError(f"cannot write to --out {out}: {e}") from e


def _update(gallery: Any, archive: Path, jobs: int, engine: Any, address: str | None,
            retry_failed: bool, quiet: bool, frontals: dict[int, Any]) -> None:  # fmt: skip
    """Enroll the archive's new scans (by series UID; earlier failures skipped), each under
    its PatientID or as unlabeled; keep their frontal images for the report (up to
    ``KEEP_FRONTALS`` scans: 64 kB each)."""
    from ctface.gallery.reconcile import archive_patient_id
    from ctface.ingest.archive import list_archive

    found, skipped = list_archive(archive, unlabeled=True)
    known = gallery.db.known_series(retry_failed) if gallery.path.exists() else set()
    todo = [(s, archive_patient_id(s.patient_id, s.study_uid)) for s in found
            if s.series.uid not in known]  # fmt: skip
    _refile(gallery, found, quiet)
    if not quiet:
        err.print(f"{archive}: {len(found)} scans, {len(found) - len(todo)} done in an earlier "
                  f"run, {len(todo)} to process on {engine} ({jobs} workers)",
                  highlight=False, markup=False, soft_wrap=True)  # fmt: skip
        for item, why in skipped:
            err.print(f"not a scan: {item}: {why}", highlight=False, markup=False, soft_wrap=True)
    with progress_bar(quiet) as bar:
        task = bar.add_task("templates", total=len(todo), info="")

        def show(o: Any, acq: Any) -> None:
            if acq is not None and o.scan_key is not None and len(todo) <= KEEP_FRONTALS:
                frontals[o.scan_key] = acq.frontal
            bar.advance(task)
            bar.update(task, info=f"{o.patient_id}: {o.status}")

        gallery.enroll_archive(todo, jobs=jobs, retry_failed=retry_failed, on_outcome=show,
                               engine=engine, address=address)  # fmt: skip


def _refile(gallery: Any, found: list[Any], quiet: bool) -> None:
    """Scans already enrolled whose PatientID in the archive has changed since (a corrected
    error) are filed under the new ID: the finding goes away on the next run."""
    from ctface.gallery.reconcile import archive_patient_id

    if not gallery.path.exists():
        return
    filed = gallery.db.series_patients()
    now = {s.series.uid: (archive_patient_id(s.patient_id, s.study_uid), s.patient_id)
           for s in found}  # fmt: skip
    moves = {uid: ids for uid, ids in now.items() if uid in filed and filed[uid] != ids[0]}
    moved = gallery.db.refile(moves) if moves else 0
    if moved and not quiet:
        err.print(f"{moved} scans filed under their archive's current PatientID",
                  highlight=False, markup=False)  # fmt: skip


def _summary(gallery: Any, result: Any, archive: Path | None, version: str) -> dict[str, Any]:
    from ctface.gallery.reconcile_report import findings_json

    keys = sorted({int(result.scan_keys[s.row]) for f in result.findings for s in f.scans})
    stored = {s.scan_key: s for s in gallery.db.scans(scan_keys=keys)} if keys else {}
    return {
        "archive": str(archive) if archive is not None else str(gallery.path),
        "db": str(gallery.path),
        "model_version": version,
        "scans": len(result.patient_ids),
        "patients": result.patients,
        "unlabeled": result.unlabeled,
        "failed_to_acquire": len(_failures(gallery)),
        "expected_false_findings": round(result.expected_false_findings, 3),
        "levels": result.levels.to_json(),
        "calibration": gallery.calibration.label,
        "findings": findings_json(result, stored, archive),
        "failures": _failures(gallery),
    }


def _write(gallery: Any, summary: dict[str, Any], out: Path, frontals: dict[int, Any],
           quiet: bool, jobs: int) -> dict[str, str]:  # fmt: skip
    """The three files; the report's images from this run, from ``OUT/images/`` (an earlier
    run's, by the scan's content digest), else rendered again from the scans' sources in
    ``jobs`` processes; the images also kept in the gallery (the review page shows them)."""
    from ctface.gallery.acquire import frontal_from_source
    from ctface.gallery.reconcile_report import MAX_PICTURED, write_outputs
    from ctface.gallery.report import png_bytes
    from ctface.gallery.review import save_scan_images
    from ctface.jobs import run_tasks

    pictured = {s["scan_key"] for f in summary["findings"][:MAX_PICTURED] for s in f["scans"]}
    records = {s.scan_key: s.record for s in gallery.db.scans(scan_keys=sorted(pictured))}
    folder = out / "images"
    images = {k: frontals.get(k) for k in records}
    for key, rec in records.items():
        if images[key] is None and (folder / f"{rec.digest}.png").is_file():
            images[key] = _read_png(folder / f"{rec.digest}.png")
    missing = [k for k in records if images[k] is None]
    with progress_bar(quiet or not missing) as bar:
        task = bar.add_task("report images", total=len(missing), info="")

        def keep(i: int, image: Any) -> None:
            images[missing[i]] = None if isinstance(image, Exception) else image
            bar.advance(task)

        run_tasks(frontal_from_source, [(records[k],) for k in missing], keep,
                  jobs=min(jobs, len(missing)))  # fmt: skip
    for key, rec in records.items():
        if images[key] is not None and rec.digest:
            _write_png(folder / f"{rec.digest}.png", images[key])
    pngs = {k: png_bytes(v) for k, v in images.items() if v is not None}
    if pngs:
        save_scan_images(gallery.db, pngs)
    return write_outputs(out, summary, images.get)


def _read_png(path: Path) -> Any:
    import numpy as np
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("L"))


def _write_png(path: Path, image: Any) -> None:
    from PIL import Image

    from ctface.files import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.is_file():
        with atomic_path(path) as tmp:
            Image.fromarray(image).save(tmp, "png")


def print_findings(summary: dict[str, Any], files: dict[str, str]) -> None:
    """The findings as a table, the thresholds and where the report is."""
    from rich.table import Table

    lv = summary["levels"]
    if lv is None:
        out_console.print(f"no scan of {summary['archive']} could be acquired "
                          f"({summary['failed_to_acquire']} failed; see {files['json']})",
                          markup=False, highlight=False, soft_wrap=True)  # fmt: skip
        return
    n = len(summary["findings"])
    table = Table(title=f"{n} finding{'' if n == 1 else 's'}, strongest evidence first")
    for col in ("#", "kind", "patient IDs", "suggested", "score", "evidence", "odd / unlabeled"):
        table.add_column(col, overflow="fold")
    for n, f in enumerate(summary["findings"][:30], 1):
        odd = [s for s in f["scans"] if s["role"] in ("odd one out", "no patient ID",
                                                       "does not match the other")]  # fmt: skip
        table.add_row(
            str(n),
            f["kind"],
            escape(", ".join(f["patient_ids"]) or "-"),
            escape(f["suggested_patient_id"] or "-"),
            f"{f['score']:.3f}",
            f"{f['evidence']:.1f}",
            escape("; ".join(s["source"] for s in odd)),
        )
    out_console.print(table)
    out_console.print(
        f"{summary['scans']} scans, {summary['patients']} patient IDs, {summary['unlabeled']} "
        f"without an ID, {summary['failed_to_acquire']} failed to acquire; link >= "
        f"{lv['link_threshold']:.3f}, merge >= {lv['match_threshold']:.3f}, suggest >= "
        f"{lv['suggest_threshold']:.3f} (FMR {lv['fmr']:.2g}"
        f" x {lv['comparisons']:,} comparisons); expected false findings "
        f"{summary['expected_false_findings']:.2f}"
        + (
            f"; {lv['unmatched_splits_hidden']} splits matching no other patient not listed "
            "(over 10 false ones expected at this size: --all-splits lists them)"
            if lv["unmatched_splits_hidden"]
            else ""
        )
        + f"\nreport: {files['html']}",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
