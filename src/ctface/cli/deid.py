"""ctface deface (scans in, defaced and de-identified scans out) and ctface audit (how
re-identifiable a shared dataset still is)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from ctface.cli.common import out_console, progress_bar
from ctface.cli.main import app, err, one_line
from ctface.errors import CtfaceError, InvalidInputError, NoFaceError, OutputError


@app.command()
def deface(
    scans: list[Path] = typer.Argument(
        ..., help="CT scans: DICOM folders or files, NIfTI, NRRD, MetaImage.", readable=False
    ),
    out: Path = typer.Option(..., "--out", help="Output folder (defaced scans, qc/ pictures)."),
    method: str = typer.Option(
        "remove", "--method", help="remove (face -> air) or reface (face -> a generic face)."
    ),  # fmt: skip
    ears: bool = typer.Option(False, "--ears", help="Also remove the outer ears."),
    series_uid: str | None = typer.Option(None, "--series-uid", help="DICOM series to read."),
    qc_dir: Path | None = typer.Option(
        None,
        "--qc-dir",
        help="Folder for the QC pictures "
        "(default: OUT-qc beside OUT; they show the face "
        "before defacing: never share it).",
    ),  # fmt: skip
    qc: bool = typer.Option(True, "--qc/--no-qc", help="Write a QC picture per scan."),
    json_out: bool = typer.Option(False, "--json", help="Print the results as JSON."),
) -> None:
    """Deface CT scans: the face found by its landmarks is removed (or replaced by a generic
    face) and the scan written in its own format, DICOM headers de-identified (PS3.15 Basic
    Profile + Clean Recognizable Visual Features). A scan whose face is not found whole is
    refused (exit 6) and nothing is written for it."""
    from ctface.api import deface as run

    if method not in ("remove", "reface"):
        raise InvalidInputError(f"unknown --method {method!r} (remove, reface)")
    pictures = (qc_dir or out.with_name(out.name + "-qc")) if qc else None
    done: list[dict[str, Any]] = []
    refused: list[dict[str, Any]] = []
    with progress_bar(json_out or len(scans) == 1) as bar:
        task = bar.add_task("defacing", total=len(scans), info="")
        for scan in scans:
            try:
                result = run(scan, out, method=method, ears=ears, series_uid=series_uid,
                             qc_dir=pictures)  # fmt: skip
                done.append(result.to_json(out))
            except CtfaceError as e:
                if len(scans) == 1 and not json_out:
                    raise
                refused.append({"scan": scan.name, "reason": str(e), "exit_code": e.exit_code})
            bar.update(task, advance=1, info=scan.name)
    _report_deface(done, refused, out, json_out)
    if refused:  # 6 when every failure is a refused face, else the first other error's code
        codes = [r["exit_code"] for r in refused if r["exit_code"] != NoFaceError.exit_code]
        sys.exit(codes[0] if codes else NoFaceError.exit_code)


def _report_deface(
    done: list[dict[str, Any]], refused: list[dict[str, Any]], out: Path, json_out: bool
) -> None:
    if json_out:
        print(json.dumps({"defaced": done, "refused": refused}, indent=1))
        return
    for d in done:
        out_console.print(
            f"{d['source']} -> {out / d['output']}: {d['method']}, {d['removed_tissue_ml']} ml "
            f"of face removed{', generic face added' if d['generic_face_ml'] else ''}"
            f"{'; QC ' + d['qc'] if d['qc'] else ''}",
            highlight=False, markup=False, soft_wrap=True,
        )  # fmt: skip
    for r in refused:
        err.print(f"refused {escape(one_line(r['scan']))}: {escape(one_line(r['reason']))}",
                  highlight=False, soft_wrap=True)  # fmt: skip


@app.command()
def audit(
    scans: list[Path] = typer.Option(
        ...,
        "--scans",
        help="Folder(s) of the shared dataset's scans (repeat the option for several).",
    ),  # fmt: skip
    reference: Path = typer.Option(
        ...,
        "--reference",
        help="A gallery database (.db) or a folder of identified scans, one subfolder per person.",
    ),  # fmt: skip
    out: Path = typer.Option(..., "--out", help="Folder for audit.json, scans.csv, report.html."),
    truth: Path | None = typer.Option(
        None, "--truth", help="CSV scan,person: who each shared scan really is (rates need it)."
    ),  # fmt: skip
    attack: list[str] = typer.Option(
        ["ctface", "surface-icp", "face-2d"],
        "--attack",
        help="Attacks to run (repeat): ctface, surface-icp, face-2d.",
    ),  # fmt: skip
    compare: bool = typer.Option(
        False,
        "--compare",
        help="Deface the scans with each defacer "
        "(none, remove, reface, quickshear) and audit each.",
    ),  # fmt: skip
    jobs: int = typer.Option(1, "--jobs", min=1, help="Worker processes."),
    boot: int = typer.Option(1000, "--boot", min=10, help="Bootstrap resamples for the CIs."),
    weights: Path | None = typer.Option(None, "--weights", help="Recognition model file."),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Audit a shared (de-identified) CT dataset: is a face still present in each scan, and can
    it be re-identified against a reference by ctface, by ICP registration of the remaining skin
    surface, and by a 2D face recognizer on frontal renders? Rank-1/5 and TPIR at FPIR 1e-2 and
    1e-3 with bootstrap CIs per attack, the worst case, each scan's risk, an HTML report."""
    from ctface.deid.attacks import Attack

    try:
        attacks = [Attack(a) for a in dict.fromkeys(attack)]
    except ValueError:
        raise InvalidInputError(
            f"unknown --attack in {attack} (ctface, surface-icp, face-2d)"
        ) from None
    if compare and truth is None:
        raise InvalidInputError("--compare needs --truth (who each scan is)")
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out} is a file, not a folder")
    if Attack.FACE_2D in attacks:
        from ctface.deid.attacks import check_face_2d

        check_face_2d()  # the audit extra is missing: say so before reading anything
    w = str(weights) if weights else None
    items = _shared(scans, truth)  # bad input fails here, before the references are read
    refs = _references(reference, attacks, w, jobs, json_out)
    if compare:
        _run_compare(items, refs, attacks, out, w, jobs, boot, json_out)
    else:
        kept_in = reference if reference.is_file() else None  # a gallery: its review page
        _run_audit(items, refs, attacks, out, w, jobs, boot, json_out, kept_in,
                   ",".join(f.resolve().name for f in scans))  # fmt: skip


