"""The five facial landmarks of a CT, their confidence, and what is missing.

``detect_landmarks`` runs CT-FAN (``ctfan``). Where CT-FAN is confident (``ct_fan_unsure`` finds
nothing: every fine peak >= ``CONFIDENT_PEAK``, every landmark ``CONFIDENT_EDGE_MM`` inside the
field of view, the distances between them anatomical, ``ANATOMY_MM``) its points are the answer
and the cross-check is skipped. Held-out harsh phantoms (157 scans): no landmark with a fine
peak >= 0.55 was off by more than 4.6 mm (660 of 769), below it up to 43 mm; cut-off ones peak
<= 0.31. The fast path takes 55 % of them and about 30 % off the time, but gives up the mean
with the fit: mean error +0.13 mm (``benchmarks/results/landmarks_fast_path.json``).
Otherwise it is cross-checked with the face-model fit (``surface_fit``, started from CT-FAN's
face frame) when the face model is available: where the two agree within ``AGREE_MM`` the
landmark is their mean (two independent estimates); where they do not, it gets a low
confidence and is CT-FAN's point, or the fit's where CT-FAN's peak is weak (< ``WEAK_PEAK``:
on real CTs CT-FAN, trained on phantoms only, misplaces mouth corners) or where CT-FAN's point
lies at a distance outside ``ANATOMY_MM`` from landmarks both agree on and the fit's does not
(``_implausible``: an endotracheal tube taken for the nose tip); where they agree on
fewer than ``MIN_AGREE`` landmarks CT-FAN is taken to be lost and the fit alone runs from the
geometric face locator (confidence capped at 0.5); of the two fits (from the locator, from
CT-FAN's frame) the one that finds skin for more of the face model's points is taken, the
latter also where the locator finds no face but >= ``MIN_AGREE`` of CT-FAN's landmarks lie
within ``NEAR_MM`` of it (issue 16: real faces re-acquired); else the scan is refused as having
no usable face. ``method="surface-fit"`` runs the fit alone, started from the geometric face
locator (supine faces only).

A landmark whose position lies outside the scanned field of view is reported as missing
(``lps`` None and a reason); its extrapolated position only serves the face frame. CT-FAN's
point may lie up to ``FOV_MARGIN_MM`` past the edge (it sees the landmark there); the fit's
point, reported where CT-FAN does not see the landmark, must lie inside (the fit extrapolates
cut-off landmarks to just past the edge). A landmark CT-FAN does not see at all (fine peak <
``MIN_FINE_PEAK``) within ``EDGE_UNSEEN_MM`` of the edge is the fit's point if that lies inside
(the edge cuts CT-FAN's view of a visible mouth corner), else cut off; deeper inside it is
"not found".
"""

from __future__ import annotations

import contextlib
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
# CT-FAN lost and the geometric locator finds no face: the fit from CT-FAN's frame is taken
# only where at least MIN_AGREE of CT-FAN's landmarks lie this close to it (the same face)
NEAR_MM = 10.0
FOV_MARGIN_MM = 1.0  # CT-FAN's point must lie this far past the edge to be outside (fit's: 0)
EDGE_UNSEEN_MM = 15.0  # an unseen landmark estimated this close to the edge is cut off
CONFIDENT_PEAK = 0.55  # every fine peak at least this (and ``ct_fan_unsure`` silent): no fit
CONFIDENT_EDGE_MM = 5.0  # every CT-FAN landmark at least this far inside the field of view
# (landmark, landmark, shortest, longest mm) for a confident CT-FAN: the held-out harsh phantoms'
# true distances (157 scans: eyes 54-79, mouth corners 36-68, eye to nose tip 45-68, nose tip
# to mouth corner 42-78, eye to mouth corner 57-95 mm) widened by 10 %
ANATOMY_MM = (
    ("right_eye", "left_eye", 48.0, 88.0),
    ("right_mouth", "left_mouth", 32.0, 75.0),
    ("right_eye", "nose_tip", 40.0, 75.0),
    ("left_eye", "nose_tip", 40.0, 75.0),
    ("nose_tip", "right_mouth", 38.0, 86.0),
    ("nose_tip", "left_mouth", 38.0, 86.0),
    ("right_eye", "right_mouth", 51.0, 104.0),
    ("left_eye", "left_mouth", 51.0, 104.0),
)
_AXIS_WORDS = ("left", "posterior", "superior")
_OPPOSITE = {"left": "right", "posterior": "anterior", "superior": "inferior"}


