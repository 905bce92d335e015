"""Write a rendering to a folder: PNG depth images, metric depths, render.json and a QC picture.

Layout of ``out/``::

    depth_000.png ...   uint8 adjusted depth images (``FaceRendering.normalized``), one per view
    depth_mm.npz        ``depth_mm`` (V, size, size) float32, mm above the reference plane, NaN
                        = background (compressed)
    render.json         views (pitch, roll, yaw, file), camera, threshold, frame, face region,
                        normalization
    qc.png              frontal shaded skin, frontal depth (mm), four extreme poses (only
                        with matplotlib, the ``plot`` extra)

The folder is built in a hidden sibling and renamed when complete; a non-empty ``out`` is
refused (OutputError).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ctface.errors import OutputError
from ctface.extras import available, pyplot
from ctface.render.depth import FaceRendering

FORMAT_VERSION = 1


def _png(path: Path, image: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(np.ascontiguousarray(image), mode="L").save(path, optimize=False)


def shaded(depth_mm: np.ndarray, mm_per_pixel: float) -> np.ndarray:
    """Lambert shading (light from the viewer) of one depth image, 0..1, background 0."""
    valid = np.isfinite(depth_mm)
    d = np.where(valid, depth_mm, np.nanmin(depth_mm) if valid.any() else 0.0)
    gy, gx = np.gradient(d, mm_per_pixel)
    out: np.ndarray = np.where(valid, 1.0 / np.sqrt(1.0 + gx**2 + gy**2), 0.0)
    return out


def _frontal(r: FaceRendering) -> int:
    return int(np.argmin([abs(v.pitch) + abs(v.roll) + abs(v.yaw) for v in r.views]))


def write_qc(r: FaceRendering, path: Path) -> Path:
    """QC picture: frontal shaded skin, frontal depth (mm), four extreme poses (adjusted)."""
    plt = pyplot("the rendering's QC picture")
    f = _frontal(r)
    corners: list[int] = []
    for sp, sr in ((1, 1), (1, -1), (-1, 1), (-1, -1)):  # the four extreme poses
        i = min(range(len(r.views)), key=lambda n: (sp * r.views[n].pitch, sr * r.views[n].roll))
        if i not in corners and i != f:
            corners.append(i)
    panels = 2 + len(corners)
    fig, axes = plt.subplots(1, panels, figsize=(3.2 * panels, 3.6))
    axes = np.atleast_1d(axes)
    v = r.views[f]
    axes[0].imshow(shaded(r.depth_mm[f], r.mm_per_pixel), cmap="gray", vmin=0, vmax=1)
    axes[0].set_title(f"skin {r.threshold_hu:g} HU (p{v.pitch:+.0f} r{v.roll:+.0f})", fontsize=8)
    im = axes[1].imshow(r.depth_mm[f], cmap="viridis")
    fig.colorbar(im, ax=axes[1], fraction=0.046, pad=0.02, label="mm")
    axes[1].set_title("depth above reference (mm)", fontsize=8)
    for ax, i in zip(axes[2:], corners, strict=True):
        ax.imshow(r.normalized[i], cmap="gray", vmin=0, vmax=255)
        ax.set_title(f"pitch {r.views[i].pitch:+.0f} roll {r.views[i].roll:+.0f}", fontsize=8)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    missing, partial = r.face_region.missing, r.face_region.partial
    fig.suptitle(
        f"{len(r.views)} views, {r.size} px, {r.mm_per_pixel:.3f} mm/px, frame {r.frame.method}"
        f"; missing: {', '.join(missing) or '-'}; partial: {', '.join(partial) or '-'}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def render_json(r: FaceRendering, names: list[str]) -> dict[str, Any]:
    return {
        "format": "ctface-render",
        "version": FORMAT_VERSION,
        "views": [{**v.to_json(), "depth": n} for v, n in zip(r.views, names, strict=True)],
        "camera": r.camera(),
        "threshold_hu": r.threshold_hu,
        "opening_radius_mm": r.open_mm,
        "frame": r.frame.to_json(),
        "face_region": r.face_region.to_json(),
        "normalization": {
            "theta_mm": r.theta_mm,
            "C": r.scale_c,
            "max_sx_cap_mm": r.face_top_mm,
            "formula": "NX = C * (SX - theta) / (min(max(SX), max_sx_cap_mm) - theta) per image, "
            "surface clipped to 1..255, background 0",
        },
        "depth_mm_file": "depth_mm.npz",
    }


def write_rendering(r: FaceRendering, out: Path) -> Path:
    """Write ``r`` into ``out`` (must not exist or be empty); returns ``out``."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise OutputError(f"output folder {out} exists and is not empty; choose a new --out")
    staging = out.with_name(f".{out.name}.partial")
    try:
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir(parents=True)
    except OSError as exc:
        raise OutputError(f"cannot create {staging}: {exc.strerror}") from exc
    try:
        width = max(3, len(str(len(r.views) - 1)))
        names = [f"depth_{i:0{width}d}.png" for i in range(len(r.views))]
        for i, name in enumerate(names):
            _png(staging / name, r.normalized[i])
        np.savez_compressed(staging / "depth_mm.npz", depth_mm=r.depth_mm.astype(np.float32))
        text = json.dumps(render_json(r, names), indent=1)
        (staging / "render.json").write_text(text)
        if available("matplotlib"):  # the QC picture needs the plot extra; the rest does not
            write_qc(r, staging / "qc.png")
        if out.exists():
            out.rmdir()
        os.replace(staging, out)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise OutputError(f"cannot write {out}: {exc.strerror or exc}") from exc
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out
