"""``ctface audit --compare``: one cohort through several defacers, each audited the same way.

Defacers: ``none`` (the scan as shared with a de-identified header only: its pixels untouched),
ctface ``remove`` and ``reface``, and ``quickshear`` (``deid.third_party``). pydeface (needs
FSL) and mri_deface (needs FreeSurfer) cannot be installed from the package registries.
For each, the share of intracranial voxels it changed (``deid.deface.intracranial``: deeper
than 20 mm under the skin, behind the eyes) and the scans it refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np

from ctface.deid.deface import DefaceMethod, intracranial, plan_deface
from ctface.errors import NoFaceError
from ctface.ingest.volume import CtVolume


class Defacer(StrEnum):
    NONE = "none"
    REMOVE = "remove"
    REFACE = "reface"
    QUICKSHEAR = "quickshear"


@dataclass(frozen=True)
class Defaced:
    """One defacer's output for one scan: the volume, or the refusal's reason; the share of the
    scan's intracranial voxels it changed (None when the landmarks were not found)."""

    defacer: Defacer
    volume: CtVolume | None
    refused: str | None
    intracranial_changed: float | None


def defaced_variants(volume: CtVolume, defacers: list[Defacer]) -> list[Defaced]:
    """Every defacer's version of one canonical volume."""
    from ctface.deid.third_party import quickshear_deface
    from ctface.landmarks.detect import detect_landmarks

    try:
        landmarks = detect_landmarks(volume)
        inside = intracranial(volume, landmarks)
    except NoFaceError as e:
        landmarks, inside, why = None, None, str(e)
    out = []
    for d in defacers:
        try:
            if d == Defacer.NONE:
                hu = volume.hu
            elif d == Defacer.QUICKSHEAR:
                hu = quickshear_deface(volume).hu
            elif landmarks is None:
                raise NoFaceError(why)
            else:
                hu = plan_deface(volume, landmarks, DefaceMethod(d.value)).apply(volume.hu)
        except NoFaceError as e:
            out.append(Defaced(d, None, str(e), None))
            continue
        changed = None
        if inside is not None and inside.any():
            changed = float((inside & (hu != volume.hu)).sum() / inside.sum())
        out.append(Defaced(d, CtVolume(hu, volume.affine_lps, volume.metadata), None, changed))
    return out


def intracranial_summary(values: list[float | None]) -> dict[str, float | None]:
    v = np.array([x for x in values if x is not None], float)
    if not len(v):
        return {"mean": None, "max": None}
    return {"mean": float(v.mean()), "max": float(v.max())}


Variant = tuple[Defacer, object, float | None]


def _variants_job(
    item: Any, attacks: tuple[Any, ...], weights: str | None, defacers: tuple[Defacer, ...]
) -> list[Variant] | str:
    """One scan through every defacer, each output through every attack's extraction:
    [(defacer, ScanEvidence or the refusal, intracranial share changed)], or the read error."""
    from ctface.deid.audit import ScanItem, scan_evidence
    from ctface.embed.embedder import cached_model
    from ctface.errors import CtfaceError
    from ctface.ingest.reader import load_ct

    assert isinstance(item, ScanItem)
    try:
        volume = load_ct(item.path)
    except CtfaceError as e:
        return f"{item.scan_id}: {e}"
    model = cached_model(weights)
    out: list[Variant] = []
    for d in defaced_variants(volume, list(defacers)):
        if d.volume is None:
            out.append((d.defacer, d.refused, None))
            continue
        ev = scan_evidence(item.scan_id, d.volume, item.person, attacks, model)
        out.append((d.defacer, ev, d.intracranial_changed))
    return out


@dataclass(frozen=True)
class DefacerRow:
    defacer: Defacer
    result: Any  # AuditResult (None when every scan was refused)
    refused: list[str]
    intracranial: dict[str, float | None]


