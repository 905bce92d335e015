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

``save_weights`` also exports both networks to ONNX beside the file (``export_ctfan_onnx``:
NAME.coarse.onnx, NAME.fine.onnx); where these record the file's SHA-256 the detector runs
them on ONNX Runtime and loads without torch, else it runs torch.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ctface.errors import MissingDataError
from ctface.files import atomic_path
from ctface.ingest.canonical import canonicalize
from ctface.ingest.volume import CtVolume
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
from ctface.model_files import (
    SOURCE_KEY,
    OnnxNet,
    TorchOnDemand,
    export_onnx,
    import_torch,
    onnx_nets,
    onnx_path,
)

if TYPE_CHECKING:  # torch is imported where a torch network is loaded, trained or exported
    from ctface.landmarks.model import CtFan

WEIGHTS = Path(__file__).with_name("weights") / "ctfan.pt"
FORMAT = "ctface-ctfan-1"
FLIP = np.diag([-1.0, 1.0, 1.0])
MIN_FACE_PEAK = 0.25  # coarse peaks of eyes and nose all below this: no face
FINE_MARGIN_MM = 40.0
SPINS_DEG = (0.0, 90.0, 180.0, 270.0)
FINE_PASSES = 3  # each re-centred and re-oriented on the previous estimate
PAIR_APART_MM = 25.0  # the two peaks of the eyes' (mouth corners') heatmap are this far apart
ONNX_PARTS = ("coarse", "fine")  # NAME.coarse.onnx, NAME.fine.onnx
BACKENDS = ("auto", "onnxruntime", "torch")


@dataclass(frozen=True)
class CtFanOutput:
    lps: np.ndarray  # (5, 3) final estimate of every landmark
    coarse_lps: np.ndarray  # (5, 3)
    coarse_peak: np.ndarray  # (5,)
    fine_peak: np.ndarray  # (5,)


def save_weights(
    path: Path, coarse: CtFan, fine: CtFan, meta: dict[str, Any], onnx: bool = True
) -> None:
    """Write a CT-FAN weights file, and (``onnx``) its ONNX export beside it (a warning
    instead where the onnx package is missing: the detector then runs on torch)."""
    torch = import_torch()
    blob = {
        "format": FORMAT,
        "coarse": {"config": coarse.config.to_json(), "state": coarse.state_dict()},
        "fine": {"config": fine.config.to_json(), "state": fine.state_dict()},
        "meta": meta,
    }
    with atomic_path(path) as tmp:
        torch.save(blob, tmp)
    if onnx:
        try:
            export_ctfan_onnx(path)
        except MissingDataError as e:
            warnings.warn(f"{path}: no ONNX export, CT-FAN runs on torch ({e})", stacklevel=2)


def _read(p: Path) -> tuple[CtFan, CtFan, dict[str, Any]]:
    """The torch coarse and fine networks and the metadata of the weights file ``p``."""
    from ctface.landmarks.model import CtFan, NetConfig

    try:
        blob = import_torch().load(p, map_location="cpu", weights_only=True)
        if blob.get("format") != FORMAT:
            raise ValueError(f"format {blob.get('format')!r}")
        nets = []
        for key in ONNX_PARTS:
            net = CtFan(NetConfig(**blob[key]["config"]))
            net.load_state_dict(blob[key]["state"])
            nets.append(net)
    except Exception as exc:  # unpickling can fail in many ways; all mean "not usable"
        raise MissingDataError(f"{p} is not a usable CT-FAN weights file ({exc})") from exc
    return nets[0], nets[1], dict(blob.get("meta", {}))


def export_ctfan_onnx(path: Path) -> list[Path]:
    """Export the weights file ``path`` to ONNX beside it (``onnx_path``, parts
    ``ONNX_PARTS``): each network (B, 1, n, n, n) CT cubes -> heatmaps, with the file's
    SHA-256 in its metadata."""
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    nets = dict(zip(ONNX_PARTS, _read(Path(path))[:2], strict=True))
    torch = import_torch()
    out = []
    for part, stage in zip(ONNX_PARTS, (COARSE, FINE), strict=True):
        example = torch.zeros(2, 1, stage.n, stage.n, stage.n)
        meta = {SOURCE_KEY: digest, "ctface.part": part}
        out.append(
            export_onnx(nets[part], example, onnx_path(path, part), ("ct", "heatmaps"), meta)
        )
    return out