class CrossCheck(StrEnum):
    """What checked CT-FAN's landmarks (``LandmarkSet.cross_check``; why, in
    ``LandmarkSet.cross_check_detail``)."""

    OFF = "off"  # method "ct-fan": CT-FAN alone
    SKIPPED = "skipped"  # auto, CT-FAN confident (``ct_fan_unsure`` silent): CT-FAN alone
    FIT = "face-model fit"  # the face-model fit ran: landmarks within AGREE_MM agree
    UNAVAILABLE = "unavailable"  # no face model: CT-FAN unchecked
    FAILED = "failed"  # the fit found no face: CT-FAN unchecked
    FALLBACK = "fallback"  # CT-FAN lost: the fit alone from the geometric locator
    NONE = "none"  # method "surface-fit": the fit alone, nothing to check it with

    def text(self, detail: str | None = None) -> str:
        """As printed and in JSON: "off", "failed: <why>", "face-model fit (<detail>)"."""
        if detail is None:
            return str(self.value)
        if self in (CrossCheck.FIT, CrossCheck.NONE, CrossCheck.SKIPPED):
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
    """Why ``lps`` lies outside the scanned field of view (or within ``near_mm`` of its edge;
    the default lets it lie up to ``FOV_MARGIN_MM`` past the edge), or None if it is inside."""
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
    mm = f"{beyond:.0f}" if beyond >= 1 else f"{beyond:.1f}"
    return f"outside the field of view: the scan ends {mm} mm before it ({word} edge)"


@lru_cache(maxsize=2)
def _detector(path: str | None) -> CtFanDetector:
    return CtFanDetector.load(Path(path) if path else None)


@lru_cache(maxsize=2)
def _face_model(path: str | None) -> FaceModel:
    return load_face_model(path)


def load_models() -> None:
    """Read CT-FAN and the face model now rather than at the first scan (a service worker's
    start); a missing face model is left to the first scan that needs it."""
    _detector(None)
    with contextlib.suppress(MissingDataError):
        _face_model(None)


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


def ct_fan_unsure(volume: CtVolume, lps: np.ndarray, peaks: np.ndarray) -> str | None:
    """Why CT-FAN's landmarks (``lps`` (5, 3), fine ``peaks``) need the face-model cross-check,
    or None where CT-FAN is confident: every peak >= ``CONFIDENT_PEAK``, every landmark
    ``CONFIDENT_EDGE_MM`` inside the field of view, and the distances ``ANATOMY_MM`` hold."""
    weakest = int(np.argmin(peaks))
    if peaks[weakest] < CONFIDENT_PEAK:
        return f"{_words(weakest)} peak {peaks[weakest]:.2f} < {CONFIDENT_PEAK:g}"
    for i in range(len(LANDMARKS)):
        edge = outside_fov(volume, lps[i], near_mm=CONFIDENT_EDGE_MM)
        if edge is not None:
            return f"{_words(i)}: {edge.removeprefix('outside the field of view: ')}"
    return implausible_distance(lps)


