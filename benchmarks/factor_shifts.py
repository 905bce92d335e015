"""Which nuisance moves genuine scores most: one factor at a time, on the same people.

Run: .venv/bin/python benchmarks/factor_shifts.py [--people 8] [--seed 0] [--jobs 2]
     [--weights MODEL.pt] [--factors NAME ...] [--out FILE]

For each synthetic person (``ctface phantom``'s generator) two *baseline* scans are made (no
device, neutral face, head pose within +-5 deg, 0.8-0.9 mm pixels, 1 mm slices, moderate noise,
the full head in the field of view; only the random neutral jitter, noise and pose differ),
then one scan per factor: the baseline settings with that one nuisance forced (e.g. an
endotracheal tube in every scan, or 5 mm slices). Every scan goes through the whole pipeline
in memory (``ctface.api.acquire``: landmarks, 90 views, quality gate, the shipped model).

Per factor: the genuine score of (baseline 1, factor scan) against the re-acquisition score
(baseline 1, baseline 2) of the same person; the shift is their difference (median and range
over the people), and failures to acquire are counted. The shipped calibration's FMR-1e-3
threshold (recorded as ``threshold``; 0.510 for release eef0a5fa, whose results name the count
``below_0.510``) is the line a genuine score must stay above.

Factors: the generator's clinical nuisances (expression ... cut_chin), the domain-randomization
devices (``phantom.params.EXTRA_FACTORS``: ET tube with connector, bite block, open-face and
thick masks, blanket, pillow, strap, hair, beard, glasses, skin bumps) and the held-out style
(``ctface phantom --style heldout``, issue 16): ``heldout_style`` is the baseline nuisances
made by the held-out appearance and acquisition model (skin and partial volume, correlated
noise, gantry tilt, field-of-view centring), ``heldout_*`` adds one nuisance drawn with the
held-out designs (long ET tube with connector and hose, full-face mask with head-rest cut-out,
bite block, dental streaks). All on the same people and anatomy.
Writes ``benchmarks/results/factor_shifts.json``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import zlib
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ctface.errors import CtfaceError
from ctface.files import portable_path, write_text_atomic
from ctface.jobs import map_jobs
from ctface.phantom.params import EXTRA_FACTORS, GeneratorStyle, NuisanceConfig

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "factor_shifts.json"
BASELINE = NuisanceConfig(
    p_expression=0.0, p_jaw_open=0.0, p_eyes_closed=0.0, weight_change_sd_mm=0.0,
    p_nasogastric=0.0, p_endotracheal=0.0, p_mask=0.0, p_dental_metal=0.0, pitch_deg=5.0,
    roll_deg=5.0, yaw_deg=5.0, pixel_mm=(0.8, 0.9), slice_thickness_mm=(1.0,),
    p_overlapping_slices=0.0, p_cut_top=0.0, p_cut_chin=0.0, noise_hu_at_1mm=(12.0, 15.0),
)  # fmt: skip
FACTORS: dict[str, dict[str, Any]] = {
    "expression": {"p_expression": 1.0},
    "jaw_open": {"p_jaw_open": 1.0},
    "eyes_closed": {"p_eyes_closed": 1.0},
    "weight_change_4mm": {"weight_change_sd_mm": 40.0},  # clipped at +-4 mm: always +-4
    "nasogastric_tube": {"p_nasogastric": 1.0},
    "endotracheal_tube": {"p_endotracheal": 1.0},
    "rt_mask": {"p_mask": 1.0},
    "dental_metal": {"p_dental_metal": 1.0},
    "pose_20deg": {"pitch_deg": 20.0, "roll_deg": 10.0, "yaw_deg": 15.0},
    "slices_5mm": {"slice_thickness_mm": (5.0,)},
    "noise_30hu": {"noise_hu_at_1mm": (30.0, 30.0)},
    "cut_top": {"p_cut_top": 1.0},
    "cut_chin": {"p_cut_chin": 1.0},
}
FIRST_SETTINGS = {"baseline_1", "baseline_2", *FACTORS}
FACTORS.update({name: {f"p_{name}": 1.0} for name in EXTRA_FACTORS})
HELDOUT = "heldout_"  # factors made with the held-out style (GeneratorStyle.HELDOUT)
FACTORS.update({
    "heldout_style": {},
    "heldout_endotracheal": {"p_endotracheal": 1.0},
    "heldout_mask": {"p_mask": 1.0},
    "heldout_bite_block": {"p_bite_block": 1.0},
    "heldout_dental_metal": {"p_dental_metal": 1.0},
    "heldout_expression": {"p_expression": 1.0},
})  # fmt: skip


def _name_seed(name: str) -> int:
    """The setting's part of a scan's seed: the sum of the name's characters for the settings
    of the first results (kept, so they are made again byte for byte), a CRC for the later ones
    (two of them had the same sum)."""
    return sum(map(ord, name)) if name in FIRST_SETTINGS else zlib.crc32(name.encode())


def scan_job(
    person: int, name: str, seed: int, weights: str | None = None
) -> tuple[int, str, np.ndarray | None, str | None]:
    """One scan of one person under one setting -> (person, setting, template or None, why)."""
    import torch

    from ctface.api import acquire
    from ctface.phantom.cohort import load_generator_model
    from ctface.phantom.export import write_nifti
    from ctface.phantom.generator import synthesize_scan
    from ctface.phantom.params import draw_scan, draw_subject

    torch.set_num_threads(1)
    model, maps = load_generator_model()
    subject = draw_subject(np.random.default_rng([seed, person]), f"P{person:03d}",
                           model.n_identity)  # fmt: skip
    cfg = BASELINE if name.startswith("baseline") else replace(BASELINE, **FACTORS[name])
    rng = np.random.default_rng([seed, person, _name_seed(name)])
    style = GeneratorStyle.HELDOUT if name.startswith(HELDOUT) else GeneratorStyle.STANDARD
    scan = draw_scan(rng, f"{subject.subject_id}_{name}", model.expression_names, cfg, style)
    volume = synthesize_scan(model, maps, subject, scan, rng).volume
    with tempfile.TemporaryDirectory() as tmp:  # read back as a user's NIfTI file is read
        path = write_nifti(volume, Path(tmp) / "scan.nii.gz")
        try:
            return person, name, acquire(path, model=weights).template.vector, None
        except CtfaceError as e:
            return person, name, None, f"{type(e).__name__}: {e}"


def summarize(results: list[tuple[int, str, np.ndarray | None, str | None]]) -> dict[str, Any]:
    """Per factor: genuine scores against baseline 1, their shift from the re-acquisition
    score, how many fall under the shipped threshold, and the failures to acquire."""
    t = {(p, n): v for p, n, v, _ in results if v is not None}
    why = {(p, n): w for p, n, _, w in results if w}
    people = sorted({p for p, *_ in results})
    ok = [p for p in people if (p, "baseline_1") in t and (p, "baseline_2") in t]
    ref = {p: float(t[(p, "baseline_1")] @ t[(p, "baseline_2")]) for p in ok}
    from ctface.gallery.calibration import Calibration

    threshold = Calibration.load().threshold(1e-3)
    out: dict[str, Any] = {"threshold": round(threshold, 4),
                           "reacquisition": _stats(list(ref.values()))}  # fmt: skip
    for name in [n for n in FACTORS if any(k == n for _, k, _, _ in results)]:
        scores = {p: float(t[(p, "baseline_1")] @ t[(p, name)]) for p in ok if (p, name) in t}
        out[name] = {
            "score": _stats(list(scores.values())),
            "shift": _stats([scores[p] - ref[p] for p in scores]),
            "below_threshold": sum(s < threshold for s in scores.values()),
            "failures_to_acquire": [why[(p, name)] for p in ok if (p, name) in why],
        }
    out["baseline_failures"] = [w for (p, n), w in why.items() if n.startswith("baseline")]
    return out


def _stats(v: list[float]) -> dict[str, float | int]:
    if not v:
        return {"n": 0}
    a = np.array(v)
    return {"n": len(a), "median": round(float(np.median(a)), 4),
            "min": round(float(a.min()), 4), "max": round(float(a.max()), 4)}  # fmt: skip


def table(res: dict[str, Any]) -> str:
    r = res["summary"]["reacquisition"]
    lines = [f"re-acquisition (baseline 1 vs 2): median {r['median']:.4f} "
             f"(min {r['min']:.4f}, n {r['n']})",
             f"{'factor':<20} {'score median':>12} {'min':>8} {'shift median':>13} "
             f"{'worst shift':>12} {'<thresh':>7} {'FTA':>4}"]  # fmt: skip
    done = [n for n in FACTORS if n in res["summary"]]
    rows = sorted(done, key=lambda n: res["summary"][n]["shift"].get("median", 0))
    for name in rows:
        s = res["summary"][name]
        if not s["score"]["n"]:
            lines.append(f"{name:<20} (no scan acquired; FTA {len(s['failures_to_acquire'])})")
            continue
        lines.append(f"{name:<20} {s['score']['median']:>12.4f} {s['score']['min']:>8.4f} "
                     f"{s['shift']['median']:>13.4f} {s['shift']['min']:>12.4f} "
                     f"{s['below_threshold']:>7} {len(s['failures_to_acquire']):>4}")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--people", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--weights", type=Path, default=None, help="model file (default: shipped)")
    ap.add_argument("--factors", nargs="+", choices=list(FACTORS), default=list(FACTORS))
    args = ap.parse_args()
    names = ["baseline_1", "baseline_2", *args.factors]
    weights = str(args.weights) if args.weights else None
    jobs = [(p, n, args.seed, weights) for p in range(args.people) for n in names]
    t0 = time.perf_counter()
    done = 0

    def tick(_: object) -> None:
        nonlocal done
        done += 1
        print(f"\r{done}/{len(jobs)} scans", end="", flush=True)

    results = map_jobs(scan_job, jobs, args.jobs, tick)
    print()
    res = {
        "date": time.strftime("%Y-%m-%d"),
        "command": " ".join(
            [
                "python benchmarks/factor_shifts.py",
                "--people",
                str(args.people),
                "--seed",
                str(args.seed),
            ]
            + (["--weights", portable_path(args.weights, REPO)] if args.weights else [])
            + (["--factors", *args.factors] if args.factors != list(FACTORS) else [])
        ),  # fmt: skip
        "model": portable_path(args.weights, REPO) if args.weights else "shipped",
        "people": args.people,
        "baseline": {k: v for k, v in BASELINE.__dict__.items()},
        "factors": {n: FACTORS[n] for n in args.factors},
        "summary": summarize(results),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    print(table(res))
    write_text_atomic(args.out, json.dumps(res, indent=1, default=list) + "\n")
    print(f"wrote {args.out.name}")


if __name__ == "__main__":
    main()