def compare_defacers(
    items: list[Any],
    references: list[Any],
    attacks: list[Any],
    defacers: list[Defacer],
    *,
    weights: str | None = None,
    jobs: int = 1,
    n_boot: int = 1000,
    progress: Any = None,
) -> tuple[list[DefacerRow], list[str]]:
    """Each defacer's audit of the same probes against the same references."""
    from ctface.deid.audit import audit
    from ctface.jobs import map_jobs

    args = [(it, tuple(attacks), weights, tuple(defacers)) for it in items]
    results = map_jobs(_variants_job, args, jobs, progress)
    unreadable = [r for r in results if isinstance(r, str)]
    rows = []
    for d in defacers:
        probes, refused, changed = [], [], []
        for r in results:
            if isinstance(r, str):
                continue
            for defacer, ev, share in r:
                if defacer != d:
                    continue
                if isinstance(ev, str):
                    refused.append(ev)
                else:
                    probes.append(ev)
                    changed.append(share)
        result = audit(probes, references, attacks, n_boot=n_boot) if probes else None
        rows.append(DefacerRow(d, result, refused, intracranial_summary(changed)))
    return rows, unreadable


NOT_RUN = {
    "pydeface": "not run: needs FSL (FLIRT), which does not install from the package registries",
    "mri_deface": "not run: needs FreeSurfer's templates, not installable from the registries",
}


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f} %"


def _cell(m: Any) -> str:
    """rank-1 [95 % CI] / TPIR@1e-2 of one attack's metrics (AttackMetrics)."""
    r1, ci = m.rank1, m.rank1_ci95
    t = m.tpir_at(1e-2)
    mark = "" if m.at_chance else " *"
    bound = "" if t.resolved else " †"
    return f"{_pct(r1)} [{_pct(ci[0])}, {_pct(ci[1])}]{mark} / {_pct(t.tpir)}{bound}"


def compare_table(rows: list[DefacerRow], attacks: list[Any],
                  unreadable: list[str]) -> tuple[dict[str, object], str]:  # fmt: skip
    """compare.json's document and the Markdown table (rank-1 [CI] / TPIR at FPIR 1e-2 per
    attack; * = above chance)."""
    from ctface.deid.audit_metrics import json_ready

    names = [str(a) for a in attacks]
    head = ["defacer", *names, "worst case", "intracranial changed (mean / max)", "refused"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    doc_rows = []
    for row in rows:
        res = row.result
        metrics = {m.attack: m for m in res.metrics} if res is not None else {}
        cells = [_cell(metrics[n]) if n in metrics else "-" for n in names]
        worst = res.worst.attack if res is not None and res.worst is not None else "-"
        ic = row.intracranial
        lines.append("| " + " | ".join([str(row.defacer), *cells, worst,
                                        f"{_pct(ic['mean'])} / {_pct(ic['max'])}",
                                        str(len(row.refused))]) + " |")  # fmt: skip
        doc_rows.append({
            "defacer": str(row.defacer),
            "attacks": {n: m.to_json() for n, m in metrics.items()},
            "worst_case": res.worst.to_json() if res is not None and res.worst else None,
            "intracranial_changed": ic,
            "refused": row.refused,
        })  # fmt: skip
    n = rows[0].result.metrics[0] if rows and rows[0].result and rows[0].result.metrics else None
    notes = [
        "Cells: rank-1 [exact 95 % CI] / TPIR at FPIR 1e-2 († fewer than 100 non-mated "
        "searches: TPIR with no false name allowed, a bound); * = above chance "
        f"(chance rank-1 {_pct(n.chance_rank1) if n else '-'})."
    ]
    notes += [f"{k}: {v}." for k, v in NOT_RUN.items()]
    table = "\n".join(lines) + "\n\n" + "\n".join(notes) + "\n"
    doc = {"defacers": doc_rows, "not_run": NOT_RUN, "unreadable": unreadable}
    return json_ready(doc), table
