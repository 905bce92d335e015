"""The five facial landmarks of a CT, their confidence, and what is missing.

``detect_landmarks`` runs CT-FAN (``ctfan``), then cross-checks it with the face-model fit
(``surface_fit``, started from CT-FAN's face frame) when the face model is available: where the
two agree within ``AGREE_MM`` the landmark is their mean (two independent estimates); where
they do not, it gets a low confidence and is CT-FAN's point, or the fit's where CT-FAN's peak
is weak (< ``WEAK_PEAK``: on real CTs CT-FAN, trained on phantoms only, misplaces mouth
corners); where they agree on fewer than ``MIN_AGREE`` landmarks CT-FAN is taken to be lost
and the fit alone runs from the geometric face locator (confidence capped at 0.5), or the scan
is refused as having no usable face. ``method=
"surface-fit"`` runs the fit alone, started from the geometric face locator (supine faces
only). A landmark whose estimate lies outside the scanned field of view is reported as missing
(``lps`` None and a reason); its extrapolated estimate only serves the face frame. A cut-off
landmark whose estimate this rule counts as inside the field of view is reported with
coordinates (held-out phantoms: CT-FAN gave 4 of 7 cut-off mouth corners coordinates,
``benchmarks/results/landmarks.json``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ctface.errors import MissingDataError, NoFaceError
from ctface.face_model.model import FaceModel, load_face_model
from ctface.ingest.volume import LPS_TO_RAS, SKIN_HU, CtVolume
from ctface.landmarks.ctfan import MIN_FACE_PEAK, CtFanDetector
from ctface.landmarks.frame import FaceFrame, FrameMethod, locate_face
from ctface.landmarks.sampling import LANDMARKS, face_axes

Method = Literal["auto", "ct-fan", "surface-fit"]
AGREE_MM = 4.0  # CT-FAN and the fit farther apart than this: low confidence
MIN_FINE_PEAK = 0.2  # a fine heatmap peak below this: the landmark is not visible
WEAK_PEAK = 0.4  # disagreeing and CT-FAN's peak below this: the fit's point is reported
MIN_AGREE = 2  # fewer landmarks agreeing: CT-FAN is lost, the fit alone (geometric start)
UNCONFIRMED = 0.5  # confidence cap of the fit alone (nothing to confirm it)
FOV_MARGIN_MM = 1.0  # a point must lie this far past the edge to be outside
EDGE_UNSEEN_MM = 15.0  # an unseen landmark estimated this close to the edge is cut off
_AXIS_WORDS = ("left", "posterior", "superior")
_OPPOSITE = {"left": "right", "posterior": "anterior", "superior": "inferior"}


class CrossCheck(StrEnum):
    """What checked CT-FAN's landmarks (``LandmarkSet.cross_check``; why, in
    ``LandmarkSet.cross_check_detail``)."""

    OFF = "off"  # method "ct-fan": CT-FAN alone
    FIT = "face-model fit"  # the face-model fit ran: landmarks within AGREE_MM agree
    UNAVAILABLE = "unavailable"  # no face model: CT-FAN unchecked
    FAILED = "failed"  # the fit found no face: CT-FAN unchecked
    FALLBACK = "fallback"  # CT-FAN lost: the fit alone from the geometric locator
    NONE = "none"  # method "surface-fit": the fit alone, nothing to check it with

    def text(self, detail: str | None = None) -> str:
        """As printed and in JSON: "off", "failed: <why>", "face-model fit (<detail>)"."""
        if detail is None:
            return str(self.value)
        if self in (CrossCheck.FIT, CrossCheck.NONE):
            return f"{self.value} ({detail})"
        return f"{self.value}: {detail}"


@dataclass(frozen=True)
class Landmark:
    """One landmark: ``lps`` in patient LPS mm (``ras`` in RAS) or None when it is missing
    (``reason`` says why, e.g. outside the field of view), ``confidence`` 0..1, and
    ``cross_check_mm``, its distance to the face-model fit's point."""

    name: str
    lps: np.ndarray | None  # None: missing (``reason`` says why)
    confidence: float
    reason: str | None = None
    cross_check_mm: float | None = None  # distance to the face-model fit's point

    @property
    def ras(self) -> np.ndarray | None:
        return None if self.lps is None else LPS_TO_RAS[:3, :3] @ self.lps

    def to_json(self) -> dict[str, Any] | None:
        if self.lps is None or self.ras is None:
            return None
        out: dict[str, Any] = {
            "lps": [round(float(v), 2) for v in self.lps],
            "ras": [round(float(v), 2) for v in self.ras],
            "confidence": round(self.confidence, 3),
        }
        if self.cross_check_mm is not None:
            out["cross_check_mm"] = round(self.cross_check_mm, 2)
        return out


