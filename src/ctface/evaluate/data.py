"""A cohort as the evaluation harness sees it: the scans that went through the pipeline, their
subjects, their nuisances (the generator's ground truth) and every method's input, built once
and kept in memory: depth images at each data stage, point clouds, CT cubes."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ctface.embed.dataset import ImageSet, image_set
from ctface.embed.segment import FaceSegmenter
from ctface.evaluate.baselines.pointnet import POINTS, depth_points
from ctface.evaluate.cohort import prepare_cohort
from ctface.evaluate.volumes import ScanVolumes

NUISANCES = ("mask", "tube", "expression", "slice thickness", "pose")


def nuisance_groups(row: dict[str, str], truth: dict[str, Any] | None) -> dict[str, str]:
    """A phantom scan's nuisances as named groups (for the rank-1 breakdown)."""
    out = {
        "mask": "RT mask" if row.get("mask") == "1" else "no mask",
        "tube": "no tube" if row.get("tube", "none") in ("none", "") else "tube",
        "expression": "neutral" if row.get("expression", "") in ("", "neutral") else "expression",
    }
    t = float(row.get("slice_thickness_mm") or "nan")
    out["slice thickness"] = "<= 1 mm" if t <= 1 else ("1-3 mm" if t <= 3 else "> 3 mm")
    if truth is not None:
        s = truth.get("scan", {})
        a = max(abs(float(s.get(k, 0.0))) for k in ("pitch_deg", "roll_deg", "yaw_deg"))
        out["pose"] = "< 5 deg" if a < 5 else ("5-10 deg" if a < 10 else ">= 10 deg")
    return out


@dataclass
class CohortData:
    cohort: Path
    cache: Path
    paths: list[Path]  # depth caches of the scans the pipeline accepted, manifest order
    scan_ids: list[str]
    subject_ids: list[str]  # in order of first appearance
    scan_subject: np.ndarray  # (S,) index into subject_ids
    nuisance: list[dict[str, str]]  # (S,) groups per scan
    failures: dict[str, str]  # scan_id -> reason (failure to acquire)
    manifest_scans: int
    segmenter: FaceSegmenter
    segmenter_version: str  # digest of its weights
    # subject index of each failed scan whose subject has an accepted scan
    failed_subject: np.ndarray = field(default_factory=lambda: np.zeros(0, int))
    _memo: dict[str, Any] = field(default_factory=dict)

    @property
    def fta_rate(self) -> float:
        return len(self.failures) / max(self.manifest_scans, 1)

    def images(self, stage: str = "final") -> ImageSet:
        """Every view of every scan at a data stage (face separation by ``segmenter``)."""
        key = f"images-{stage}"
        if key not in self._memo:
            made = image_set(self.paths, self.segmenter, stage=stage)
            if made.scan_ids != self.scan_ids or made.subject_ids != self.subject_ids:
                raise RuntimeError("cohort cache and manifest disagree")  # never expected
            self._memo[key] = made
        data: ImageSet = self._memo[key]
        return data

    def points(self) -> np.ndarray:
        """(N, POINTS, 3) clouds of the segmented images (same order as ``images``)."""
        if "points" not in self._memo:
            rng = np.random.default_rng(0)
            self._memo["points"] = depth_points(self.images("segmented").images, POINTS, rng)
        pts: np.ndarray = self._memo["points"]
        return pts

    def volumes(self, crop: bool) -> np.ndarray:
        """(S, D, D, D) float16 CT cubes per scan: the face crop or the whole head."""
        key = f"volumes-{crop}"
        if key not in self._memo:
            vols = [ScanVolumes.load(p.with_name(p.stem + ".vol.npz")) for p in self.paths]
            self._memo[key] = np.stack([v.face if crop else v.head for v in vols])
        out: np.ndarray = self._memo[key]
        return out


def load_cohort(
    cohort: Path,
    cache: Path,
    segmenter: FaceSegmenter,
    jobs: int = 1,
    volumes: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> CohortData:
    """Every scan of a phantom cohort through the pipeline (cached, resumable); the CT cubes
    too with ``volumes``."""
    scans = prepare_cohort(cohort, cache, jobs, progress, volumes=volumes)
    subject_ids: list[str] = []
    scan_subject, nuisance = [], []
    rows = {r["scan_id"]: r for r in scans.rows}
    for ex in scans.examples:
        if ex.subject_id not in subject_ids:
            subject_ids.append(ex.subject_id)
        scan_subject.append(subject_ids.index(ex.subject_id))
        row = rows[ex.scan_id]
        truth_path = cohort / row.get("truth", "")
        truth = None
        if row.get("truth") and truth_path.is_file():
            truth = json.loads(truth_path.read_text())
        nuisance.append(nuisance_groups(row, truth))
    failed = [r["subject_id"] for r in scans.rows if r["scan_id"] in scans.failures]
    failed_subject = [subject_ids.index(s) for s in failed if s in subject_ids]
    return CohortData(
        cohort=cohort,
        cache=cache,
        paths=[cache / f"{ex.scan_id}.npz" for ex in scans.examples],
        scan_ids=[ex.scan_id for ex in scans.examples],
        subject_ids=subject_ids,
        scan_subject=np.array(scan_subject, int),
        nuisance=nuisance,
        failures=scans.failures,
        manifest_scans=len(scans.rows),
        segmenter=segmenter,
        segmenter_version=_digest(segmenter),
        failed_subject=np.array(failed_subject, int),
    )


def _digest(net: FaceSegmenter) -> str:
    h = hashlib.sha256()
    for k, v in net.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().numpy().tobytes())
    return h.hexdigest()[:16]