def implausible_distance(lps: np.ndarray, of: int | None = None) -> str | None:
    """The first distance between two of the five landmarks outside ``ANATOMY_MM``, in words;
    None if all are anatomical. With ``of``, only the distances from landmark ``of`` to the
    others whose position is not NaN."""
    for a, b, shortest, longest in ANATOMY_MM:
        ia, ib = LANDMARKS.index(a), LANDMARKS.index(b)
        if of is not None and (of not in (ia, ib) or np.isnan(lps[ib if of == ia else ia]).any()):
            continue
        d = float(np.linalg.norm(lps[ia] - lps[ib]))
        if not shortest <= d <= longest:
            return (
                f"{a.replace('_', ' ')} to {b.replace('_', ' ')} {d:.0f} mm "
                f"(anatomical {shortest:g}-{longest:g} mm)"
            )
    return None


def _words(i: int) -> str:
    return LANDMARKS[i].replace("_", " ")


@dataclass(frozen=True)
class _Estimates:
    """The landmarks before the field-of-view check: the method's points and peaks, the
    cross-checking fit's points (or None) and the cross-check."""

    lps: np.ndarray  # (5, 3)
    peaks: np.ndarray  # (5,) CT-FAN's fine peaks (or the fit's capped inlier fraction)
    fit_lps: np.ndarray | None  # the face-model fit's points where it cross-checked CT-FAN
    method: Method
    check: CrossCheck
    detail: str | None


def _ct_fan_lost(
    est: np.ndarray, peaks: np.ndarray, fit_lps: np.ndarray | None, check: CrossCheck, detail: str
) -> str:
    """Why CT-FAN is lost on this face (the fit alone takes over), or ""."""
    if fit_lps is not None:
        agree = int((np.linalg.norm(fit_lps - est, axis=1) <= AGREE_MM).sum())
        if agree < MIN_AGREE:
            return f"CT-FAN and the face-model fit agree on {agree} of 5 landmarks"
    elif check is CrossCheck.FAILED and peaks.mean() < WEAK_PEAK:
        return f"CT-FAN is unsure (mean peak {peaks.mean():.2f}) and the fit {check.text(detail)}"
    return ""


def _cross_checked(
    volume: CtVolume,
    est: np.ndarray,
    peaks: np.ndarray,
    unsure: str,
    face_model: str | None,
    details: dict[str, Any],
) -> _Estimates:
    """CT-FAN checked by the face-model fit; the fit alone where CT-FAN is lost."""
    fit_lps, check, detail = _cross_check(volume, est, face_model, details)
    lost = _ct_fan_lost(est, peaks, fit_lps, check, detail)
    if not lost:
        if check is CrossCheck.FIT:
            detail = f"{detail}; CT-FAN unsure: {unsure}"
        return _Estimates(est, peaks, fit_lps, "ct-fan", check, detail)
    # CT-FAN is lost: the fit alone from the geometric locator, unless the fit from CT-FAN's
    # frame (already made) explains more of the skin. The locator is not reliable on real
    # faces: Visible Human's flat, cut nose is never one of its candidates (it takes the chin,
    # 12.5 mm out; re-acquired at roll -9 deg the fit from there put the nose tip on the chin,
    # inliers 0.51, and the scan was acquired with a wrong template, score 0.14 against its
    # original) or stands out under 10 mm (re-acquired at pitch -8 deg: refused as no face),
    # while the fit from CT-FAN's frame had the face (inliers 0.77, rms 0.82 mm).
    start = details.get("surface_fit") if fit_lps is not None else None
    own = float(start["inlier_fraction"]) if start else 0.0
    gap = np.inf if fit_lps is None else np.linalg.norm(fit_lps - est, axis=1)
    near = int(np.sum(gap <= NEAR_MM))  # CT-FAN and the fit from its frame on the same face
    geo: tuple[np.ndarray, np.ndarray] | None = None
    try:
        geo = _fit_alone(volume, face_model, details)
        why = f"the fit from the geometric locator fits {geo[1][0]:.0%} of the skin points"
    except NoFaceError as exc:
        if fit_lps is None or near < MIN_AGREE:
            raise NoFaceError(f"{exc} ({lost})") from None
        why = f"the geometric locator: {exc}"
    if fit_lps is not None and start and (geo is None or own > geo[1][0]):
        details["surface_fit"] = {**start, "start": "CT-FAN's frame"}
        capped = np.full(5, min(own, UNCONFIRMED))
        detail = f"{lost}; the fit from CT-FAN's frame fits {own:.0%} ({why})"
        return _Estimates(fit_lps, capped, None, "surface-fit", CrossCheck.FALLBACK, detail)
    assert geo is not None  # the CT-FAN-frame fit is taken above whenever the locator failed
    return _Estimates(geo[0], np.minimum(geo[1], UNCONFIRMED), None, "surface-fit",
                      CrossCheck.FALLBACK, lost)  # fmt: skip