@dataclass(frozen=True)
class LandmarkSet:
    """The five landmarks of a CT (``LANDMARKS``: right_eye, left_eye, nose_tip, right_mouth,
    left_mouth; the patient's own right and left), by name; ``estimate_lps`` (5, 3) mm holds
    every estimate, the missing ones' too; ``method`` the method that gave them,
    ``cross_check`` whether the face-model fit confirmed them (``cross_check_text`` says it in
    words); ``seconds`` the time taken. ``frame()`` is the face frame rendering uses."""

    landmarks: dict[str, Landmark]
    estimate_lps: np.ndarray  # (5, 3): every landmark's estimate, the missing ones too
    method: Method  # ct-fan | surface-fit: the one that gave the landmarks
    cross_check: CrossCheck
    cross_check_detail: str | None  # the human-readable why (``cross_check_text``)
    seconds: float
    details: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Landmark:
        return self.landmarks[name]

    @property
    def cross_check_text(self) -> str:
        """The cross-check as printed and in JSON (status and detail)."""
        return self.cross_check.text(self.cross_check_detail)

    def frame(self) -> FaceFrame:
        """The face's own frame: origin the nose tip; x along the eyes, up from the mouth."""
        pts = np.array(
            [
                lm.lps if lm.lps is not None else self.estimate_lps[i]
                for i, lm in enumerate(self.landmarks.values())
            ]
        )
        axes = face_axes(pts)
        return FaceFrame(pts[2].copy(), axes[2], axes[1], FrameMethod.LANDMARKS)

    def to_json(self) -> dict[str, Any]:
        return {
            "landmarks": {n: lm.to_json() for n, lm in self.landmarks.items()},
            "missing": {n: lm.reason for n, lm in self.landmarks.items() if lm.lps is None},
            "method": self.method,
            "cross_check": self.cross_check_text,
            "frame": self.frame().to_json(),
            "seconds": round(self.seconds, 3),
            "details": self.details,
        }


def outside_fov(volume: CtVolume, lps: np.ndarray, near_mm: float = -FOV_MARGIN_MM) -> str | None:
    """Why ``lps`` lies outside the scanned field of view (or within ``near_mm`` of its edge,
    for a point the network could not see), or None if it is inside."""
    affine, shape = volume.scanned_geometry()
    ijk = np.linalg.inv(affine)[:3] @ np.append(lps, 1.0)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    below = (-0.5 - ijk) * spacing  # mm past the low edge of each voxel axis
    above = (ijk - (shape - 0.5)) * spacing
    worst = int(np.argmax(np.maximum(below, above)))
    beyond = float(max(below[worst], above[worst]))
    if beyond <= -near_mm:
        return None
    direction = affine[:3, worst] / spacing[worst] * (1 if above[worst] > below[worst] else -1)
    axis = int(np.argmax(np.abs(direction)))
    word = _AXIS_WORDS[axis] if direction[axis] > 0 else _OPPOSITE[_AXIS_WORDS[axis]]
    if beyond <= 0:
        return f"outside the field of view: not visible within {-beyond:.0f} mm of its {word} edge"
    return f"outside the field of view: the scan ends {beyond:.0f} mm before it ({word} edge)"


@lru_cache(maxsize=2)
def _detector(path: str | None) -> CtFanDetector:
    return CtFanDetector.load(Path(path) if path else None)


@lru_cache(maxsize=2)
def _face_model(path: str | None) -> FaceModel:
    return load_face_model(path)


def _confidence(peak: float, distance: float | None) -> float:
    c = float(np.clip(peak, 0.0, 1.0))
    if distance is not None and distance > AGREE_MM:
        c *= float(np.exp(-(distance - AGREE_MM) / 2.0)) * 0.5
    return c


def _fit_alone(
    volume: CtVolume, face_model: str | None, details: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray]:
    from ctface.landmarks.surface_fit import fit_face_model

    fit = fit_face_model(volume, locate_face(volume), _face_model(face_model))
    details["surface_fit"] = {"rms_mm": round(fit.rms_mm, 3), "start": "geometric locator"}
    return fit.lps, np.full(5, float(np.clip(fit.inlier_fraction, 0, 1)))


def _ct_fan(
    volume: CtVolume, weights: str | None, details: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray]:
    out = _detector(weights).detect(volume)
    if out.coarse_peak[:3].max() < MIN_FACE_PEAK:
        raise NoFaceError(
            "no face in field of view: CT-FAN finds no eyes or nose (best heatmap peak "
            f"{out.coarse_peak[:3].max():.2f}, a face gives > 0.5)"
        )
    details["ct_fan"] = {
        "lps": out.lps.round(2).tolist(),
        "fine_peak": out.fine_peak.round(3).tolist(),
        "coarse_peak": out.coarse_peak.round(3).tolist(),
    }
    # where the fine stage sees nothing, keep the coarse (extrapolated) estimate: it tells
    # whether the landmark lies outside the field of view
    lost = out.fine_peak < MIN_FINE_PEAK
    return np.where(lost[:, None], out.coarse_lps, out.lps), out.fine_peak


