"""The decision calibration measured on a phantom cohort (``ctface calibrate --cohort``).

Every scan of the cohort goes through the pipeline (cached, ``evaluate.cohort``), the
recognition model makes its template, and every pair of scans is scored: same subject ->
genuine, different subjects -> impostor (``gallery.calibrate``). The provenance names the
cohort by its settings (``cohort.json`` of a ``ctface phantom`` cohort), never by a machine
path: the file may be shipped. A site's own calibration from its gallery is
``gallery/site.py``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ctface.embed.embedder import FaceEmbedder
from ctface.errors import CtfaceError
from ctface.evaluate.cohort import prepare_cohort
from ctface.gallery.calibration import Calibration, calibrate

OPERATING_FMRS = (1e-2, 1e-3, 1e-4)  # the false-match rates a calibration is reported at
# progress(stage, done, total): stage "pipeline" (total None until the manifest is read),
# then "embed"
Progress = Callable[[str, int, int | None], None]


@dataclass(frozen=True)
class CohortCalibration:
    """A calibration measured on a cohort, with what it was measured on."""

    calibration: Calibration
    scans: int  # scans scored (failures to acquire left out)
    subjects: int
    failures: dict[str, str]  # scan_id -> reason: failures to acquire

    def operating_points(self) -> dict[str, dict[str, float] | None]:
        """Per FMR of ``OPERATING_FMRS`` (keyed as ``f"{fmr:g}"``): the threshold and the
        FNMR there (rounded to 4 places), or None where the cohort has too few impostor
        comparisons to measure that FMR."""
        cal = self.calibration
        rows: dict[str, dict[str, float] | None] = {}
        for f in OPERATING_FMRS:
            try:
                t = cal.threshold(f)
                rows[f"{f:g}"] = {"threshold": round(t, 4), "fnmr": round(cal.fnmr_at(t), 4)}
            except CtfaceError:
                rows[f"{f:g}"] = None
        return rows

    def to_json(self) -> dict[str, Any]:
        cal = self.calibration
        return {"model_version": cal.model_version, "scans": self.scans,
                "subjects": self.subjects, "genuine": len(cal.genuine),
                "impostor": len(cal.impostor), "failures_to_acquire": len(self.failures),
                "operating_points": self.operating_points()}  # fmt: skip

    def save(self, path: Path) -> None:
        """The calibration file (``Calibration.save``; OutputError if it cannot be written)."""
        self.calibration.save(path)


def cohort_provenance(cohort: Path, failures: dict[str, str]) -> dict[str, Any]:
    """What the calibration file says it was measured on (no machine path)."""
    prov: dict[str, Any] = {
        "cohort": cohort.name,
        "cohort_path": cohort.name,  # no machine path in a file that may be shipped
        "failures_to_acquire": failures,
        "command": "ctface calibrate",
    }
    spec_file = cohort / "cohort.json"
    if spec_file.is_file():  # a `ctface phantom` cohort: name it by its settings, not its path
        spec = json.loads(spec_file.read_text())
        style = "" if spec.get("style", "standard") == "standard" else f" ({spec['style']} style)"
        prov["cohort"] = f"phantom cohort seed {spec.get('seed')}{style}"
        prov["cohort_spec"] = spec
    return prov


@dataclass(frozen=True)
class CohortTemplates:
    """One template per acquired scan of a cohort, row-aligned with its subject and scan."""

    vectors: np.ndarray  # (N, D) float32 unit vectors
    subjects: np.ndarray  # (N,) subject IDs
    scan_ids: list[str]
    failures: dict[str, str]  # scan_id -> reason: failures to acquire


def cohort_templates(
    cohort: Path, cache: Path, model: FaceEmbedder, jobs: int = 1, progress: Progress | None = None
) -> CohortTemplates:
    """Every scan of the cohort through the pipeline (cached in ``cache``; resumable) and the
    model: its template. InvalidInputError when ``cohort`` is not a cohort."""

    def tell(stage: str, done: int, total: int | None) -> None:
        if progress is not None:
            progress(stage, done, total)

    tell("pipeline", 0, None)
    scans = prepare_cohort(cohort, cache, jobs, lambda i, n: tell("pipeline", i, n))
    tell("embed", 0, len(scans.examples))
    vectors = []
    for k, ex in enumerate(scans.examples):
        vectors.append(model.template_of_depth(ex.depth_mm).vector)
        tell("embed", k + 1, len(scans.examples))
    subjects = np.array([ex.subject_id for ex in scans.examples])
    ids = [ex.scan_id for ex in scans.examples]
    return CohortTemplates(np.array(vectors, np.float32), subjects, ids, scans.failures)


def calibrate_on_cohort(
    cohort: Path,
    cache: Path,
    model: FaceEmbedder,
    jobs: int = 1,
    progress: Progress | None = None,
) -> CohortCalibration:
    """Genuine and impostor scores of ``model`` on every pair of the cohort's scans (pipeline
    results cached in ``cache``; resumable). InvalidInputError: not a cohort, or nobody
    scanned twice."""
    t = cohort_templates(cohort, cache, model, jobs, progress)
    prov = cohort_provenance(cohort, t.failures)
    cal = calibrate(t.vectors, t.subjects, model.version, prov)
    return CohortCalibration(cal, len(t.subjects), int(len(np.unique(t.subjects))), t.failures)