def _ct_fan_checked(
    volume: CtVolume,
    method: Method,
    weights: str | None,
    face_model: str | None,
    details: dict[str, Any],
) -> _Estimates:
    """CT-FAN; in ``auto`` cross-checked where it is unsure, the fit alone where it finds no
    face."""
    try:
        est, peaks = _ct_fan(volume, weights, details)
    except NoFaceError as exc:
        if method != "auto":
            raise
        try:
            est, peaks = _fit_alone(volume, face_model, details)
        except MissingDataError:
            raise exc from None
        return _Estimates(est, peaks, None, "surface-fit", CrossCheck.FALLBACK, str(exc))
    if method != "auto":
        return _Estimates(est, peaks, None, "ct-fan", CrossCheck.OFF, None)
    unsure = ct_fan_unsure(volume, est, peaks)
    if unsure is None:
        why = (
            f"CT-FAN confident: lowest fine peak {peaks.min():.2f}, all five >= "
            f"{CONFIDENT_EDGE_MM:g} mm inside the field of view, distances anatomical"
        )
        return _Estimates(est, peaks, None, "ct-fan", CrossCheck.SKIPPED, why)
    details["ct_fan_unsure"] = unsure
    return _cross_checked(volume, est, peaks, unsure, face_model, details)


def _implausible(e: _Estimates) -> dict[int, str]:
    """CT-FAN's landmarks, seen (peak >= ``WEAK_PEAK``; weaker ones are the fit's anyway), that
    the cross-checking fit disagrees with (> ``AGREE_MM``) and that lie at a distance outside
    ``ANATOMY_MM`` from a landmark both agree on, where the fit's point lies at anatomical
    distances from all of those: landmark index -> the distance, in words.

    Cohort 1919 (held-out style, 151 scans), S0017_01: an endotracheal tube in front of the
    mouth, CT-FAN's nose tip (peak 0.42) on the tube 33 mm from the true one, 82 mm from the
    right eye; the fit's 4.2 mm from it, agreeing with CT-FAN on the four others within 2 mm.
    The frame's origin is the nose tip, so every view of that scan was off."""
    if e.fit_lps is None:
        return {}
    agreed = np.linalg.norm(e.fit_lps - e.lps, axis=1) <= AGREE_MM
    partners = np.where(agreed[:, None], e.lps, np.nan)
    found: dict[int, str] = {}
    for i in np.flatnonzero(~agreed & (e.peaks >= WEAK_PEAK)):
        ct_fan, fit = partners.copy(), partners.copy()
        ct_fan[i], fit[i] = e.lps[i], e.fit_lps[i]
        broken = implausible_distance(ct_fan, of=int(i))
        if broken is not None and implausible_distance(fit, of=int(i)) is None:
            found[int(i)] = broken
    return found