class CtFanDetector(TorchOnDemand):
    """Coarse and fine CT-FAN networks: on ONNX Runtime (``onnx``: the exports of the weights
    file, by part) or torch modules in evaluation mode (``coarse``, ``fine``; read from
    ``path`` on first use where ONNX Runtime runs the detector, as is ``meta``)."""

    def __init__(
        self,
        coarse: CtFan | None,
        fine: CtFan | None,
        meta: dict[str, Any] | None,
        path: Path | None = None,
        onnx: dict[str, OnnxNet] | None = None,
    ) -> None:
        if (coarse is None or fine is None or meta is None) and (onnx is None or path is None):
            raise ValueError("a detector needs its torch networks, or its ONNX ones and its file")
        self.path, self.onnx = path, onnx
        self._coarse_net = None if coarse is None else coarse.eval()
        self._fine_net = None if fine is None else fine.eval()
        self._meta = meta

    @property
    def coarse(self) -> CtFan:
        """The torch coarse network."""
        net: CtFan = self._on_demand("_coarse_net")
        return net

    @property
    def fine(self) -> CtFan:
        """The torch fine network."""
        net: CtFan = self._on_demand("_fine_net")
        return net

    @property
    def meta(self) -> dict[str, Any]:
        """What the weights file records about its training."""
        meta: dict[str, Any] = self._on_demand("_meta")
        return meta

    def _load_torch(self) -> None:
        assert self.path is not None
        coarse, fine, self._meta = _read(self.path)
        self._coarse_net, self._fine_net = coarse.eval(), fine.eval()

    @classmethod
    def load(cls, path: Path | None = None, backend: str = "auto") -> CtFanDetector:
        """The detector in ``path`` (None: the shipped weights). ``backend`` "auto": on ONNX
        Runtime where the file's exports are beside it and record its SHA-256, else on torch;
        "torch" or "onnxruntime" (MissingDataError without valid exports): that one."""
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        p = Path(path) if path else WEIGHTS
        if not p.is_file():
            raise MissingDataError(
                f"CT-FAN weights not found at {p}; reinstall ctface or train them with "
                "`ctface train-landmarks`"
            )
        if backend != "torch":
            digest = hashlib.sha256(p.read_bytes()).hexdigest()
            nets = onnx_nets(p, ONNX_PARTS, digest)
            if nets is not None:
                return cls(None, None, None, p.resolve(), nets)
            if backend == "onnxruntime":
                raise MissingDataError(
                    f"no ONNX export of {p} (or onnxruntime missing): `ctface train "
                    f"export-onnx --weights {p}` writes it"
                )
        coarse, fine, meta = _read(p)
        return cls(coarse, fine, meta, p.resolve())

    def _heatmaps(self, part: str, x: np.ndarray) -> np.ndarray:
        """(B, n, n, n) CT cubes -> (B, L, n/2, n/2, n/2) heatmaps of network ``part``."""
        if self.onnx:
            return self.onnx[part](x[:, None])
        torch = import_torch()
        net = self.coarse if part == "coarse" else self.fine
        with torch.no_grad():
            out: np.ndarray = net(torch.from_numpy(x[:, None])).numpy()
        return out

    def _run(
        self, part: str, grid: Grid, centres: np.ndarray, axes: np.ndarray, stage: Stage
    ) -> tuple[np.ndarray, np.ndarray]:
        """Heatmap cells -> LPS for cubes at ``centres`` (M, 3), each with and without mirror;
        returns (M, 5, 3) positions and (M, 5) peaks, mirror and plain averaged."""
        views = [(c, a) for c in centres for a in (axes, FLIP @ axes)]
        x = np.stack([sample_cube(grid, c, a, stage.n, stage.step_mm) for c, a in views])
        maps = self._heatmaps(part, x)
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
        maps = self._heatmaps("coarse", x[None])[0]
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
            lps, peak = self._run("fine", fine, est, face_axes(est), FINE)
            est, fine_peak = lps[idx, idx], peak[idx, idx]
        return CtFanOutput(est, coarse_lps, coarse_peak, fine_peak)
