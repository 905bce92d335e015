"""Random draws of subjects and scans: every probability and range the generator uses.

Subject-level draws (identity, head size, habitus) are shared by all scans of one person;
scan-level draws (expression, weight change, devices, pose, acquisition) are independent per scan.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field, fields, replace
from enum import StrEnum
from typing import Any, Literal

import numpy as np

from ctface.errors import InvalidInputError

Tube = Literal["none", "nasogastric", "endotracheal"]


class GeneratorStyle(StrEnum):
    """Which appearance/acquisition model and device designs the generator uses.

    ``standard``: the generator every training cohort is made with. ``heldout``: a second
    configuration for testing only (no training choice looks at it): other skin/fat HU and
    partial-volume blur, spatially correlated noise, another dental streak model,
    off-centre fields of view, and ET tube / mask / bite block designs that
    ``DOMAIN_RANDOMIZED`` never draws (its ET tube and connector lie within the training
    design's ranges; the ventilator hose on them is new). It is our own second configuration,
    written knowing the failures seen on an independent generator (issue 16): not truly
    independent data.
    """

    STANDARD = "standard"
    HELDOUT = "heldout"


# Expression modes never drawn as "mouth shapes" (eye gaze does not change the skin much).
_GAZE = ("eyeLook",)
SLICE_THICKNESS_CHOICES_MM = (0.6, 0.625, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0)


@dataclass(frozen=True)
class NuisanceConfig:
    """Probabilities and ranges of per-scan clinical nuisances and of the acquisition."""

    p_expression: float = 0.3  # a non-neutral mouth/brow/cheek expression (1-3 modes)
    expression_weight: tuple[float, float] = (0.2, 0.8)
    neutral_jitter: float = 0.08  # every scan: small random weights on 4 modes ("neutral" varies)
    p_jaw_open: float = 0.12
    jaw_open_weight: tuple[float, float] = (0.15, 0.6)
    p_eyes_closed: float = 0.2
    weight_change_sd_mm: float = 1.5  # soft tissue change vs the person's mean, clipped to +-max
    weight_change_max_mm: float = 4.0
    p_nasogastric: float = 0.08
    p_endotracheal: float = 0.06
    p_mask: float = 0.12  # thermoplastic radiotherapy immobilization mask over the face
    p_dental_metal: float = 0.25
    pitch_deg: float = 20.0  # head pose in the scanner, uniform in +-value
    roll_deg: float = 10.0
    yaw_deg: float = 15.0
    pixel_mm: tuple[float, float] = (0.4, 1.0)
    slice_thickness_mm: tuple[float, ...] = SLICE_THICKNESS_CHOICES_MM
    p_overlapping_slices: float = 0.2  # spacing = 0.5-0.8 x thickness (never below 0.5 mm)
    p_cut_top: float = 0.15  # field of view ends 10-50 mm below the vertex
    p_cut_chin: float = 0.08  # field of view ends between mouth and chin
    noise_hu_at_1mm: tuple[float, float] = (8.0, 30.0)  # noise SD at 1 mm slices (~ 1/sqrt(T))
    p_headrest: float = 0.9
    # Domain randomization (issue 16). All off by default; drawn from a separate random stream
    # (``side_stream_seed``) so cohorts made with these at 0 keep their bytes.
    p_et_connector: float = 0.0  # ET tube 30-90 mm out of the lips, straight or taped aside,
    #                              with a 15 mm connector (replaces any drawn tube)
    p_bite_block: float = 0.0  # plastic block between the teeth and lips
    p_mask_open_face: float = 0.0  # mask with openings at eyes, nose and mouth
    p_mask_thick: float = 0.0  # mask of a 3-4 mm sheet (edges at other heights)
    p_blanket: float = 0.0  # blanket/sheet folds over chin and neck
    p_pillow: float = 0.0  # foam or gel pad touching the cheek / side of the head
    p_strap: float = 0.0  # head-holder strap over the forehead
    p_hair: float = 0.0  # hair over scalp and forehead (partly denser than -350 HU)
    p_beard: float = 0.0  # beard and/or moustache
    p_glasses: float = 0.0  # glasses frame and lenses in front of the eyes
    p_skin_bumps: float = 0.0  # small random displacements of the skin surface

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> NuisanceConfig:
        """Defaults overridden by ``values`` (unknown keys are an error; lists become tuples)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InvalidInputError(f"unknown nuisance setting(s): {', '.join(unknown)}")
        fixed = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        return replace(cls(), **fixed)  # type: ignore[arg-type]


@dataclass(frozen=True)
class SubjectParams:
    subject_id: str
    identity: np.ndarray  # (n_modes,) N(0, 1) weights
    head_scale: float  # global size factor
    habitus: float  # soft-tissue build, N(0, 1): thicker fat and soft tissue when positive
    sex: str
    birth_year: int

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["identity"] = [round(float(x), 6) for x in self.identity]
        return d


@dataclass(frozen=True)
class ScanParams:
    scan_id: str
    expression: dict[str, float]
    weight_change_mm: float
    tube: Tube
    tube_side: int  # -1 = patient's right, +1 = left
    mask: bool
    dental_metal: int  # number of metal fillings / crowns
    pitch_deg: float
    roll_deg: float
    yaw_deg: float
    pixel_mm: float
    slice_thickness_mm: float
    slice_spacing_mm: float
    cut_top_mm: float  # 0 = whole head; else FOV ends this far below the vertex
    cut_chin: bool
    noise_hu: float
    headrest: bool
    study_date: str
    fov_offset_mm: tuple[float, float] = field(default=(0.0, 0.0))
    style: str = GeneratorStyle.STANDARD.value
    extra_seed: int = 0  # seed of the synthesis draws of the devices below (side stream)
    extra_devices: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> design
    heldout: dict[str, Any] = field(default_factory=dict)  # held-out appearance/acquisition

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def draw_subject(
    rng: np.random.Generator, subject_id: str, n_modes: int, head_scale_sd: float = 0.045
) -> SubjectParams:
    """A new synthetic person: identity weights w ~ N(0, 1) and a global head scale."""
    sex = str(rng.choice(["F", "M"]))
    base = 0.965 if sex == "F" else 1.025
    return SubjectParams(
        subject_id=subject_id,
        identity=rng.standard_normal(n_modes).astype(np.float32),
        head_scale=float(np.clip(base + head_scale_sd * rng.standard_normal(), 0.85, 1.15)),
        habitus=float(np.clip(rng.standard_normal(), -2.5, 2.5)),
        sex=sex,
        birth_year=int(rng.integers(1935, 2006)),
    )


def draw_expression(
    rng: np.random.Generator, names: tuple[str, ...], cfg: NuisanceConfig, jaw_min: float = 0.0
) -> dict[str, float]:
    """Expression weights in [0, 1] by name: mostly near-neutral, sometimes posed shapes."""
    usable = [n for n in names if not n.startswith(_GAZE)]
    w: dict[str, float] = {}
    for n in rng.choice(usable, size=4, replace=False):
        w[str(n)] = float(rng.uniform(0, cfg.neutral_jitter))
    if rng.random() < cfg.p_expression:
        for n in rng.choice(usable, size=int(rng.integers(1, 4)), replace=False):
            w[str(n)] = float(rng.uniform(*cfg.expression_weight))
    if rng.random() < cfg.p_eyes_closed:
        closed = float(rng.uniform(0.85, 1.0))
        w["eyeBlink_L"], w["eyeBlink_R"] = closed, closed
    jaw = float(rng.uniform(*cfg.jaw_open_weight)) if rng.random() < cfg.p_jaw_open else 0.0
    jaw = max(jaw, jaw_min, w.get("jawOpen", 0.0))
    if jaw > 0:
        w["jawOpen"] = jaw
    return {k: round(v, 4) for k, v in sorted(w.items()) if v > 0}


def draw_scan(
    rng: np.random.Generator,
    scan_id: str,
    names: tuple[str, ...],
    cfg: NuisanceConfig,
    style: GeneratorStyle | str = GeneratorStyle.STANDARD,
) -> ScanParams:
    """Independent per-scan nuisance and acquisition draw.

    The domain-randomization devices and the held-out style's draws come from a side stream
    seeded from ``rng``'s state (read, not advanced): ``rng`` gives the same numbers as before.
    """
    extra_seed = side_stream_seed(rng)
    u = rng.random()
    tube: Tube = "none"
    if u < cfg.p_endotracheal:
        tube = "endotracheal"
    elif u < cfg.p_endotracheal + cfg.p_nasogastric:
        tube = "nasogastric"
    expression = draw_expression(rng, names, cfg, jaw_min=0.3 if tube == "endotracheal" else 0.0)
    thickness = float(rng.choice(cfg.slice_thickness_mm))
    spacing = thickness
    if rng.random() < cfg.p_overlapping_slices:
        spacing = max(0.5, round(thickness * float(rng.uniform(0.5, 0.8)), 2))
    weight = float(rng.normal(0, cfg.weight_change_sd_mm))
    noise_1mm = float(rng.uniform(*cfg.noise_hu_at_1mm))
    year, day = int(rng.integers(2008, 2026)), int(rng.integers(0, 365))
    date = np.datetime64(f"{year}-01-01") + np.timedelta64(day, "D")
    scan = ScanParams(
        scan_id=scan_id,
        expression=expression,
        weight_change_mm=float(
            np.clip(weight, -cfg.weight_change_max_mm, cfg.weight_change_max_mm)
        ),
        tube=tube,
        tube_side=int(rng.choice([-1, 1])),
        mask=bool(rng.random() < cfg.p_mask),
        dental_metal=int(rng.integers(1, 5)) if rng.random() < cfg.p_dental_metal else 0,
        pitch_deg=float(rng.uniform(-cfg.pitch_deg, cfg.pitch_deg)),
        roll_deg=float(rng.uniform(-cfg.roll_deg, cfg.roll_deg)),
        yaw_deg=float(rng.uniform(-cfg.yaw_deg, cfg.yaw_deg)),
        pixel_mm=round(float(rng.uniform(*cfg.pixel_mm)), 4),
        slice_thickness_mm=thickness,
        slice_spacing_mm=spacing,
        cut_top_mm=float(rng.uniform(10, 50)) if rng.random() < cfg.p_cut_top else 0.0,
        cut_chin=bool(rng.random() < cfg.p_cut_chin),
        noise_hu=noise_1mm / float(np.sqrt(thickness)),
        headrest=bool(rng.random() < cfg.p_headrest),
        study_date=str(date).replace("-", ""),
        fov_offset_mm=(float(rng.normal(0, 6)), float(rng.normal(0, 6))),
    )
    return with_extras(scan, extra_seed, cfg, GeneratorStyle(style))


# ---- domain randomization and held-out style (issue 16): side-stream draws ----

EXTRA_FACTORS = (
    "et_connector", "bite_block", "mask_open_face", "mask_thick", "blanket", "pillow", "strap",
    "hair", "beard", "glasses", "skin_bumps",
)  # fmt: skip


def side_stream_seed(rng: np.random.Generator) -> int:
    """A seed derived from ``rng``'s current state without drawing from it."""
    state = repr(rng.bit_generator.state).encode()
    return int.from_bytes(hashlib.sha256(state).digest()[:8], "little")


def factor_rng(seed: int, name: str) -> np.random.Generator:
    """One stream per factor and scan: forcing one factor leaves the others' draws alone."""
    return np.random.default_rng([seed, 16, EXTRA_FACTORS.index(name) if name in
                                  EXTRA_FACTORS else 99])  # fmt: skip


def _u(r: np.random.Generator, lo: float, hi: float) -> float:
    return round(float(r.uniform(lo, hi)), 3)


def _sign(r: np.random.Generator) -> int:
    return int(r.choice([-1, 1]))


def _design_et_connector(r: np.random.Generator) -> dict[str, Any]:
    return {"protrude_mm": _u(r, 30, 90), "taped": bool(r.random() < 0.5), "side": _sign(r),
            "angle_deg": _u(r, -15, 10), "connector_mm": _u(r, 20, 40),
            "connector_hu": _u(r, 250, 450)}  # fmt: skip


def _design_bite_block(r: np.random.Generator) -> dict[str, Any]:
    return {"width_mm": _u(r, 22, 28), "height_mm": _u(r, 12, 18), "depth_mm": _u(r, 18, 28),
            "hu": _u(r, 80, 250)}  # fmt: skip


def _design_mask(r: np.random.Generator, open_face: bool, thick: bool) -> dict[str, Any]:
    return {"open_face": open_face, "thickness_mm": _u(r, 3.0, 4.0) if thick else _u(r, 1.5, 2.5),
            "gap_mm": _u(r, 0.5, 2.5), "bridge_radius_mm": _u(r, 6, 10),
            "hole_pitch_mm": _u(r, 4.5, 6.5), "hole_radius_mm": _u(r, 0.8, 1.6),
            "chin_edge_mm": _u(r, -35, 10), "top_edge_mm": _u(r, 30, 80)}  # fmt: skip


def _design_blanket(r: np.random.Generator) -> dict[str, Any]:
    return {"hu": _u(r, -500, -100), "thickness_mm": _u(r, 2, 5), "fold_mm": _u(r, 1, 5),
            "fold_period_mm": _u(r, 15, 40), "phase": _u(r, 0, 6.28),
            "top_mm": _u(r, -15, 10)}  # fmt: skip


def _design_pillow(r: np.random.Generator) -> dict[str, Any]:
    foam = bool(r.random() < 0.6)
    return {"side": _sign(r), "foam": foam, "hu": _u(r, -900, -700) if foam else _u(r, 0, 50),
            "radii_mm": [_u(r, 25, 40), _u(r, 40, 60), _u(r, 35, 55)], "indent_mm": _u(r, 3, 10),
            "dy_mm": _u(r, -20, 20), "dz_mm": _u(r, -25, 5)}  # fmt: skip


def _design_strap(r: np.random.Generator) -> dict[str, Any]:
    return {"width_mm": _u(r, 25, 50), "thickness_mm": _u(r, 1.5, 3), "hu": _u(r, -150, 150),
            "above_brow_mm": _u(r, 15, 40), "tilt_deg": _u(r, -10, 10)}  # fmt: skip


def _design_hair(r: np.random.Generator) -> dict[str, Any]:
    return {"thickness_mm": _u(r, 3, 15), "hu": _u(r, -650, -350), "hu_sd": _u(r, 150, 300),
            "hairline_mm": _u(r, 5, 50), "corr_mm": _u(r, 3, 8)}  # fmt: skip


def _design_beard(r: np.random.Generator) -> dict[str, Any]:
    kind = str(r.choice(["beard", "moustache", "both"]))
    return {"beard": kind != "moustache", "moustache": kind != "beard",
            "thickness_mm": _u(r, 2, 8), "hu": _u(r, -650, -300),
            "hu_sd": _u(r, 100, 220)}  # fmt: skip


def _design_glasses(r: np.random.Generator) -> dict[str, Any]:
    return {"frame_hu": _u(r, 300, 1000), "lens_hu": _u(r, 100, 600), "lens_mm": _u(r, 1.5, 3),
            "offset_mm": _u(r, 12, 20), "rim_w_mm": _u(r, 20, 26), "rim_h_mm": _u(r, 14, 20),
            "frame_r_mm": _u(r, 0.8, 1.5)}  # fmt: skip


def _design_skin_bumps(r: np.random.Generator) -> dict[str, Any]:
    return {"amplitude_mm": _u(r, 0.3, 1.0), "corr_mm": _u(r, 2, 6)}


_DESIGNS = {
    "et_connector": _design_et_connector, "bite_block": _design_bite_block,
    "blanket": _design_blanket, "pillow": _design_pillow, "strap": _design_strap,
    "hair": _design_hair, "beard": _design_beard, "glasses": _design_glasses,
    "skin_bumps": _design_skin_bumps,
}  # fmt: skip


def draw_extra_devices(seed: int, cfg: NuisanceConfig) -> dict[str, dict[str, Any]]:
    """Which domain-randomization devices a scan has and their designs (name -> design)."""
    out: dict[str, dict[str, Any]] = {}
    for name in EXTRA_FACTORS:
        p = float(getattr(cfg, f"p_{name}"))
        if p <= 0:
            continue
        r = factor_rng(seed, name)
        if r.random() < p:
            out[name] = _DESIGNS[name](r) if name in _DESIGNS else {}
    if "mask_open_face" in out or "mask_thick" in out:
        r = factor_rng(seed, "mask_variant")
        out["mask_variant"] = _design_mask(r, "mask_open_face" in out, "mask_thick" in out)
    return out


def draw_heldout(seed: int) -> dict[str, Any]:
    """Held-out appearance and acquisition: skin/fat HU, blur, noise kernel, streaks, geometry,
    and the held-out device designs (used when the scan has that kind of device)."""
    r = np.random.default_rng([seed, 16, 1000])
    total = _u(r, 80, 150)
    tube = round(total * float(r.uniform(0.3, 0.45)), 2)
    return {
        "dermis_shift_hu": _u(r, -25, 40), "fat_shift_hu": _u(r, -30, 25),
        "blur_px": _u(r, 0.4, 1.1), "kernel": str(r.choice(["smooth", "sharp"])),
        "kernel_sigma_px": _u(r, 0.8, 1.6), "streak_rays": int(r.integers(16, 33)),
        "fov_offset_mm": [_u(r, -25, 25), _u(r, -25, 25)],
        "et": {"total_mm": total, "tube_mm": tube, "connector_mm": _u(r, 25, 35),
               "hose_radius_mm": _u(r, 10, 12), "hose_hu": _u(r, -50, 120),
               "hose_drop_deg": _u(r, 0, 35), "side": _sign(r)},
        "mask": {"thickness_mm": _u(r, 2.0, 3.0), "gap_mm": _u(r, 0.0, 1.5),
                 "hole_pitch_mm": _u(r, 7, 10), "hole_radius_mm": _u(r, 1.5, 2.5),
                 "cutout_mm": _u(r, 30, 60)},
        "bite_block": {"outer_r_mm": _u(r, 10, 13), "inner_r_mm": _u(r, 5, 7),
                       "depth_mm": _u(r, 25, 35), "flange_mm": [_u(r, 40, 50), _u(r, 25, 32)],
                       "hu": _u(r, 60, 200)},
    }  # fmt: skip


def with_extras(
    scan: ScanParams, seed: int, cfg: NuisanceConfig, style: GeneratorStyle
) -> ScanParams:
    """The scan with its side-stream draws (unchanged when they are all off: standard style,
    every new probability 0)."""
    extra = draw_extra_devices(seed, cfg)
    if style == GeneratorStyle.STANDARD and not extra:
        return scan
    changes: dict[str, Any] = {"extra_seed": seed, "extra_devices": extra, "style": style.value}
    if "et_connector" in extra:
        changes["tube"] = "endotracheal"
        jaw = max(0.3, scan.expression.get("jawOpen", 0.0))  # intubated: mouth open
        changes["expression"] = dict(sorted({**scan.expression, "jawOpen": jaw}.items()))
    if "mask_variant" in extra:
        changes["mask"] = True
    if style == GeneratorStyle.HELDOUT:
        held = draw_heldout(seed)
        changes["heldout"] = held
        changes["fov_offset_mm"] = tuple(held["fov_offset_mm"])
    return replace(scan, **changes)
