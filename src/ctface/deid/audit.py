"""The audit of a shared (de-identified) CT dataset: which of its scans still show a face, and
which can be re-identified against a reference of identified scans, by each attack.

Each scan is read once (``scan_evidence``): ctface's quality gate says whether a usable face is
present (and the face separation's share of the image, the face-presence score); ctface's
template is made even where the gate refuses the scan (an attacker does not respect our gate),
and the independent attacks (``deid.attacks``) extract their features. Scores are compared per
reference person (the best of their scans), then ``deid.audit_metrics`` gives rank-1/5 and
TPIR at FPIR with CIs, per attack and the worst case.

Who each shared scan really is (``truth``: scan id -> person) is what a data-sharing team
knows and an attacker does not; without it the audit reports each scan's best match only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ctface.deid.attacks import Attack, Features, attack_scores
from ctface.deid.attacks import features as attack_features
from ctface.deid.audit_metrics import (
    AttackMetrics,
    AttackScores,
    ProbeRisk,
    WorstCase,
    attack_metrics,
    per_probe_risk,
    worst_case,
)
from ctface.errors import FailureToAcquire, InvalidInputError, NoFaceError
from ctface.ingest.volume import CtVolume

VOLUME_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")


@dataclass(frozen=True)
class ScanEvidence:
    """What the attacks keep of one scan (picklable)."""

    scan_id: str
    person: str | None
    gate: str  # "usable" or the quality gate's failure code
    face_fraction: float | None  # face-presence score: the face separation's share
    template: np.ndarray | None  # ctface's template (None: not even an ungated one)
    independent: dict[str, Features] = field(default_factory=dict)
    frontal: np.ndarray | None = None  # uint8 frontal depth image (the report's thumbnail)


def find_scans(folder: Path) -> list[Path]:
    """The CT scans in ``folder``: volume files, and folders holding DICOM files (one scan each;
    a folder's DICOM files are one scan), sorted."""
    if not folder.is_dir():
        raise InvalidInputError(f"{folder} is not a folder")
    return [p for p in sorted(folder.rglob("*")) if not p.name.startswith(".") and _is_scan(p)]


def _is_scan(p: Path) -> bool:
    if p.is_file():
        return p.name.lower().endswith(VOLUME_SUFFIXES)
    return p.is_dir() and any(_is_dicom(f) for f in sorted(p.iterdir())[:3] if f.is_file())


def _is_dicom(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(132)[128:] == b"DICM"
    except OSError:
        return False


def _ctface(volume: CtVolume, model: Any) -> tuple[str, float | None, np.ndarray | None,
                                                     np.ndarray | None]:  # fmt: skip
    """Gate verdict, face share, template (ungated where the gate refuses), frontal image."""
    from ctface.gallery.acquire import acquire, frontal_image, template_views
    from ctface.render.depth import render_face

    try:
        a = acquire(volume, model, digest=False)
        return "usable", a.template.face_fraction, a.template.vector, a.frontal
    except FailureToAcquire as e:
        gate = str(e.code)
    try:
        rendering = render_face(volume, views=template_views())
        t = model.template(rendering)
        return gate, t.face_fraction, t.vector, frontal_image(rendering)
    except NoFaceError:
        return gate, None, None, None


def scan_evidence(
    scan_id: str,
    source: Path | CtVolume,
    person: str | None,
    attacks: Sequence[Attack],
    model: Any,
) -> ScanEvidence:
    """Read one scan (a path, or a volume already defaced in memory) and run every attack's
    extraction on it."""
    from ctface.ingest.reader import load_ct

    volume = source if isinstance(source, CtVolume) else load_ct(source)
    gate, share, template, frontal = _ctface(volume, model)
    independent = {str(a): attack_features(a, volume) for a in attacks if a != Attack.CTFACE}
    return ScanEvidence(scan_id, person, gate, share, template, independent, frontal)


def _person_scores(scores: np.ndarray, people: list[str], names: list[str]) -> np.ndarray:
    """(P, scans) -> (P, people): each person's best scan; a person none of whose scans the
    attack could use gets the row's lowest score (never ranked first)."""
    out = np.full((scores.shape[0], len(names)), np.nan)
    index = {n: i for i, n in enumerate(names)}
    for c, person in enumerate(people):
        col = index[person]
        out[:, col] = np.fmax(out[:, col], scores[:, c])
    failed_row = np.isnan(scores).all(axis=1)
    low = np.nanmin(np.where(np.isnan(out), np.inf, out), axis=1)
    fill = np.where(np.isfinite(low), low, 0.0)
    out = np.where(np.isnan(out), fill[:, None], out)
    out[failed_row] = np.nan
    return out


def attack_matrix(attack: Attack, probes: list[ScanEvidence],
                  references: list[ScanEvidence]) -> AttackScores:  # fmt: skip
    """One attack's scores of every probe against every reference person."""
    names = sorted({r.person for r in references if r.person is not None})
    people = [r.person or "" for r in references]
    scans = _scan_scores(attack, probes, references)
    mate = np.array([names.index(p.person) if p.person in names else -1 for p in probes])
    return AttackScores(str(attack), _person_scores(scans, people, names), mate,
                        [p.scan_id for p in probes], names)  # fmt: skip


def _scan_scores(
    attack: Attack, probes: list[ScanEvidence], references: list[ScanEvidence]
) -> np.ndarray:
    """(P, scans): template dot products (ctface), else ``attacks.attack_scores`` on the kept
    features (one KD-tree per reference); NaN where a side has nothing to compare."""
    if attack == Attack.CTFACE:
        dim = next((e.template.shape[0] for e in (*probes, *references)
                    if e.template is not None), 1)  # fmt: skip
        nan = np.full(dim, np.nan, np.float32)

        def vectors(es: list[ScanEvidence]) -> np.ndarray:
            return np.array([e.template if e.template is not None else nan for e in es])

        return vectors(probes) @ vectors(references).T

    def kept(e: ScanEvidence) -> Features:
        return e.independent.get(str(attack)) or Features(attack, failure="not extracted")

    return attack_scores(attack, [kept(p) for p in probes], [kept(r) for r in references]).scores


@dataclass(frozen=True)
class AuditResult:
    metrics: list[AttackMetrics]
    worst: WorstCase | None
    risks: list[ProbeRisk]
    presence: dict[str, dict[str, Any]]  # scan id -> gate, face share, failures


def audit(
    probes: list[ScanEvidence],
    references: list[ScanEvidence],
    attacks: Sequence[Attack],
    *,
    n_boot: int = 1000,
    progress: Callable[[str], None] | None = None,
) -> AuditResult:
    """Every attack's metrics, the worst case and each probe's risk."""
    matrices = []
    for a in attacks:
        matrices.append(attack_matrix(a, probes, references))
        if progress:
            progress(str(a))
    with_truth = any(p.person is not None for p in probes)
    metrics = [attack_metrics(m, n_boot=n_boot) for m in matrices] if with_truth else []
    presence = {
        p.scan_id: {
            "gate": p.gate,
            "face_fraction": p.face_fraction,
            "failures": {k: f.failure for k, f in p.independent.items() if f.failure},
        }
        for p in probes
    }
    return AuditResult(metrics, worst_case(metrics) if metrics else None,
                       per_probe_risk(matrices), presence)  # fmt: skip


@dataclass(frozen=True)
class ScanItem:
    """A scan to read: its id in reports, where it is, who it is (None: unknown)."""

    scan_id: str
    path: Path
    person: str | None


def _evidence_job(item: ScanItem, attacks: tuple[Attack, ...], weights: str | None
                  ) -> ScanEvidence | str:  # fmt: skip
    from ctface.embed.embedder import cached_model
    from ctface.errors import CtfaceError

    try:
        return scan_evidence(item.scan_id, item.path, item.person, attacks, cached_model(weights))
    except CtfaceError as e:
        return f"{item.scan_id}: {e}"


def evidence_of(
    items: list[ScanItem],
    attacks: Sequence[Attack],
    *,
    weights: str | None = None,
    jobs: int = 1,
    progress: Callable[[ScanEvidence | str], None] | None = None,
) -> tuple[list[ScanEvidence], list[str]]:
    """Every scan's evidence (``jobs`` processes), and the scans that could not be read."""
    from ctface.jobs import map_jobs

    args = [(it, tuple(attacks), weights) for it in items]
    results = map_jobs(_evidence_job, args, jobs, progress)
    return ([r for r in results if isinstance(r, ScanEvidence)],
            [r for r in results if isinstance(r, str)])  # fmt: skip


def reference_items(folder: Path) -> list[ScanItem]:
    """A reference folder's scans, one subfolder per person (``folder/<person>/<scan>``)."""
    items = []
    for path in find_scans(folder):
        rel = path.relative_to(folder)
        if len(rel.parts) < 2:
            raise InvalidInputError(
                f"reference scan {rel} is not in a person's subfolder: a reference folder "
                "holds one subfolder per person (REFERENCE/<person>/<scan>)"
            )
        items.append(ScanItem(rel.as_posix(), path, rel.parts[0]))
    if not items:
        raise InvalidInputError(f"no CT scans found in the reference folder {folder}")
    return items


def gallery_references(db: Path, attacks: Sequence[Attack]) -> tuple[list[ScanEvidence], int]:
    """A gallery's enrolled scans as references: ctface templates from the database; the
    independent attacks read each scan's recorded source where it is still at hand (the number
    of scans whose source is missing is returned: they take part in ctface's attack only)."""
    from ctface.gallery.store import GalleryDatabase
    from ctface.ingest.reader import load_ct

    out, missing = [], 0
    with GalleryDatabase(db) as g:
        t = g.templates()
        stored = {s.scan_key: s for s in g.scans(scan_keys=[int(k) for k in t.scan_keys])}
    for vector, person, key in zip(t.vectors, t.patient_ids, t.scan_keys, strict=True):
        source = Path(stored[int(key)].record.source)
        independent: dict[str, Features] = {}
        if source.exists():
            volume = load_ct(source)
            independent = {str(a): attack_features(a, volume) for a in attacks
                           if a != Attack.CTFACE}  # fmt: skip
        else:
            missing += 1
        out.append(ScanEvidence(f"{person}/{key}", person, "usable", None, vector, independent))
    return out, missing


def read_truth(path: Path) -> dict[str, str]:
    """A CSV with columns ``scan`` (the scan's id: its path relative to its --scans folder)
    and ``person`` (who it is, as named in the reference)."""
    import csv

    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise InvalidInputError(f"cannot read the truth file {path}: {e}") from e
    if not rows or not {"scan", "person"} <= set(rows[0]):
        raise InvalidInputError(f"{path}: a truth file needs the columns scan,person")
    truth = {}
    for line, row in enumerate(rows, start=2):
        scan, person = (row.get("scan") or "").strip(), (row.get("person") or "").strip()
        if scan and not person:
            raise InvalidInputError(f"{path}, line {line}: scan {scan!r} has no person")
        if scan:
            truth[scan] = person
    return truth


def shared_items(folders: list[Path], truth: dict[str, str] | None) -> list[ScanItem]:
    """The shared dataset's scans (id: path relative to its folder), with the truth's person.
    With a truth, a scan it does not name is left out of the audit (unknown is not "not in
    the reference"); none named: InvalidInputError."""
    items = []
    for folder in folders:
        for path in find_scans(folder):
            sid = path.relative_to(folder).as_posix()
            items.append(ScanItem(sid, path, truth.get(sid) if truth else None))
    if not items:
        raise InvalidInputError("no CT scans found in " + ", ".join(map(str, folders)))
    if len({it.scan_id for it in items}) < len(items):
        raise InvalidInputError("two shared scans have the same path under their --scans folders")
    if truth is not None:
        items = [it for it in items if it.person is not None]
        if not items:
            raise InvalidInputError(
                "--truth names none of the shared scans (its scan column: each scan's path "
                "relative to its --scans folder)"
            )
    return items
