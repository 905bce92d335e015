"""Issue 16: domain-randomization devices and the held-out generator style.

Byte identity of existing cohorts, each new device forced on its own, the held-out style
recorded and run end to end (tiny, coarse volumes).
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
from conftest import FACE_MODEL, FAST, Cli, needs_face_model

from ctface.landmarks.dataset import DOMAIN_RANDOMIZED, TRAINING_NUISANCE
from ctface.phantom.cohort import CohortSpec, ScanJob, draw_job, synthesize_job
from ctface.phantom.params import (
    EXTRA_FACTORS,
    GeneratorStyle,
    NuisanceConfig,
    ScanParams,
    with_extras,
)

TRAINING_FAST = replace(
    TRAINING_NUISANCE,
    pixel_mm=FAST.pixel_mm,
    slice_thickness_mm=FAST.slice_thickness_mm,
    p_overlapping_slices=0.0,
)
# sha256 of hu bytes + affine bytes, computed on the generator before issue 16's changes
# (fast seed 7: mask and dental metal; training seed 22: ET tube and mask)
BEFORE = {
    ("fast", 7): "2cd06576370ea48de067194fd6c5cc8bd2413cf7847a5bd2847c9e59b926f0c5",
    ("training", 22): "dcee2d0737e1de699302e322f701004c4bf012aaaa24382e34cca102985d2008",
}


def _spec(cfg: NuisanceConfig, seed: int, style: str = "standard") -> CohortSpec:
    needs_face_model()
    return CohortSpec(
        subjects=1, scans_min=1, scans_max=1, seed=seed,
        face_model=str(FACE_MODEL), nuisance=cfg, style=GeneratorStyle(style),
    )  # fmt: skip


@pytest.mark.parametrize(("name", "seed"), list(BEFORE))
def test_existing_cohorts_keep_their_bytes(name: str, seed: int) -> None:
    cfg = FAST if name == "fast" else TRAINING_FAST
    res, _ = synthesize_job(_spec(cfg, seed), ScanJob(0, 0, 1))
    digest = hashlib.sha256(res.volume.hu.tobytes() + res.volume.affine_lps.tobytes())
    assert digest.hexdigest() == BEFORE[(name, seed)]
    assert res.scan.extra_devices == {} and res.scan.style == "standard"


def test_new_fields_default_off_round_trip_and_old_metadata_loads() -> None:
    cfg = NuisanceConfig()
    for f in EXTRA_FACTORS:
        assert getattr(cfg, f"p_{f}") == 0.0
        assert getattr(DOMAIN_RANDOMIZED, f"p_{f}") > 0.0
    values = json.loads(json.dumps(asdict(DOMAIN_RANDOMIZED)))
    assert NuisanceConfig.from_dict(values) == DOMAIN_RANDOMIZED
    assert NuisanceConfig.from_dict({"p_glasses": 1.0}).p_glasses == 1.0
    _, scan, _ = draw_job(_spec(FAST, 3), ScanJob(0, 0, 1))
    new = ("style", "extra_seed", "extra_devices", "heldout")
    old = {k: v for k, v in scan.to_json().items() if k not in new}
    assert ScanParams(**old) == scan


@pytest.fixture(scope="module")
def bare() -> tuple[object, np.ndarray, ScanParams]:
    """A head without devices (no mask, no tube) and its 68 landmarks."""
    from ctface.phantom.anatomy import build_head
    from ctface.phantom.cohort import load_generator_model
    from ctface.phantom.generator import scan_vertices

    spec = _spec(replace(FAST, p_mask=0.0, p_endotracheal=0.0, p_nasogastric=0.0), 3)
    model, maps = load_generator_model(spec.face_model)
    subject, scan, rng = draw_job(spec, ScanJob(0, 0, 1))
    v = scan_vertices(model, maps, subject, scan)
    head = build_head(model, maps, v, habitus=subject.habitus, weight_change_mm=0.0, rng=rng)
    return head, v[model.landmarks68].astype(np.float64), scan


def _dress(bare: tuple[object, np.ndarray, ScanParams], scan: ScanParams) -> tuple[object, dict]:
    from ctface.phantom.generator import dress_head

    head = copy.deepcopy(bare[0])
    info = dress_head(head, bare[1], scan, np.random.default_rng(0))
    return head, info


def _changed(before: object, after: object) -> tuple[np.ndarray, np.ndarray]:
    """Model-frame points (mm) where the dressed head differs from the plain one, and their
    distance to the plain head's skin (mm)."""
    b, a = before, after
    if a.sdf.shape != b.sdf.shape:  # grid grown: compare on the common part
        off = np.round((b.origin - a.origin) / a.step).astype(int)
        sl = tuple(slice(o, o + n) for o, n in zip(off, b.sdf.shape, strict=True))
        a = copy.copy(a)
        a.sdf, a.interior_hu = a.sdf[sl], a.interior_hu[sl]
        a.exterior_hu = None if a.exterior_hu is None else a.exterior_hu[sl]
    ext_b = b.exterior_hu if b.exterior_hu is not None else np.full(b.sdf.shape, -1000.0)
    ext_a = a.exterior_hu if a.exterior_hu is not None else np.full(b.sdf.shape, -1000.0)
    diff = (np.abs(ext_a - ext_b) > 1) | (np.abs(a.interior_hu - b.interior_hu) > 1)
    diff |= np.abs(a.sdf - b.sdf) > 1e-3
    idx = np.argwhere(diff)
    return idx * b.step + b.origin, b.sdf[diff]


