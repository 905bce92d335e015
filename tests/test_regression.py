"""Recognition regression: a fixed-seed phantom cohort with harsh nuisances through the whole
pipeline (load -> landmarks -> render -> template) with the shipped model and calibration.

8 people x 2 scans, a quarter of them DICOM series, with the nuisance rates of the model card's
harsh cohorts (RT masks, tubes, expressions, open jaws, dental metal, pose, field-of-view cuts)
at coarse, fast acquisitions (0.9-1 mm pixels, 2-3 mm slices). A worse model fails here: every
mate must be ranked first, every genuine pair must score above, and every impostor pair below,
the shipped threshold at FMR 1e-3. `ctface calibrate` on the same scans must give the
thresholds of their own scores, and its FMR 1e-2 threshold must lie near the shipped one.
Measured with the shipped model (391b0a8a), before masks were opened away (the figures since
are not recorded; the test passes with them): 7 of the 16 scans under an RT mask, 4 with a tube;
rank-1 8/8; lowest genuine 0.590 and highest impostor 0.266 against the threshold 0.559; FMR
1e-2 threshold on these scans 0.245 (shipped 0.363). Release eef0a5fa on the same scans, today:
0.667 and 0.343 against its 0.510; 0.234 (its 0.358).

``CTFACE_REGRESSION_WEIGHTS=FILE`` runs it with another model file (to show what it catches).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import FAST, Cli, make_cohort

from ctface.embed.embedder import FaceEmbedder
from ctface.evaluate import cross_scan
from ctface.evaluate.cohort import CohortScans, prepare_cohort
from ctface.evaluate.metrics import pair_scores, threshold_at_rate
from ctface.gallery.calibration import Calibration
from ctface.phantom.params import NuisanceConfig

SEED = 9191
SUBJECTS = 8
HARSH_RATES = Path(__file__).parents[1] / "benchmarks/results/evaluation/cohort_nuisance.json"
# The FMR 1e-2 threshold from 8 x 7 x 4 / 2 = 112 impostor pairs lies within this of the
# shipped one (fitted on 10,473 pairs of another cohort): with 112 pairs it is the second
# highest impostor score, which moves by about this much from one small cohort to the next.
CALIBRATION_TOLERANCE = 0.15


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, CohortScans]:
    rates = json.loads(HARSH_RATES.read_text())
    fast = {k: getattr(FAST, k) for k in ("pixel_mm", "slice_thickness_mm", "p_overlapping_slices")}
    harsh = NuisanceConfig.from_dict({**rates, **fast})
    root = tmp_path_factory.mktemp("regression")
    folder, cache = root / "cohort", root / "cache"
    make_cohort(folder, subjects=SUBJECTS, scans_min=2, scans_max=2, seed=SEED,
                dicom_fraction=0.25, nuisance=harsh)  # fmt: skip
    return folder, cache, prepare_cohort(folder, cache, jobs=2)


@pytest.fixture(scope="module")
def model() -> FaceEmbedder:
    return FaceEmbedder.load(os.environ.get("CTFACE_REGRESSION_WEIGHTS") or None)


@pytest.fixture(scope="module")
def templates(
    cohort: tuple[Path, Path, CohortScans], model: FaceEmbedder
) -> tuple[np.ndarray, np.ndarray]:
    examples = cohort[2].examples
    t = np.array([model.template_of_depth(ex.depth_mm).vector for ex in examples])
    subjects = np.unique([ex.subject_id for ex in examples], return_inverse=True)[1]
    return t, subjects


def test_cohort_is_harsh_and_every_scan_goes_through(
    cohort: tuple[Path, Path, CohortScans],
) -> None:
    folder, _, scans = cohort
    assert scans.failures == {}
    assert len(scans.examples) == 2 * SUBJECTS
    rows = scans.rows
    nuisances = sum(r["mask"] == "1" or r["tube"] not in ("", "none") for r in rows)
    assert nuisances >= 3, "the fixed seed must keep masks or tubes in the cohort"
    assert any(r["format"] == "dicom" for r in rows)


def test_shipped_model_ranks_every_mate_first_and_decides_right(
    templates: tuple[np.ndarray, np.ndarray],
) -> None:
    t, subjects = templates
    r = cross_scan(t, subjects)
    assert r.rank1 == 1.0, f"rank-1 {r.rank1:.3f} ({r.hits} of {r.n_probes})"
    threshold = Calibration.load().threshold(1e-3)
    genuine, impostor = pair_scores(t, subjects)
    assert genuine.min() > threshold, f"lowest genuine {genuine.min():.3f} <= {threshold:.3f}"
    assert impostor.max() < threshold, f"highest impostor {impostor.max():.3f} >= {threshold:.3f}"


def test_calibrate_reproduces_thresholds_on_the_same_scans(
    cohort: tuple[Path, Path, CohortScans],
    templates: tuple[np.ndarray, np.ndarray],
    cli: Cli,
    tmp_path: Path,
) -> None:
    folder, cache, _ = cohort
    out = tmp_path / "cal.json"
    args = ["calibrate", "--cohort", str(folder), "--cache", str(cache), "--out", str(out)]
    weights = os.environ.get("CTFACE_REGRESSION_WEIGHTS")
    r = cli(*args, *(["--weights", weights] if weights else []), "--json")
    assert r.returncode == 0, r.stderr
    cal = Calibration.load(out)
    genuine, impostor = pair_scores(*templates)
    assert len(cal.genuine) == len(genuine) == SUBJECTS
    assert len(cal.impostor) == len(impostor) == SUBJECTS * (SUBJECTS - 1) * 4 // 2
    assert cal.threshold(1e-2) == pytest.approx(threshold_at_rate(impostor, 1e-2), abs=1e-4)
    shipped = Calibration.load().threshold(1e-2)
    assert abs(cal.threshold(1e-2) - shipped) < CALIBRATION_TOLERANCE, (
        f"FMR 1e-2 threshold {cal.threshold(1e-2):.3f} on these scans, shipped {shipped:.3f}"
    )
