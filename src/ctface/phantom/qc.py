"""Quality-control pictures of a synthetic scan: frontal skin rendering and mid slices."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ctface.extras import pyplot
from ctface.ingest.volume import SKIN_HU, CtVolume


def frontal_depth(volume: CtVolume, threshold_hu: float = SKIN_HU) -> np.ndarray:
    """Depth (mm from the anterior edge of the volume) of the first voxel above the skin
    threshold, looking posteriorly (LPS +y), as an image [k, i] (superior row first); NaN where
    no skin is hit. Assumes an axial volume whose j axis runs anterior -> posterior."""
    hu = volume.hu
    above = hu >= threshold_hu
    hit = above.any(axis=1)
    first = np.argmax(above, axis=1)
    k, i = np.indices(first.shape)
    after = hu[k, first, i].astype(np.float32)
    before = hu[k, np.maximum(first - 1, 0), i].astype(np.float32)
    frac = np.clip((threshold_hu - before) / np.maximum(after - before, 1e-3), 0, 1)
    sub = np.where(first > 0, first - 1 + frac, 0.0)  # linear crossing between the two voxels
    depth = np.where(hit, sub * volume.spacing[1], np.nan)
    return depth[::-1]


def shade(depth: np.ndarray, spacing_x: float, spacing_z: float) -> np.ndarray:
    """Lambert shading (light from the viewer) of a depth image; background 0."""
    d = np.nan_to_num(depth, nan=np.nanmax(depth) if np.isfinite(depth).any() else 0.0)
    gz, gx = np.gradient(d, spacing_z, spacing_x)
    shade_ = 1.0 / np.sqrt(1 + gx**2 + gz**2)
    return np.where(np.isfinite(depth), shade_, 0.0)


def write_qc(volume: CtVolume, truth: dict[str, Any], path: Path) -> Path:
    """PNG: frontal shaded skin with the five landmarks, and axial/coronal/sagittal mid slices."""
    plt = pyplot("the phantom QC pictures (--qc)")
    di, dj, dk = volume.spacing
    depth = frontal_depth(volume)
    nk, nj, ni = volume.hu.shape
    fig, axes = plt.subplots(1, 4, figsize=(16, 4.6))
    aspect = dk / di
    axes[0].imshow(shade(depth, di, dk), cmap="gray", aspect=aspect)
    for name, lm in truth.get("landmarks", {}).items():
        i, _, k = volume.lps_to_ijk(np.array(lm["lps"]))[0]
        axes[0].plot(i, nk - 1 - k, "r+", ms=9)
        axes[0].annotate(name, (i, nk - 1 - k), color="yellow", fontsize=6)
    axes[0].set_title("frontal skin (-350 HU) + landmarks")
    win = {"cmap": "gray", "vmin": -1000, "vmax": 1000}
    nose = truth.get("landmarks", {}).get("nose_tip", {}).get("lps")
    ci, cj, ck = volume.lps_to_ijk(np.array(nose))[0] if nose else np.array([ni, nj, nk]) / 2
    cj += 70.0 / dj  # coronal section through the eyes' orbits, behind the nose tip
    ck = int(np.clip(round(ck), 0, nk - 1))
    ci = int(np.clip(round(ci), 0, ni - 1))
    cj = int(np.clip(round(cj), 0, nj - 1))
    axes[1].imshow(volume.hu[ck], **win)
    axes[1].set_title(f"axial k={ck}")
    axes[2].imshow(volume.hu[::-1, cj, :], aspect=aspect, **win)
    axes[2].set_title(f"coronal j={cj}")
    axes[3].imshow(volume.hu[::-1, :, ci], aspect=dk / dj, **win)
    axes[3].set_title(f"sagittal i={ci}")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    scan = truth.get("scan", {})
    fig.suptitle(
        f"{truth.get('scan_id', '')}  pixel {di:.2f} mm, slice {scan.get('slice_thickness_mm')}"
        f"/{dk:.2f} mm, tube {scan.get('tube')}, mask {scan.get('mask')}, "
        f"expr {','.join(k for k, v in scan.get('expression', {}).items() if v > 0.15) or '-'}",
        fontsize=9,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=70)
    plt.close(fig)
    return path