def _references(reference: Path, attacks: list[Any], weights: str | None, jobs: int,
                quiet: bool) -> list[Any]:  # fmt: skip
    from ctface.deid.audit import evidence_of, gallery_references, reference_items

    if reference.is_file():
        refs, missing = gallery_references(reference, attacks)
        if missing:
            err.print(f"{missing} reference scans' sources are not at hand: ctface's attack only",
                  soft_wrap=True)  # fmt: skip
        return refs
    if not reference.is_dir():
        raise InvalidInputError(f"--reference {reference} does not exist")
    items = reference_items(reference)
    with progress_bar(quiet) as bar:
        task = bar.add_task("reference", total=len(items), info="")
        refs, bad = evidence_of(items, attacks, weights=weights, jobs=jobs,
                                progress=lambda r: bar.update(task, advance=1))  # fmt: skip
    for b in bad:
        err.print(f"reference not read: {escape(one_line(b))}", highlight=False, soft_wrap=True)
    if not refs:
        raise InvalidInputError("none of the reference scans could be read")
    return refs


def _shared(scans: list[Path], truth: Path | None) -> list[Any]:
    from ctface.deid.audit import find_scans, read_truth, shared_items

    items = shared_items(scans, read_truth(truth) if truth else None)
    found = sum(len(find_scans(f)) for f in scans)
    if len(items) < found:
        err.print(f"{found - len(items)} shared scans are not in --truth: left out of the audit",
                  soft_wrap=True)  # fmt: skip
    return items


def _thumbnails(probes: list[Any], out: Path) -> dict[str, str]:
    """Each probe's frontal depth image as out/images/<n>.png (relative paths)."""
    from PIL import Image

    from ctface.files import atomic_path

    images = {}
    for n, p in enumerate(probes):
        if p.frontal is None:
            continue
        rel = f"images/{n:05d}.png"
        with atomic_path(out / rel) as tmp:
            Image.fromarray(p.frontal).resize((128, 128)).save(tmp, format="PNG")
        images[p.scan_id] = rel
    return images


