"""Depth values of the face in CT depth images: what the adjustment's theta and C must map.

Run: .venv/bin/python benchmarks/depth_histogram.py --cache DIR (``ctface train phantoms``)

For the true face pixels of every view (the face model's face, ``embed.examples``), depth in
mm above the reference plane (100 mm behind the nose tip): percentiles over all pixels, the
per-image minimum and maximum, and the share of face pixels that theta = 20 mm would clip.
Then the adjusted values NX = C (SX - theta) / (max SX - theta) of the face pixels.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ctface.embed.examples import DepthExample
from ctface.render.depth import SCALE_C, THETA_MM

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cache", type=Path, required=True)
    ap.add_argument("--scans", type=int, default=60)
    args = ap.parse_args()
    values, lows, highs, adjusted = [], [], [], []
    for p in sorted(args.cache.glob("ct_*.npz"))[: args.scans]:
        ex = DepthExample.load(p)
        assert ex.face_mask is not None
        d = ex.depth_mm.astype(np.float32)
        for v in range(0, len(d), 9):  # every 9th view: all pitches and rolls
            face = d[v][ex.face_mask[v]]
            if face.size < 100:
                continue
            values.append(face)
            lows.append(face.min())
            highs.append(face.max())
            adjusted.append(SCALE_C * (face - THETA_MM) / (face.max() - THETA_MM))
    allv, adj = np.concatenate(values), np.concatenate(adjusted)
    q = [0.5, 1, 5, 25, 50, 75, 95, 99, 100]

    def pct(x: np.ndarray | list[float], at: list[float]) -> dict[str, float]:
        return {str(k): round(float(v), 1) for k, v in zip(at, np.percentile(x, at), strict=True)}

    out = {
        "images": len(lows),
        "face_depth_mm_percentiles": pct(allv, q),
        "image_min_mm_percentiles": pct(lows, [5, 50, 95]),
        "image_max_mm_percentiles": pct(highs, [5, 50, 95]),
        "share_below_theta": round(float(np.mean(allv < THETA_MM)), 5),
        "theta_mm": THETA_MM,
        "adjusted_percentiles": pct(adj, q),
    }
    print(json.dumps(out, indent=1))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "depth_histogram.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