def _position(
    e: _Estimates, i: int, implausible: dict[int, str]
) -> tuple[np.ndarray, bool, float | None]:
    """Landmark ``i``'s position, whether it is the fit's (not seen there by CT-FAN, or where
    CT-FAN's point is ``implausible``), and its distance to the cross-checking fit's point."""
    est, peak = e.lps[i], e.peaks[i]
    if e.fit_lps is None:
        return est.copy(), e.method == "surface-fit", None
    fit = e.fit_lps[i]
    dist = float(np.linalg.norm(fit - est))
    if peak < MIN_FINE_PEAK or (dist > AGREE_MM and (peak < WEAK_PEAK or i in implausible)):
        return fit.copy(), True, dist  # CT-FAN does not see it (there, or anatomically): the fit's
    if dist <= AGREE_MM:
        return (est + fit) / 2, False, dist  # two independent estimates that agree
    return est.copy(), False, dist


def _missing_reason(
    volume: CtVolume, i: int, point: np.ndarray, peak: float, from_fit: bool
) -> str | None:
    """Why landmark ``i`` at ``point`` is missing (outside the field of view, or not found),
    or None. The fit's point must lie inside the field of view, CT-FAN's within
    ``FOV_MARGIN_MM`` of it; a landmark CT-FAN does not see is cut off near the edge (unless
    the fit places it inside) and not found deeper inside."""
    reason = outside_fov(volume, point, near_mm=0.0 if from_fit else -FOV_MARGIN_MM)
    if reason is not None or peak >= MIN_FINE_PEAK:
        return reason
    near_edge = outside_fov(volume, point, near_mm=EDGE_UNSEEN_MM)
    if near_edge is None:
        return f"not found: no clear {_words(i)} (peak {peak:.2f})"
    return None if from_fit else near_edge


def _landmark(
    volume: CtVolume, e: _Estimates, i: int, where: tuple[np.ndarray, bool, float | None]
) -> Landmark:
    """Landmark ``i`` at its position ``where`` (``_position``), or missing and why."""
    point, from_fit, dist = where
    reason = _missing_reason(volume, i, point, float(e.peaks[i]), from_fit)
    if reason is not None:
        return Landmark(LANDMARKS[i], None, 0.0, reason)
    return Landmark(LANDMARKS[i], point, _confidence(e.peaks[i], dist), None, dist)


def detect_landmarks(
    volume: CtVolume,
    method: Method = "auto",
    *,
    weights: str | None = None,
    face_model: str | None = None,
) -> LandmarkSet:
    """Landmarks of a CT volume (``load_ct``). NoFaceError when there is no face.

    ``auto``: CT-FAN alone where it is confident (``ct_fan_unsure``; cross-check "skipped"),
    else cross-checked by the face-model fit; if CT-FAN finds no face, the fit alone from the
    geometric locator (the fallback). ``ct-fan``, ``surface-fit``: one method.
    """
    t0 = time.perf_counter()
    details: dict[str, Any] = {}
    if method == "surface-fit":
        est, peaks = _fit_alone(volume, face_model, details)
        e = _Estimates(est, peaks, None, "surface-fit", CrossCheck.NONE, "surface fit alone")
    else:
        e = _ct_fan_checked(volume, method, weights, face_model, details)
    implausible = _implausible(e)
    if implausible:
        details["implausible_ct_fan"] = {LANDMARKS[i]: why for i, why in implausible.items()}
    where = [_position(e, i, implausible) for i in range(len(LANDMARKS))]
    marks = {LANDMARKS[i]: _landmark(volume, e, i, w) for i, w in enumerate(where)}
    if all(m.lps is None for m in marks.values()):
        raise NoFaceError("no usable face: none of the five landmarks is in the field of view")
    estimates = np.array([w[0] for w in where])
    return LandmarkSet(
        marks, estimates, e.method, e.check, e.detail, time.perf_counter() - t0, details
    )


def face_frame(volume: CtVolume, threshold_hu: float = SKIN_HU) -> FaceFrame:
    """The face frame for rendering: from the landmarks (``detect_landmarks``, auto); the
    geometric locator when they find no face or the CT-FAN weights are missing."""
    try:
        return detect_landmarks(volume).frame()
    except (MissingDataError, NoFaceError):
        return locate_face(volume, threshold_hu)