def _cross_check(
    volume: CtVolume, est: np.ndarray, face_model: str | None, details: dict[str, Any]
) -> tuple[np.ndarray | None, CrossCheck, str]:
    """The face-model fit's landmarks (None when it cannot run), the cross-check and why."""
    from ctface.landmarks.surface_fit import fit_face_model

    try:
        model = _face_model(face_model)
        axes = face_axes(est)
        start = FaceFrame(est[2], axes[2], axes[1], FrameMethod.CT_FAN)
        fit = fit_face_model(volume, start, model)
    except MissingDataError as exc:
        return None, CrossCheck.UNAVAILABLE, str(exc)
    except NoFaceError as exc:
        return None, CrossCheck.FAILED, str(exc)
    details["surface_fit"] = {
        "lps": fit.lps.round(2).tolist(),
        "rms_mm": round(fit.rms_mm, 3),
        "inlier_fraction": round(fit.inlier_fraction, 3),
    }
    return fit.lps, CrossCheck.FIT, f"agreement within {AGREE_MM:g} mm"


def detect_landmarks(
    volume: CtVolume,
    method: Method = "auto",
    *,
    weights: str | None = None,
    face_model: str | None = None,
) -> LandmarkSet:
    """Landmarks of a CT volume (``load_ct``). NoFaceError when there is no face.

    ``auto``: CT-FAN cross-checked by the face-model fit; if CT-FAN finds no face, the fit
    alone from the geometric locator (the fallback). ``ct-fan``, ``surface-fit``: one method.
    """
    t0 = time.perf_counter()
    details: dict[str, Any] = {}
    fit_lps: np.ndarray | None = None
    used = method
    detail: str | None = None
    if method == "surface-fit":
        est, peaks = _fit_alone(volume, face_model, details)
        check, detail = CrossCheck.NONE, "surface fit alone"
    else:
        try:
            est, peaks = _ct_fan(volume, weights, details)
            used, check = "ct-fan", CrossCheck.OFF
        except NoFaceError as exc:
            if method != "auto":
                raise
            try:
                est, peaks = _fit_alone(volume, face_model, details)
            except MissingDataError:
                raise exc from None
            used, check, detail = "surface-fit", CrossCheck.FALLBACK, str(exc)
        else:
            if method == "auto":
                fit_lps, check, detail = _cross_check(volume, est, face_model, details)
            why = ""
            if fit_lps is not None:
                agree = int((np.linalg.norm(fit_lps - est, axis=1) <= AGREE_MM).sum())
                if agree < MIN_AGREE:
                    why = f"CT-FAN and the face-model fit agree on {agree} of 5 landmarks"
            elif check is CrossCheck.FAILED and peaks.mean() < WEAK_PEAK:
                why = (
                    f"CT-FAN is unsure (mean peak {peaks.mean():.2f}) and the fit "
                    f"{check.text(detail)}"
                )
            if why:  # CT-FAN lost on this face: the fit alone, if it can
                try:
                    est, peaks = _fit_alone(volume, face_model, details)
                except NoFaceError as exc:
                    raise NoFaceError(f"{exc} ({why})") from None
                peaks = np.minimum(peaks, UNCONFIRMED)
                fit_lps, used, check, detail = None, "surface-fit", CrossCheck.FALLBACK, why
    marks: dict[str, Landmark] = {}
    for i, name in enumerate(LANDMARKS):
        reason = outside_fov(volume, est[i])
        if reason is None and peaks[i] < MIN_FINE_PEAK:  # unseen: where would it be?
            guess = est[i] if fit_lps is None else fit_lps[i]  # the fit extrapolates well
            reason = outside_fov(volume, guess, near_mm=EDGE_UNSEEN_MM)
        if reason is None and peaks[i] < MIN_FINE_PEAK:
            reason = f"not found: no clear {name.replace('_', ' ')} (peak {peaks[i]:.2f})"
        if reason is not None:
            marks[name] = Landmark(name, None, 0.0, reason)
            continue
        dist = None if fit_lps is None else float(np.linalg.norm(fit_lps[i] - est[i]))
        point = est[i].copy()
        if fit_lps is not None and dist is not None and dist <= AGREE_MM:
            point = (est[i] + fit_lps[i]) / 2  # two independent estimates that agree
        elif fit_lps is not None and peaks[i] < WEAK_PEAK:
            point = fit_lps[i].copy()  # they disagree and CT-FAN is unsure: the model's point
        marks[name] = Landmark(name, point, _confidence(peaks[i], dist), None, dist)
    if all(m.lps is None for m in marks.values()):
        raise NoFaceError("no usable face: none of the five landmarks is in the field of view")
    return LandmarkSet(marks, est, used, check, detail, time.perf_counter() - t0, details)


def face_frame(volume: CtVolume, threshold_hu: float = SKIN_HU) -> FaceFrame:
    """The face frame for rendering: from the landmarks (``detect_landmarks``, auto); the
    geometric locator when they find no face or the CT-FAN weights are missing."""
    try:
        return detect_landmarks(volume).frame()
    except (MissingDataError, NoFaceError):
        return locate_face(volume, threshold_hu)
