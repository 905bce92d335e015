"""Quality-control picture of detected landmarks: the frontal depth rendering in the landmarks'
face frame with the five points, and one axial slice through each landmark."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ctface.errors import NoFaceError
from ctface.extras import pyplot
from ctface.files import atomic_path
from ctface.ingest.volume import CtVolume
from ctface.landmarks.detect import LandmarkSet
from ctface.landmarks.sampling import LANDMARKS

COLOURS = ("tab:red", "tab:blue", "tab:green", "tab:orange", "tab:purple")
SLICE_HALF_MM = 50.0


def write_landmark_qc(
    volume: CtVolume, result: LandmarkSet, path: Path, truth: np.ndarray | None = None
) -> Path:
    """PNG at ``path`` (written atomically). ``truth`` (5, 3) LPS is drawn as crosses."""
    plt = pyplot("the landmark QC picture")
    from ctface.render import View, project_points, render_face

    fit_json = result.details.get("surface_fit", {}).get("lps")
    fit = np.array(fit_json) if fit_json is not None else None
    fig, axes = plt.subplots(2, 3, figsize=(13, 8.6))
    ax = axes[0, 0]
    try:
        r = render_face(volume, frame=result.frame(), views=[View(0.0, 0.0, 0.0)])
        ax.imshow(r.normalized[0], cmap="gray")
        for i, name in enumerate(LANDMARKS):
            lm = result[name]
            shown = lm.lps if lm.lps is not None else result.estimate_lps[i]
            p = project_points(r, shown[None], 0)[0]
            style = "o" if lm.lps is not None else "x"
            ax.plot(p[0], p[1], style, color=COLOURS[i], ms=7, mfc="none", mew=2)
            if truth is not None:
                t = project_points(r, truth[i][None], 0)[0]
                ax.plot(t[0], t[1], "+", color="yellow", ms=9)
            if fit is not None:
                q = project_points(r, fit[i][None], 0)[0]
                ax.plot(q[0], q[1], "x", color=COLOURS[i], ms=6)
        ax.set_title("frontal depth: o result, x face-model fit", fontsize=10)
    except NoFaceError as exc:
        ax.text(0.5, 0.5, f"no rendering:\n{exc}", ha="center", va="center", wrap=True)
    ax.axis("off")
    for i, name in enumerate(LANDMARKS):
        ax = axes.flat[i + 1]
        lm = result[name]
        p = lm.lps if lm.lps is not None else result.estimate_lps[i]
        ijk = volume.lps_to_ijk(p[None])[0]
        k = int(np.clip(round(ijk[2]), 0, volume.hu.shape[0] - 1))
        s = volume.spacing[0]
        r0 = max(0, int(ijk[1] - SLICE_HALF_MM / s))
        c0 = max(0, int(ijk[0] - SLICE_HALF_MM / s))
        img = volume.hu[
            k, r0 : int(ijk[1] + SLICE_HALF_MM / s), c0 : int(ijk[0] + SLICE_HALF_MM / s)
        ]
        ax.imshow(img, cmap="gray", vmin=-1000, vmax=400)
        ax.plot(ijk[0] - c0, ijk[1] - r0, "o" if lm.lps is not None else "x", color=COLOURS[i],
                ms=9, mfc="none", mew=2)  # fmt: skip
        if truth is not None:
            t = volume.lps_to_ijk(truth[i][None])[0]
            ax.plot(t[0] - c0, t[1] - r0, "+", color="yellow", ms=11)
        if fit is not None:
            q = volume.lps_to_ijk(fit[i][None])[0]
            ax.plot(q[0] - c0, q[1] - r0, "x", color=COLOURS[i], ms=7)
        label = (
            f"{name}: conf {lm.confidence:.2f}"
            if lm.lps is not None
            else f"{name}: MISSING\n{lm.reason}"
        )
        ax.set_title(f"{label}\naxial z={p[2]:.0f} mm (patient's right on the left)", fontsize=9)
        ax.axis("off")
    fig.suptitle(
        f"landmarks: {result.method}; cross-check: {result.cross_check_text}"[:140], fontsize=10
    )
    fig.tight_layout()
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=80)
    finally:
        plt.close(fig)
    return path
