"""Random draws of subjects and scans: every probability and range the generator uses.

Subject-level draws (identity, head size, habitus) are shared by all scans of one person;
scan-level draws (expression, weight change, devices, pose, acquisition) are independent per scan.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal

import numpy as np

from ctface.errors import InvalidInputError

Tube = Literal["none", "nasogastric", "endotracheal"]

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
    rng: np.random.Generator, scan_id: str, names: tuple[str, ...], cfg: NuisanceConfig
) -> ScanParams:
    """Independent per-scan nuisance and acquisition draw."""
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
    return ScanParams(
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
