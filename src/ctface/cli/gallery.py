"""`ctface enroll | identify | verify | calibrate` and `ctface gallery list|remove|stats|export`.

The gallery database defaults to ``$CTFACE_GALLERY``, else
``$XDG_DATA_HOME/ctface/gallery.db`` (``~/.local/share/ctface/gallery.db``); ``--db`` overrides.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from ctface.cli.common import acquire_probe, out_console, progress_bar, report
from ctface.cli.main import app, err, one_line
from ctface.errors import (
    FailureCode,
    GalleryError,
    InvalidInputError,
    OutputError,
)
from ctface.files import write_text_atomic

gallery_app = typer.Typer(help="Inspect and edit the gallery database.", no_args_is_help=True)
app.add_typer(gallery_app, name="gallery")

DB_HELP = "Gallery database (default $CTFACE_GALLERY or ~/.local/share/ctface/gallery.db)."
FMR_HELP = "False-match rate the decision threshold is calibrated to (per comparison)."
OUT_HELP = "Calibration file (--cohort: default calibration.json; --gallery: also write one)."
CALIBRATION_HELP = (
    "Calibration file (default: the gallery's own from `ctface calibrate --gallery`, else the "
    "shipped one)."
)


def _db(db: Path | None) -> Path:
    from ctface.gallery import default_path

    return db if db is not None else default_path()


def _gallery(db: Path | None, weights: Path | None, calibration: Path | None = None) -> Any:
    """The library's Gallery (``ctface.api``) for the command's options."""
    from ctface.api import Gallery

    return Gallery.open(db, model=weights, calibration=calibration)


def _note(text: str | None) -> None:
    if text:
        err.print(f"note: {one_line(text)}", highlight=False, markup=False, soft_wrap=True)


@app.command()
def enroll(
    scans: list[Path] = typer.Argument(
        ...,
        help="CT scans (DICOM folder/file, NIfTI, ...); with --from-dicom-tags: archive folders.",
        readable=False,
    ),
    patient_id: str | None = typer.Option(None, "--patient-id", help="Enroll under this ID."),
    from_dicom_tags: bool = typer.Option(
        False, "--from-dicom-tags", help="Enroll every study under the folders by its PatientID."
    ),
    db: Path | None = typer.Option(None, "--db", help=DB_HELP),
    weights: Path | None = typer.Option(None, "--weights", help="Recognition model file."),
    jobs: int = typer.Option(1, "--jobs", min=1, help="Worker processes."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Retry earlier failures."),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON summary."),
) -> None:
    """Process scans and store one face template per scan under the patient."""
    from ctface.gallery.records import Status
    from ctface.ingest.archive import list_archive

    if from_dicom_tags == (patient_id is not None):
        raise InvalidInputError("give either --patient-id ID or --from-dicom-tags (one of them)")
    if patient_id is not None and not patient_id.strip():
        raise InvalidInputError("--patient-id is empty")
    gallery = _gallery(db, weights)
    model = gallery.model  # first: a missing model fails before the slow work
    found: list[Any] = []
    skipped: list[tuple[str, str]] = []
    for folder in scans if from_dicom_tags else []:
        f, skip = list_archive(folder)
        found, skipped = found + [(s, s.patient_id) for s in f], skipped + skip
    t0 = time.perf_counter()
    with progress_bar(json_out) as bar, gallery:
        task = bar.add_task("enroll", total=len(found) if from_dicom_tags else len(scans),
                            info="")  # fmt: skip

        def show(o: Any, _acq: Any) -> None:
            bar.advance(task)
            bar.update(task, info=f"{o.patient_id}: {o.status}")
            if not json_out and o.status in ("failed", "skipped"):
                bar.console.print(one_line(f"{o.status}: {o.source} ({o.code}): {o.reason}"),
                                  highlight=False, soft_wrap=True, markup=False)  # fmt: skip

        if from_dicom_tags:
            outcomes = gallery.enroll_archive(found, jobs=jobs, retry_failed=retry_failed,
                                              on_outcome=show)  # fmt: skip
        else:
            assert patient_id is not None
            outcomes = gallery.enroll(list(scans), patient_id, jobs=jobs, on_outcome=show)
    counts = {str(s): sum(o.status == s for o in outcomes) for s in Status}
    summary = {
        "db": str(gallery.path),
        "model_version": model.version,
        **counts,
        "not_scans": [{"item": a, "reason": b} for a, b in skipped],
        "scans": [o.to_json() for o in outcomes],
        "seconds": round(time.perf_counter() - t0, 1),
    }
    line = (f"{counts['enrolled']} scans enrolled, {counts['already-enrolled']} already there, "
            f"{counts['failed']} failed, {counts['skipped']} skipped (earlier failures); "
            f"{len(skipped)} items were not scans -> {gallery.path}")  # fmt: skip
    report(summary, json_out, line)
    for item, why in skipped if not json_out else []:
        err.print(one_line(f"not a scan: {item}: {why}"), highlight=False, soft_wrap=True,
                  markup=False)  # fmt: skip
    failed = [o for o in outcomes if o.status == Status.FAILED]
    if failed and not from_dicom_tags:
        raise typer.Exit(FailureCode.exit_code_of(o.code for o in failed))


@app.command()
def identify(
    scan: Path = typer.Argument(..., help="The probe CT (its patient is unknown).", readable=False),
    db: Path | None = typer.Option(None, "--db", help=DB_HELP),
    top_k: int = typer.Option(5, "--top-k", min=1, help="Candidates to list."),
    fmr: float = typer.Option(1e-3, "--fmr", help=FMR_HELP),
    html: Path | None = typer.Option(None, "--html", help="Write a page with the depth images."),
    weights: Path | None = typer.Option(None, "--weights", help="Recognition model file."),
    calibration: Path | None = typer.Option(None, "--calibration", help=CALIBRATION_HELP),
    series_uid: str | None = typer.Option(None, "--series-uid", help="DICOM series to use."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Rank the enrolled patients for a scan; decide: the best match, or "not in gallery"."""
    with _gallery(db, weights, calibration) as gallery:
        gallery.check(fmr)  # no gallery, another model's, an impossible FMR: before slow work
        _note(gallery.calibration_note)
        if html is not None and not html.parent.is_dir():
            raise OutputError(f"cannot write {html}: the folder {html.parent} does not exist")
        t0 = time.perf_counter()
        probe = acquire_probe(scan, gallery.model, series_uid, json_out)
        result = gallery.identify(probe, fmr=fmr, top_k=top_k)
        seconds = time.perf_counter() - t0
        out = result.summary(str(scan), gallery.model.version, probe.record.quality, seconds)
        if html is not None:
            out["html"] = str(_identification_page(html, scan, probe, result, gallery.db))
    if json_out:
        print(json.dumps(out, indent=1))
        return
    print_identification(str(scan), result)
    if html is not None:
        out_console.print(f"page: {out['html']}", markup=False)