def _run_audit(items: list[Any], refs: list[Any], attacks: list[Any], out: Path,
               weights: str | None, jobs: int, boot: int, json_out: bool,
               gallery: Path | None = None, dataset: str = "") -> None:  # fmt: skip
    from ctface.deid.audit import audit as run_audit
    from ctface.deid.audit import evidence_of
    from ctface.deid.audit_report import audit_document, write_audit_outputs

    with progress_bar(json_out) as bar:
        task = bar.add_task("shared scans", total=len(items), info="")
        probes, bad = evidence_of(items, attacks, weights=weights, jobs=jobs,
                                  progress=lambda r: bar.update(task, advance=1))  # fmt: skip
    if not probes:
        raise InvalidInputError("none of the shared scans could be read: " + "; ".join(bad[:3]))
    result = run_audit(probes, refs, attacks, n_boot=boot)
    usable = sum(1 for v in result.presence.values() if v["gate"] == "usable")
    inputs = {"shared_scans": len(items), "unreadable": bad, "reference_scans": len(refs),
              "reference_people": len({r.person for r in refs}),
              "attacks": [str(a) for a in attacks],
              "usable face (quality gate)": f"{usable} of {len(result.presence)}"}  # fmt: skip
    doc = audit_document(result.metrics, result.worst, inputs)
    doc["face_presence"] = result.presence  # per scan: gate verdict, face share, failures
    files = write_audit_outputs(out, doc, result.risks, _thumbnails(probes, out))
    if gallery is not None:
        _keep_risks(gallery, dataset, probes, result.risks)
    _print_audit(doc, result, files, json_out)


def _keep_risks(gallery: Path, dataset: str, probes: list[Any], risks: list[Any]) -> None:
    """The re-identified shared scans as findings in the reference gallery (``ctface serve``'s
    review page), with their frontal images."""
    from ctface.gallery.report import png_bytes
    from ctface.gallery.review import save_audit_risks
    from ctface.gallery.store import GalleryDatabase

    person = {p.scan_id: p.person for p in probes}
    rows = [{**r.to_json(), "person": person.get(r.probe_id)} for r in risks]
    images = {p.scan_id: png_bytes(p.frontal) for p in probes if p.frontal is not None}
    try:
        with GalleryDatabase(gallery) as g:
            n = len(save_audit_risks(g, dataset, rows, images))
    except CtfaceError as e:  # a read-only reference: the audit's files are what counts
        err.print(f"note: the findings were not kept in {gallery}: {e}", highlight=False,
                  markup=False, soft_wrap=True)  # fmt: skip
        return
    if n:
        err.print(f"{n} re-identified scans kept for review in {gallery}", highlight=False,
                  markup=False)  # fmt: skip


def _print_audit(doc: dict[str, Any], result: Any, files: dict[str, Path], json_out: bool) -> None:
    present = sum(1 for v in result.presence.values() if v["gate"] == "usable")
    if json_out:
        print(json.dumps({"attacks": doc["attacks"], "worst_case": doc["worst_case"],
                          "face_present": present, "scans": len(result.presence),
                          "report": str(files["html"])}, indent=1))  # fmt: skip
        return
    out_console.print(f"{present} of {len(result.presence)} shared scans show a usable face "
                      "(ctface's quality gate)", highlight=False, markup=False)  # fmt: skip
    for m in result.metrics:
        out_console.print(
            f"{m.attack}: rank-1 {m.rank1:.1%} [{m.rank1_ci95[0]:.1%}, {m.rank1_ci95[1]:.1%}], "
            f"rank-5 {m.rank5:.1%}, chance {m.chance_rank1:.1%}"
            f"{' (at chance)' if m.at_chance else ''}",
            highlight=False, markup=False,
        )  # fmt: skip
    if result.worst is not None:
        out_console.print(f"worst case: {result.worst.attack}", highlight=False, markup=False)
    out_console.print(f"report: {files['html']}", highlight=False, markup=False)


def _run_compare(items: list[Any], refs: list[Any], attacks: list[Any], out: Path,
                 weights: str | None, jobs: int, boot: int, json_out: bool) -> None:  # fmt: skip
    from ctface.deid.compare import Defacer, compare_defacers, compare_table

    with progress_bar(json_out) as bar:
        task = bar.add_task("defacing + attacks", total=len(items), info="")
        rows, bad = compare_defacers(items, refs, attacks, list(Defacer), weights=weights,
                                     jobs=jobs, n_boot=boot,
                                     progress=lambda r: bar.update(task, advance=1))  # fmt: skip
    doc, table = compare_table(rows, attacks, bad)
    from ctface.files import write_text_atomic

    write_text_atomic(out / "compare.json", json.dumps(doc, indent=1, allow_nan=False))
    write_text_atomic(out / "compare.md", table)
    if json_out:
        print(json.dumps(doc, indent=1))
    else:
        out_console.print(table, highlight=False, markup=False)
