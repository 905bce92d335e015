"""The trained coarse-to-fine CT-FAN detector: weights file and inference.

1. Coarse: the whole head at 5.5 mm in the scanner's axes (48 voxels = 264 mm, centred on the
   head) -> heatmaps at 11 mm of both eyes, the nose tip and both mouth corners -> the two
   highest peaks of the eyes' and mouth's maps, labelled right and left by the face's own
   geometry -> a first estimate of every landmark, also of those outside the field of view
   (the network extrapolates them from the head's shape).
2. Fine, three passes: a 40 mm cube at 1.25 mm around each landmark, in the face frame of the
   current estimates -> heatmaps at 2.5 mm -> the landmark; each pass re-centred and
   re-oriented on the one before.
Every fine pass also runs on the mirror image (right and left channels swapped back) and the
two estimates are averaged. Peak height (the target's peak is 1) is the network's confidence.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ctface.errors import MissingDataError
from ctface.files import atomic_path
from ctface.ingest.canonical import canonicalize
from ctface.ingest.volume import CtVolume
from ctface.landmarks.model import CtFan, NetConfig
from ctface.landmarks.sampling import (
    COARSE,
    FINE,
    MIRROR,
    Grid,
    Stage,
    assign_sides,
    body_centre,
    coarse_grid,
    decode_heatmaps,
    decode_peaks,
    face_axes,
    from_cells,
    sample_cube,
)

WEIGHTS = Path(__file__).with_name("weights") / "ctfan.pt"
FORMAT = "ctface-ctfan-1"
FLIP = np.diag([-1.0, 1.0, 1.0])
MIN_FACE_PEAK = 0.25  # coarse peaks of eyes and nose all below this: no face
FINE_MARGIN_MM = 40.0
SPINS_DEG = (0.0, 90.0, 180.0, 270.0)
FINE_PASSES = 3  # each re-centred and re-oriented on the previous estimate
PAIR_APART_MM = 25.0  # the two peaks of the eyes' (mouth corners') heatmap are this far apart


@dataclass(frozen=True)
class CtFanOutput:
    lps: np.ndarray  # (5, 3) final estimate of every landmark
    coarse_lps: np.ndarray  # (5, 3)
    coarse_peak: np.ndarray  # (5,)
    fine_peak: np.ndarray  # (5,)


def save_weights(path: Path, coarse: CtFan, fine: CtFan, meta: dict[str, Any]) -> None:
    blob = {
        "format": FORMAT,
        "coarse": {"config": coarse.config.to_json(), "state": coarse.state_dict()},
        "fine": {"config": fine.config.to_json(), "state": fine.state_dict()},
        "meta": meta,
    }
    with atomic_path(path) as tmp:
        torch.save(blob, tmp)


class CtFanDetector:
    """Coarse and fine CT-FAN networks in evaluation mode."""

    def __init__(self, coarse: CtFan, fine: CtFan, meta: dict[str, Any]) -> None:
        self.coarse, self.fine, self.meta = coarse.eval(), fine.eval(), meta

    @classmethod
    def load(cls, path: Path | None = None) -> CtFanDetector:
        p = Path(path) if path else WEIGHTS
        if not p.is_file():
            raise MissingDataError(
                f"CT-FAN weights not found at {p}; reinstall ctface or train them with "
                "`ctface train-landmarks`"
            )
        try:
            blob = torch.load(p, map_location="cpu", weights_only=True)
            if blob.get("format") != FORMAT:
                raise ValueError(f"format {blob.get('format')!r}")
            nets = []
            for key in ("coarse", "fine"):
                net = CtFan(NetConfig(**blob[key]["config"]))
                net.load_state_dict(blob[key]["state"])
                nets.append(net)
        except Exception as exc:  # unpickling can fail in many ways; all mean "not usable"
            raise MissingDataError(f"{p} is not a usable CT-FAN weights file ({exc})") from exc
        return cls(nets[0], nets[1], dict(blob.get("meta", {})))

    def _run(
        self, net: CtFan, grid: Grid, centres: np.ndarray, axes: np.ndarray, stage: Stage
    ) -> tuple[np.ndarray, np.ndarray]:
        """Heatmap cells -> LPS for cubes at ``centres`` (M, 3), each with and without mirror;
        returns (M, 5, 3) positions and (M, 5) peaks, mirror and plain averaged."""
        views = [(c, a) for c in centres for a in (axes, FLIP @ axes)]
        x = np.stack([sample_cube(grid, c, a, stage.n, stage.step_mm) for c, a in views])
        with torch.no_grad():
            maps = net(torch.from_numpy(x[:, None])).numpy()
        lps = np.zeros((len(views), 5, 3))
        peak = np.zeros((len(views), 5))
        for v, (c, a) in enumerate(views):
            m = maps[v][MIRROR] if v % 2 else maps[v]
            cells, peak[v] = decode_heatmaps(m)
            lps[v] = from_cells(cells, c, a, stage)
        return lps.reshape(-1, 2, 5, 3).mean(1), peak.reshape(-1, 2, 5).mean(1)

    def detect(self, volume: CtVolume) -> CtFanOutput:
        """Landmarks of a volume (resampled to 1 mm LPS first unless it is canonical)."""
        iso = np.allclose(volume.spacing, volume.spacing[0], rtol=1e-4)
        if not (iso and np.allclose(volume.direction, np.eye(3), atol=1e-6)):
            volume = canonicalize(volume, 1.0)
        cg = coarse_grid(volume)
        coarse_lps, coarse_peak = self._coarse(cg)
        lo, hi = coarse_lps.min(0) - FINE_MARGIN_MM, coarse_lps.max(0) + FINE_MARGIN_MM
        box = volume.lps_to_ijk(np.stack([lo, hi]))
        i0 = np.clip(np.floor(box.min(0)).astype(int), 0, None)
        i1 = np.ceil(box.max(0)).astype(int) + 1
        sub = CtVolume(
            volume.hu[i0[2] : i1[2], i0[1] : i1[1], i0[0] : i1[0]],
            volume.affine_lps.copy(),
        )
        sub.affine_lps[:3, 3] = volume.ijk_to_lps(i0[None])[0]
        return self._fine(Grid.from_volume(sub), coarse_lps, coarse_peak)

    def detect_grids(self, coarse: Grid, fine: Grid) -> CtFanOutput:
        """Landmarks from prepared grids (2.5 mm whole head, 1 mm around the face)."""
        return self._fine(fine, *self._coarse(coarse))

    def _coarse(self, grid: Grid, axes: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The coarse stage on the cube turned 0, 90, 180 and 270 deg about the cube's z axis:
        the turn whose five peaks are highest on average wins."""
        axes = np.eye(3) if axes is None else axes
        best: tuple[np.ndarray, np.ndarray] | None = None
        for deg in SPINS_DEG:
            t = np.radians(deg)
            spin = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])
            five, peaks = self._coarse_once(grid, spin @ axes)
            if best is None or peaks.mean() > best[1].mean():
                best = (five, peaks)
        assert best is not None
        return best

    def _coarse_once(
        self, grid: Grid, axes: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Both eyes, the nose tip and both mouth corners from the three symmetric heatmaps;
        right and left by the face's geometry (``assign_sides``). ``axes``: the cube's
        orientation (default: the scanner's)."""
        axes = np.eye(3) if axes is None else axes
        centre = body_centre(grid)
        x = sample_cube(grid, centre, axes, COARSE.n, COARSE.step_mm)
        with torch.no_grad():
            maps = self.coarse(torch.from_numpy(x[None, None])).numpy()[0]
        apart = PAIR_APART_MM / COARSE.out_step_mm
        eyes, pe = decode_peaks(maps[0], 2, apart)
        nose, pn = decode_peaks(maps[1], 1, apart)
        mouths, pm = decode_peaks(maps[2], 2, apart)
        to_lps = lambda c: from_cells(c, centre, axes, COARSE)  # noqa: E731
        five = assign_sides(to_lps(eyes), to_lps(nose)[0], to_lps(mouths), centre)
        order = [np.argmin(np.linalg.norm(to_lps(eyes) - p, axis=1)) for p in five[:2]]
        morder = [np.argmin(np.linalg.norm(to_lps(mouths) - p, axis=1)) for p in five[3:]]
        peaks = np.array([pe[order[0]], pe[order[1]], pn[0], pm[morder[0]], pm[morder[1]]])
        return five, peaks

    def _fine(self, fine: Grid, coarse_lps: np.ndarray, coarse_peak: np.ndarray) -> CtFanOutput:
        est, fine_peak = coarse_lps.copy(), np.zeros(5)
        idx = np.arange(5)
        for _ in range(FINE_PASSES):
            lps, peak = self._run(self.fine, fine, est, face_axes(est), FINE)
            est, fine_peak = lps[idx, idx], peak[idx, idx]
        return CtFanOutput(est, coarse_lps, coarse_peak, fine_peak)