@pytest.mark.parametrize("factor", EXTRA_FACTORS)
def test_each_device_changes_voxels_near_the_face_only_when_forced(
    bare: tuple[object, np.ndarray, ScanParams], factor: str
) -> None:
    head0, lm, scan = bare
    off = with_extras(scan, 123, FAST, GeneratorStyle.STANDARD)
    assert off == scan
    plain, _ = _dress(bare, off)
    on = with_extras(scan, 123, replace(FAST, **{f"p_{factor}": 1.0}), GeneratorStyle.STANDARD)
    assert factor in on.extra_devices and set(on.extra_devices) <= {factor, "mask_variant"}
    dressed, info = _dress(bare, on)
    pts, skin_d = _changed(plain, dressed)
    assert len(pts) > 20, factor
    assert (skin_d < 12).sum() > 10, factor  # it touches or lies on the face/head
    if factor == "skin_bumps":  # the whole skin moves a little, nothing else
        assert np.abs(skin_d).max() <= 8.0
        return
    reach = np.linalg.norm(pts - lm[30], axis=1)
    assert reach.max() < 300, (factor, reach.max())  # on and around the head only
    assert skin_d.max() < 100 or factor == "et_connector", (factor, skin_d.max())
    kind = {"et_connector": "tube", "mask_open_face": "mask", "mask_thick": "mask"}
    assert kind.get(factor, factor) in info


def test_heldout_devices_differ_and_are_recorded(
    bare: tuple[object, np.ndarray, ScanParams],
) -> None:
    cfg = replace(FAST, p_bite_block=1.0)
    scan = replace(bare[2], tube="endotracheal", mask=True)
    held = with_extras(scan, 5, cfg, GeneratorStyle.HELDOUT)
    std = with_extras(scan, 5, cfg, GeneratorStyle.STANDARD)
    assert held.style == "heldout" and held.heldout["kernel"] in ("smooth", "sharp")
    assert -25 <= held.fov_offset_mm[0] <= 25 and not std.heldout
    h_head, h_info = _dress(bare, held)
    s_head, s_info = _dress(bare, std)
    assert set(h_info) >= {"mask", "tube", "bite_block"} and h_info["tube"] == held.heldout["et"]
    assert h_head.sdf.shape != s_head.sdf.shape  # the hose needs a larger grid
    front = h_head.origin[2] + h_head.step * (h_head.sdf.shape[2] - 1)
    assert front > bare[1][30][2] + 80  # 8-15 cm of tube, connector and hose in front


def test_heldout_scan_runs_and_differs() -> None:
    cfg = replace(FAST, p_dental_metal=1.0, p_endotracheal=1.0)
    a, _ = synthesize_job(_spec(cfg, 9), ScanJob(0, 0, 1))
    b, _ = synthesize_job(_spec(cfg, 9, "heldout"), ScanJob(0, 0, 1))
    assert b.truth["scan"]["style"] == "heldout" and b.truth["scan"]["heldout"]
    assert np.array_equal(b.subject.identity, a.subject.identity)  # same people
    assert b.volume.hu.shape != a.volume.hu.shape or not np.array_equal(b.volume.hu, a.volume.hu)
    assert list(b.truth["scan"]["fov_offset_mm"]) == b.scan.heldout["fov_offset_mm"]


def test_cli_heldout_end_to_end(tmp_path: Path, cli: Cli) -> None:
    needs_face_model()
    nuis = tmp_path / "n.json"
    nuis.write_text(json.dumps({**{k: list(v) for k, v in asdict(FAST).items()
                                   if isinstance(v, tuple)}, "p_hair": 1.0}))  # fmt: skip
    out = tmp_path / "held"
    res = cli("phantom", "--subjects", "1", "--scans-min", "1", "--scans-max", "1",
              "--style", "heldout", "--nuisance", str(nuis), "--out", str(out),
              "--face-model", str(FACE_MODEL), "--json")  # fmt: skip
    assert res.returncode == 0, res.stderr
    meta = json.loads((out / "cohort.json").read_text())
    assert meta["style"] == "heldout" and meta["nuisance"]["p_hair"] == 1.0
    row = json.loads(res.stdout)["scans"][0]
    truth = json.loads((out / row["truth"]).read_text())
    assert truth["scan"]["style"] == "heldout" and "hair" in truth["scan"]["extra_devices"]
    assert "hair" in truth["devices"]
    bad = cli("phantom", "--subjects", "1", "--style", "nope", "--out", str(tmp_path / "x"))
    assert bad.returncode == 2


def test_hair_is_partly_denser_than_the_skin_threshold(
    bare: tuple[object, np.ndarray, ScanParams],
) -> None:
    on = with_extras(bare[2], 7, replace(FAST, p_hair=1.0), GeneratorStyle.STANDARD)
    head, _ = _dress(bare, on)
    hair = head.exterior_hu[(head.exterior_hu > -990) & (head.sdf > 1.5)]
    assert (hair > -350).mean() > 0.02 and (hair < -350).mean() > 0.3


def test_device_past_the_grid_edge_stays_in_the_head_box() -> None:
    """An ET tube clipped at the front of the grid, head not turned, fine pixels: the device
    box used to reach a voxel past the head's pixel box (a broadcasting error)."""
    cfg = replace(FAST, p_endotracheal=1.0, pixel_mm=(0.6, 0.6), slice_thickness_mm=(3.0,),
                  pitch_deg=0.0, roll_deg=0.0, yaw_deg=0.0)  # fmt: skip
    res, _ = synthesize_job(_spec(cfg, 9), ScanJob(0, 0, 1))
    assert res.scan.tube == "endotracheal" and res.volume.hu.max() > 0