def _identification_page(html: Path, scan: Path, probe: Any, result: Any, db: Any) -> Path:
    """The HTML page: the probe's and the candidates' frontal depth images (rendered again
    from the candidates' source files: the gallery keeps no images)."""
    from ctface.gallery.acquire import frontal_from_source
    from ctface.gallery.report import identification_html

    keys = [c.scan_key for c in result.candidates]
    stored = {s.scan_key: s.record for s in db.scans(scan_keys=keys)}

    def image(c: Any) -> Any:
        return frontal_from_source(stored[c.scan_key])

    return identification_html(html, str(scan), probe.frontal, result, image)


def print_identification(label: str, result: Any) -> None:
    """The decision and the ranked candidates, for people."""
    t = result.threshold
    verdict = (f"[bold green]{escape(result.patient_id)}[/]" if result.patient_id
               else "[bold yellow]not in gallery[/]")  # fmt: skip
    out_console.print(f"{escape(label)}: {verdict} (threshold {t.threshold:.4f} at FMR "
                      f"{t.fmr:g}; calibration: {escape(t.calibration)}, "
                      f"{t.impostor_comparisons} impostor comparisons)", highlight=False,
                      soft_wrap=True)  # fmt: skip
    for c in result.candidates:
        mark = "above threshold" if c.score >= t.threshold else ""
        out_console.print(f"  {c.rank:>2}. {c.patient_id:<24} score {c.score:.4f} {mark}",
                          highlight=False, markup=False)  # fmt: skip


@app.command()
def verify(
    scan_a: Path = typer.Argument(..., help="First CT.", readable=False),
    scan_b: Path = typer.Argument(..., help="Second CT.", readable=False),
    fmr: float = typer.Option(1e-3, "--fmr", help=FMR_HELP),
    db: Path | None = typer.Option(
        None, "--db", help="Decide with this gallery's calibration (default: the shipped one)."
    ),
    weights: Path | None = typer.Option(None, "--weights", help="Recognition model file."),
    calibration: Path | None = typer.Option(None, "--calibration", help="Calibration file."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Are two scans the same person? Score, decision, and the measured FMR/FNMR there."""
    from ctface.api import resolve_calibration, resolve_model
    from ctface.api import verify as decide

    for scan in (scan_a, scan_b):  # before the slow work on the first scan
        if not scan.exists():
            raise InvalidInputError(f"{scan} does not exist.")
    model = resolve_model(weights)
    cal: Any = calibration
    if db is not None:
        with _gallery(db, weights, calibration) as gallery:
            if calibration is None and gallery.db.calibration() is None:
                _note(f"{db} has no calibration (`ctface calibrate --gallery`): using the "
                      "shipped one")  # fmt: skip
            cal = gallery.calibration
            _note(gallery.calibration_note)
    cal = resolve_calibration(cal, model.version)
    cal.threshold(fmr)  # an impossible FMR fails before the slow work
    result = decide(acquire_probe(scan_a, model, None, json_out),
                    acquire_probe(scan_b, model, None, json_out), fmr=fmr, model=model,
                    calibration=cal)  # fmt: skip
    out = {"scan_a": str(scan_a), "scan_b": str(scan_b), **result.to_json(),
           "model_version": model.version}  # fmt: skip
    word = "same person" if result.same_person else "different people"
    line = (f"score {result.score:.4f}: {word} (threshold {result.threshold.threshold:.4f} at "
            f"FMR {fmr:g}; calibration: {result.threshold.calibration}); at this score FMR "
            f"{result.fmr_at_score:.2e}, FNMR {result.fnmr_at_score:.3f}")  # fmt: skip
    report(out, json_out, line)


@app.command()
def calibrate(
    cohort: Path | None = typer.Option(
        None, "--cohort", help="A `ctface phantom` cohort not trained on (writes --out)."
    ),
    gallery: Path | None = typer.Option(
        None, "--gallery", help="A gallery: estimate from its own patients, store it there."
    ),
    cache: Path | None = typer.Option(None, "--cache", help="Depth cache (default COHORT/depth)."),
    out: Path | None = typer.Option(None, "--out", help=OUT_HELP),
    weights: Path | None = typer.Option(None, "--weights", help="Recognition model (--cohort)."),
    jobs: int = typer.Option(1, "--jobs", min=1, help="Worker processes (--cohort)."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Measure genuine and impostor scores: the thresholds of `identify`/`verify`. --cohort:
    phantoms (the shipped file); --gallery: the site's own scans (exit 7: too few patients
    scanned twice)."""
    if (cohort is None) == (gallery is None):
        both = "they exclude each other: give one"
        raise typer.BadParameter(both if cohort else "give one of them",
                                 param_hint="'--cohort DIR' / '--gallery DB'")  # fmt: skip
    if gallery is not None:
        _calibrate_gallery(gallery, out, json_out)
    else:
        assert cohort is not None
        _calibrate_cohort(cohort, cache, out or Path("calibration.json"), weights, jobs, json_out)


def _calibrate_cohort(
    cohort: Path, cache: Path | None, out: Path, weights: Path | None, jobs: int, json_out: bool
) -> None:
    """``ctface calibrate --cohort``: measure (``evaluate/calibration.py``), save, report."""
    from ctface.embed.embedder import FaceEmbedder
    from ctface.evaluate.calibration import calibrate_on_cohort

    model = FaceEmbedder.load(weights)  # first: a missing model fails before the slow work
    with progress_bar(json_out) as bar:
        tasks: dict[str, Any] = {}

        def show(stage: str, done: int, total: int | None) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total, info="")
            bar.update(tasks[stage], completed=done, total=total)

        result = calibrate_on_cohort(cohort, cache or cohort / "depth", model, jobs, show)
    result.save(out)  # OutputError (exit 5) if it cannot be written
    cal, rows = result.calibration, result.operating_points()
    summary = {"out": str(out), **result.to_json()}
    line = (f"wrote {out}: {len(cal.genuine)} genuine / {len(cal.impostor)} impostor "
            f"comparisons of {result.subjects} people; " + "; ".join(
                f"FMR {k}: t={v['threshold']} FNMR={v['fnmr']}" if v else f"FMR {k}: n/a"
                for k, v in rows.items()))  # fmt: skip
    report(summary, json_out, line)


def _calibrate_gallery(db: Path, out: Path | None, json_out: bool) -> None:
    """``ctface calibrate --gallery``: estimate (``gallery/site.py``), store, report."""
    from ctface.gallery import GalleryDatabase
    from ctface.gallery.site import estimate

    with GalleryDatabase(db) as g:
        if g.model_version is None:
            raise GalleryError(f"the gallery {db} is empty: enroll scans first")
        prov = {"command": "ctface calibrate --gallery", "gallery": db.name}
        site = estimate(g.templates(), g.model_version, prov)
        g.save_calibration(site.calibration)
    if out is not None:
        site.calibration.save(out)  # OutputError when it cannot be written
    summary = {"db": str(db), "out": str(out) if out else None, **site.to_json()}
    report(summary, json_out, _site_lines(db, site))


def _site_lines(db: Path, site: Any) -> str:
    """The site calibration for people: pairs, operating points, suspected label errors."""
    cal, p = site.calibration, site.to_json()["pairs"]
    lines = [f"stored in {db}: {cal.label}; excluded {p['genuine']['excluded']} same-ID pairs "
             f"scoring as two people, {p['impostor']['excluded']} different-ID pairs scoring as "
             "one person" + (" (different-ID pairs: a random sample)" if site.impostor_sampled
                             else "")]  # fmt: skip
    for key, pt in site.points.items():
        if pt is None:
            lines.append(f"FMR {key}: not resolvable ({len(cal.impostor):,} impostor pairs)")
            continue
        lo, hi = pt.fmr_ci95
        glo, ghi = pt.fnmr_ci95
        lines.append(f"FMR {key}: threshold {pt.threshold:.4f}, FMR {pt.fmr:.2e} (95 % CI "
                     f"{lo:.1e}-{hi:.1e}), FNMR {pt.fnmr:.1%} ({glo:.1%}-{ghi:.1%})")  # fmt: skip
    scans = site.suspected_scans()
    if scans:
        top = ", ".join(f"{k} ({n})" for k, n in scans[:10])
        lines.append(f"suspected label errors: {len(site.suspects)} pairs; scans in most of "
                     f"them (scan key, pairs): {top}; --json lists them")  # fmt: skip
    return "\n".join(lines)


@gallery_app.command("list")
def list_(
    db: Path | None = typer.Option(None, "--db", help=DB_HELP),
    patient: str | None = typer.Option(None, "--patient", help="Only this patient's scans."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Patients and their scans."""
    from ctface.gallery import GalleryDatabase

    with GalleryDatabase(_db(db)) as g:
        scans = g.scans(patient)
        patients = [(p, n) for p, n in g.patients() if patient in (None, p)]
    if patient is not None and not patients:
        raise GalleryError(f"no patient {patient!r} in {_db(db)}")
    if json_out:
        print(json.dumps({"patients": [{"patient_id": p, "scans": n} for p, n in patients],
                          "scans": [s.to_json() for s in scans]}, indent=1))  # fmt: skip
        return
    for s in scans:
        r = s.record
        out_console.print(f"{s.patient_id:<20} scan {s.scan_key:>5}  "
                          f"face {r.quality.get('face_fraction', 0):>4.0%}  "
                          f"{r.source}  {r.series_uid or ''}",
                          highlight=False, soft_wrap=True, markup=False)  # fmt: skip
    out_console.print(f"{len(patients)} patients, {len(scans)} scans")


@gallery_app.command("remove")
def remove(
    db: Path | None = typer.Option(None, "--db", help=DB_HELP),
    patient: str | None = typer.Option(None, "--patient", help="Remove this patient."),
    scan: int | None = typer.Option(None, "--scan", help="Remove this scan (its scan_key)."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Remove a patient (with all their scans) or one scan."""
    from ctface.gallery import GalleryDatabase

    if (patient is None) == (scan is None):
        raise InvalidInputError("give either --patient ID or --scan KEY")
    with GalleryDatabase(_db(db)) as g:
        if patient is not None:
            n = g.remove_patient(patient)
            report({"removed_patient": patient, "scans": n}, json_out,
                   f"removed patient {patient} ({n} scans)")  # fmt: skip
        else:
            assert scan is not None
            pid = g.remove_scan(scan)
            report({"removed_scan": scan, "patient_id": pid}, json_out,
                   f"removed scan {scan} of {pid}")  # fmt: skip


@gallery_app.command("stats")
def stats(
    db: Path | None = typer.Option(None, "--db", help=DB_HELP),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Counts, model version, failures to acquire, size and integrity."""
    from ctface.gallery import GalleryDatabase

    with GalleryDatabase(_db(db)) as g:
        s = g.stats()
    line = "\n".join(f"{k}: {v}" for k, v in s.items())
    report(s, json_out, line)


@gallery_app.command("export")
def export(
    out: Path = typer.Option(..., "--out", help="JSON file (patients, scans, templates)."),
    db: Path | None = typer.Option(None, "--db", help=DB_HELP),
    no_templates: bool = typer.Option(False, "--no-templates", help="Records only."),
) -> None:
    """Everything in the gallery as JSON (templates as lists of numbers)."""
    from ctface.gallery import GalleryDatabase

    with GalleryDatabase(_db(db)) as g:
        data = g.export(include_templates=not no_templates)
    write_text_atomic(out, json.dumps(data, indent=1))
    out_console.print(
        f"wrote {out}: {len(data['patients'])} patients, {len(data['scans'])} scans", markup=False
    )
