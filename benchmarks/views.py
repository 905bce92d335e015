"""Recognition accuracy and cost against the number of depth views a template is made from.

Run: .venv/bin/python benchmarks/views.py --cohort DIR [--cache DIR] [--timing-scan CT]
     [--draws 3] [--bootstrap 1000] [--repeats 5] [--jobs 2] [--out FILE.json]

Issue 18 (identify fast): a scan's template is the median (``embed.template``, the rule the
shipped model records) of the embeddings of 90 depth views, a 9 pitch x 10 roll grid
(``render.pose_grid``: pitch -20..20 in 5 degree steps, roll -25..25 in 5.6 degree steps);
rendering and embedding cost grows with the number of views. Does a smaller set keep the
accuracy?

Accuracy, on a blind cohort read through the whole pipeline (``--cohort``, with its depth cache
``--cache``; loaded with ``prepare_cohort`` exactly as ``benchmarks/recognition.py`` does): each
scan's 90 cached views are embedded once with the shipped model (``FaceEmbedder.images`` +
``embed``, what ``FaceEmbedder.template`` does; face separation and embedding work view by
view, so the embedding of a view does not depend on which other views are made) and cached
(``CACHE/view_embeddings/<model version>.npz``); the template of a view subset is then
``scan_template`` of its rows. Per subset, in recognition.py's cross-scan protocol (first scan
= gallery, others probes, the failure to acquire counted as a missed probe): rank-1, AUC, EER,
FNMR at FMR 1e-3 on this cohort's own impostor scores (``metrics.summary``), and, at the
shipped decision threshold (the shipped calibration's FMR 1e-3 threshold, fitted on another
cohort, applied to every pair of scans as recognition.py does), the observed FNMR and FMR.

Subsets: regular sub-grids of the pitch x roll grid that keep its extent (the levels nearest to
evenly spaced targets from -20 to 20 and -25 to 25; one level = the centre: pitch 0, roll
+2.8, recognition.py's "frontal" view 45), and ``--draws`` random subsets of the same sizes
(seeded) to show how much the choice of views alone moves the numbers. Noise: a paired
bootstrap over subjects (``--bootstrap`` resamples; a probe, a genuine pair and the failure
weigh as their subject, an impostor pair as the product of its two subjects' weights) of the
difference of rank-1, AUC and FNMR at the shipped threshold between each subset and all 90
views, with its 95 % percentile interval. A grid is "within noise" when all three intervals
hold 0 (not measurably worse on this cohort: a loss carried by fewer than ~4 subjects is not
resolved, as each is left out of e^-1 of the resamples). Stricter, "no loss": every probe the
90 views find at rank 1 still found, no more false non-matches at the shipped threshold nor at
this cohort's FMR 1e-3, and the AUC interval holding 0. The recommendation is the smallest
grid with no loss, as have all larger grids.

The 90-view row must reproduce ``benchmarks/results/recognition_blind.json`` (the shipped
model's median templates); the script checks it and says so.

Cost, on one scan (``--timing-scan``, a DICOM folder or NIfTI file read with ``load_ct``;
landmarks found once): per grid, ``render_face(ct, frame=..., views=subset)`` (256 px) and the
embedding (``FaceEmbedder.images`` + ``embed``), the minimum of ``--repeats`` runs (sizes
interleaved; other work on a shared machine slows runs, the least disturbed one is kept; the
median and every run are stored, and the load average), with the render's own stages
(``timings_s``: skin surface, views; the rest is the frontal view and face coverage checks).
The same renders check that rendering only the subset gives the views the 90-view render gives
(cosine of the embeddings of each view rendered both ways, and of the templates): the cohort's
subset templates come from its 90-view renders.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from recognition import (  # noqa: E402 - the benchmark beside this one
    _progress,
    at_thresholds,
    lost_genuine_pairs,
    misses,
    shown_path,
)

from ctface.embed.embedder import FaceEmbedder  # noqa: E402
from ctface.embed.template import scan_template  # noqa: E402
from ctface.evaluate import cross_scan  # noqa: E402
from ctface.evaluate.cohort import prepare_cohort  # noqa: E402
from ctface.evaluate.metrics import Searches, failed_probe_count, summary  # noqa: E402
from ctface.files import portable_path, save_npz_atomic, write_text_atomic  # noqa: E402
from ctface.gallery.calibration import DEFAULT_FMR, Calibration  # noqa: E402
from ctface.render.views import pose_grid  # noqa: E402

RESULTS = Path(__file__).parent / "results"
PITCHES = np.linspace(-20.0, 20.0, 9)  # pose_grid(90): pitch outer, roll inner
ROLLS = np.linspace(-25.0, 25.0, 10)
# (pitch levels, roll levels); several shapes for some sizes
GRIDS = [(9, 10), (5, 10), (9, 5), (3, 10), (5, 4), (3, 6), (3, 4), (3, 3), (3, 2), (5, 1),
         (1, 5), (2, 2), (3, 1), (1, 3), (1, 1)]  # fmt: skip
FMR_KEY = f"fmr={DEFAULT_FMR:g}"
REFERENCE = RESULTS / "recognition_blind.json"


def levels(n: int, values: np.ndarray) -> list[int]:
    """Indices of the ``n`` levels of ``values`` nearest to ``n`` evenly spaced targets over
    its range (one level: its centre); ties go to the higher index (roll +2.8, not -2.8)."""
    targets = [values.mean()] if n == 1 else np.linspace(values[0], values[-1], n)
    bias = 1e-9 * np.arange(len(values))
    idx = [int(np.argmin(np.abs(values - t) - bias)) for t in targets]
    if len(set(idx)) != n:
        raise ValueError(f"{n} levels of {len(values)} are not distinct")
    return idx


def grid_subset(n_pitch: int, n_roll: int) -> np.ndarray:
    """View indices (into pose_grid(90)) of an n_pitch x n_roll sub-grid."""
    return np.array([p * len(ROLLS) + r for p in levels(n_pitch, PITCHES)
                     for r in levels(n_roll, ROLLS)])  # fmt: skip


def is_pose_grid(idx: np.ndarray) -> bool:
    """Whether the views ``idx`` of pose_grid(90) are the poses of pose_grid(len(idx))."""
    full = pose_grid()
    mine = sorted((round(full[i].pitch, 4), round(full[i].roll, 4)) for i in idx)
    return mine == sorted((round(v.pitch, 4), round(v.roll, 4)) for v in pose_grid(len(idx)))


def view_embeddings(model: FaceEmbedder, examples: list[Any], cache: Path) -> np.ndarray:
    """(scans, 90, D) unit embeddings of every cached view, cached per model version."""
    path = cache / "view_embeddings" / f"{model.version}.npz"
    ids = np.array([e.scan_id for e in examples])
    if path.is_file():
        with np.load(path) as z:
            if np.array_equal(z["scan_id"], ids):
                print(f"view embeddings read from {path.name}", flush=True)
                return np.asarray(z["embeddings"])
    t0 = time.perf_counter()
    out = []
    for k, ex in enumerate(examples):
        imgs, _ = model.images(ex.depth_mm.astype(np.float32))  # as recognition.evaluate
        out.append(model.embed(imgs))
        if (k + 1) % 20 == 0 or k + 1 == len(examples):
            print(f"{k + 1}/{len(examples)} scans embedded", flush=True)
    emb = np.stack(out).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_npz_atomic(path, scan_id=ids, embeddings=emb)
    print(f"embedded 90 views of {len(examples)} scans in {time.perf_counter() - t0:.1f} s")
    return emb


class Cohort:
    """The cohort's scans as the cross-scan protocol scores them (recognition.py's layout)."""

    def __init__(self, subjects: list[str], all_subjects: list[str], failed_at: set[int]):
        self.labels = np.unique(subjects, return_inverse=True)[1]
        names = np.unique(subjects)
        self.n_subjects = len(names)
        failed = [all_subjects[i] for i in sorted(failed_at)]
        self.n_failed = failed_probe_count(subjects, failed)
        self.lost = lost_genuine_pairs(all_subjects, failed_at)
        # failed probes (their subject's index) and lost genuine pairs per subject
        acquired = set(subjects)
        self.failed_subject = np.array(
            [int(np.searchsorted(names, s)) for s in failed if s in acquired], int
        )
        self.lost_per_subject = np.zeros(self.n_subjects)
        total = {s: all_subjects.count(s) for s in set(all_subjects)}
        for k, s in enumerate(names):
            a = subjects.count(s)
            self.lost_per_subject[k] = total[s] * (total[s] - 1) // 2 - a * (a - 1) // 2
        _, self.first = np.unique(self.labels, return_index=True)
        self.probes = np.setdiff1d(np.arange(len(self.labels)), self.first)
        self.mate = self.labels[self.probes]
        i, j = np.triu_indices(len(self.labels), k=1)
        same = self.labels[i] == self.labels[j]
        self.gen_i, self.gen_j = i[same], j[same]
        if len(self.failed_subject) != self.n_failed or self.lost_per_subject.sum() != self.lost:
            raise SystemExit("a subject with no acquired scan: the bootstrap cannot weigh it")

    def searches(self, t: np.ndarray) -> Searches:
        """cross_scan's searches, with the failed probes (for ``summary``)."""
        return Searches(t[self.probes] @ t[self.first].T, self.mate, self.mate, self.probes,
                        np.arange(self.n_subjects), self.failed_subject)  # fmt: skip

    def parts(self, t: np.ndarray, threshold: float) -> dict[str, np.ndarray]:
        """Per-probe hits, pair scores and per-subject false non-matches at ``threshold``,
        the pieces the bootstrap reweighs."""
        s = self.searches(t)
        sc = s.scores
        is_mate = np.zeros(sc.shape, bool)
        is_mate[np.arange(len(self.probes)), self.mate] = True
        gi, gj = np.nonzero(~is_mate)
        g_sim = np.sum(t[self.gen_i] * t[self.gen_j], axis=1)
        fnm = np.bincount(
            self.labels[self.gen_i], (g_sim < threshold).astype(float), self.n_subjects
        )
        pairs = np.bincount(self.labels[self.gen_i], None, self.n_subjects)
        return {
            "hit": (s.mate_rank() == 1).astype(float),
            "gen": sc[is_mate],
            "imp": sc[~is_mate],
            "imp_probe": self.mate[gi],
            "imp_gallery": gj,
            "fnm": fnm + self.lost_per_subject,
            "pairs": pairs + self.lost_per_subject,
        }


def score(cohort: Cohort, t: np.ndarray, cal: Calibration, scan_ids: list[str]) -> dict[str, Any]:
    cs = cross_scan(t, cohort.labels, cohort.n_failed).to_json()
    sm = summary(cohort.searches(t))
    shipped = at_thresholds(cal, t, cohort.labels, cohort.lost)[FMR_KEY]
    return {
        "rank1": cs["rank1"], "rank1_ci95": cs["rank1_ci95"], "hits": cs["hits"],
        "auc": cs["auc"], "eer": round(sm["eer"], 5),
        f"fnmr@{FMR_KEY}": round(sm[f"fnmr@{FMR_KEY}"], 5),
        "verification_accuracy": cs["verification_accuracy"],
        "shipped_threshold": shipped,
        "misses": [m["probe"] for m in misses(t, cohort.labels, scan_ids)],
    }  # fmt: skip


def weighted_auc(gen: np.ndarray, wg: np.ndarray, imp: np.ndarray, wi: np.ndarray) -> np.ndarray:
    """AUC (ties half) with per-bootstrap weights wg (B, G) and wi (B, I) -> (B,)."""
    order = np.argsort(imp)
    s = imp[order]
    cum = np.concatenate([np.zeros((len(wi), 1)), np.cumsum(wi[:, order], axis=1)], axis=1)
    lo, hi = np.searchsorted(s, gen, "left"), np.searchsorted(s, gen, "right")
    below = cum[:, lo] + 0.5 * (cum[:, hi] - cum[:, lo])  # (B, G): impostor weight under each
    return (wg * below).sum(1) / (wg.sum(1) * cum[:, -1])


def boot_metrics(p: dict[str, np.ndarray], cohort: Cohort, w: np.ndarray) -> np.ndarray:
    """(B, 3): rank-1, AUC and FNMR at the shipped threshold with subject weights w (B, S)."""
    wp = w[:, cohort.mate]
    wf = w[:, cohort.failed_subject].sum(1)
    rank1 = (wp * p["hit"]).sum(1) / (wp.sum(1) + wf)
    wi = w[:, p["imp_probe"]] * w[:, p["imp_gallery"]]
    auc = weighted_auc(p["gen"], wp, p["imp"], wi)
    fnmr = (w * p["fnm"]).sum(1) / (w * p["pairs"]).sum(1)
    return np.stack([rank1, auc, fnmr], axis=1)


def timings(
    ct_path: Path, model: FaceEmbedder, subsets: dict[str, np.ndarray], repeats: int
) -> dict[str, Any]:
    """Render + embed seconds per grid on one scan, and the subset-render consistency check."""
    from ctface.api import load_ct
    from ctface.landmarks import face_frame
    from ctface.render import render_face

    grid = pose_grid()
    t0 = time.perf_counter()
    ct = load_ct(ct_path)
    t1 = time.perf_counter()
    frame = face_frame(ct)
    t2 = time.perf_counter()
    model.embed(model.images(render_face(ct, frame=frame, views=grid[:1]).depth_mm)[0])  # warm
    runs: dict[str, list[tuple[float, ...]]] = {k: [] for k in subsets}
    emb: dict[str, np.ndarray] = {}
    for r in range(repeats):
        for name, idx in subsets.items():
            a = time.perf_counter()
            rendering = render_face(ct, frame=frame, views=[grid[i] for i in idx])
            b = time.perf_counter()
            imgs, _ = model.images(rendering.depth_mm)
            e = model.embed(imgs)
            c = time.perf_counter()
            st = rendering.timings_s
            runs[name].append((b - a, c - b, st["surface"], st["views"]))
            emb[name] = e
        print(f"timing repeat {r + 1}/{repeats} done", flush=True)
    full = emb["9x10"]
    rows = {}
    for name, idx in subsets.items():
        rt = np.array(runs[name])
        view_cos = np.sum(emb[name] * full[idx], axis=1)
        tpl = float(scan_template(emb[name], model.template_rule)
                    @ scan_template(full[idx], model.template_rule))  # fmt: skip
        rows[name] = {
            "views": len(idx),
            # min over repeats: the least disturbed run (other work shares the cores)
            "render_s": round(float(rt[:, 0].min()), 3),
            "render_surface_s": round(float(rt[:, 2].min()), 3),
            "render_views_s": round(float(rt[:, 3].min()), 3),
            "embed_s": round(float(rt[:, 1].min()), 3),
            "render_embed_s": round(float(rt[:, :2].sum(1).min()), 3),
            "render_embed_s_median": round(float(np.median(rt[:, :2].sum(1))), 3),
            "runs_s": [[round(x, 3) for x in run[:2]] for run in runs[name]],
            "subset_render_vs_90": {
                "view_cosine_min": round(float(view_cos.min()), 5),
                "view_cosine_mean": round(float(view_cos.mean()), 5),
                "template_cosine": round(tpl, 5),
            },  # fmt: skip
        }
    return {"scan": portable_path(ct_path, ct_path.parents[1]), "load_ct_s": round(t1 - t0, 3),
            "landmarks_s": round(t2 - t1, 3), "repeats": repeats, "grids": rows}  # fmt: skip


def check_reference(row: dict[str, Any], reference: Path = REFERENCE) -> dict[str, Any]:
    """The 90-view row against ``recognition.py``'s results on the same cache (shipped model,
    median templates)."""
    if not reference.is_file():
        return {"reference": None, "match": None}
    ref = json.loads(reference.read_text())["models"]["shipped"]
    rule = ref["template_rule"]
    want = {"rank1": ref[rule]["rank1"], "auc": ref[rule]["auc"],
            "verification_accuracy": ref[rule]["verification_accuracy"],
            "misses": [m["probe"] for m in ref["misses"]],
            "shipped_fnmr": ref["calibrated_thresholds"][FMR_KEY]["fnmr"]["count"],
            "shipped_fm": ref["calibrated_thresholds"][FMR_KEY]["fmr"]["count"]}  # fmt: skip
    got = {"rank1": row["rank1"], "auc": row["auc"],
           "verification_accuracy": row["verification_accuracy"], "misses": row["misses"],
           "shipped_fnmr": row["shipped_threshold"]["fnmr"]["count"],
           "shipped_fm": row["shipped_threshold"]["fmr"]["count"]}  # fmt: skip
    diff = {k: [want[k], got[k]] for k in want if want[k] != got[k]}
    return {"reference": shown_path(reference), "model_version": ref["model_version"],
            "match": not diff, "differences": diff}  # fmt: skip


def fmt_row(name: str, n: int, m: dict[str, Any], d: dict[str, Any] | None, sec: str) -> str:
    st = m["shipped_threshold"]
    noise = (
        ""
        if d is None
        else (
            f" {d['rank1'][0]:+7.4f} [{d['rank1'][1]:+.3f},{d['rank1'][2]:+.3f}]"
            f" {d['auc'][0]:+8.5f} [{d['auc'][1]:+.4f},{d['auc'][2]:+.4f}]"
            f" {d['fnmr'][0]:+7.4f} [{d['fnmr'][1]:+.3f},{d['fnmr'][2]:+.3f}]"
        )
    )
    return (f"{name:>14} {n:3d} {m['rank1']:7.4f} {m['auc']:8.5f} {m['eer']:7.4f}"
            f" {m[f'fnmr@{FMR_KEY}']:7.4f} {st['fnmr']['count']:3d}/{st['fnmr']['of']}"
            f" {st['fmr']['count']:3d} {sec:>9}{noise}")  # fmt: skip


def _thin_phantom_series(tmp: Path) -> Path:
    """S0001_02 of the identify benchmark's phantom (seed 90: 478 DICOM slices, 0.6 mm),
    generated into the temporary folder ``tmp``."""
    from identify import phantom_cohort  # benchmarks/identify.py

    from ctface.phantom import CohortSpec

    folder = tmp / "c"
    spec = CohortSpec(subjects=1, scans_min=2, scans_max=2, seed=90, dicom_fraction=1.0)
    rows, _ = phantom_cohort(spec, folder)
    return folder / next(r["path"] for r in rows if r["scan_id"] == "S0001_02")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cohort", type=Path, required=True)
    ap.add_argument("--cache", type=Path, default=None)
    thin = "default: the 478-slice phantom series of benchmarks/identify.py"
    ap.add_argument("--timing-scan", type=Path, default=None, help=thin)
    ap.add_argument("--reference", type=Path, default=REFERENCE,
                    help="recognition.py's results on the same cohort and cache")  # fmt: skip
    ap.add_argument("--draws", type=int, default=3)
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=18)
    ap.add_argument("--out", type=Path, default=RESULTS / "views.json")
    args = ap.parse_args()
    t_start = time.perf_counter()
    cache = args.cache or args.cohort / "depth_cache"
    prep = prepare_cohort(args.cohort, cache, args.jobs, _progress)
    examples, failures = prep.examples, prep.failures
    all_subjects = [r["subject_id"] for r in prep.rows]
    failed_at = {i for i, r in enumerate(prep.rows) if r["scan_id"] in failures}
    cohort = Cohort([e.subject_id for e in examples], all_subjects, failed_at)
    scan_ids = [e.scan_id for e in examples]
    model = FaceEmbedder.load()
    cal = Calibration.load()
    if cal.model_version != model.version:
        raise SystemExit("the shipped calibration is not for the shipped model")
    threshold = cal.threshold(DEFAULT_FMR)
    emb = view_embeddings(model, examples, cache)
    del examples, prep
    t_embedded = time.perf_counter()

    subsets = {f"{p}x{r}": grid_subset(p, r) for p, r in GRIDS}
    rng = np.random.default_rng(args.seed)
    sizes = sorted({len(v) for v in subsets.values()} - {90}, reverse=True)
    for n in sizes:
        for k in range(args.draws):
            subsets[f"random{n}#{k + 1}"] = np.sort(rng.choice(90, n, replace=False))
    rule = model.template_rule
    rows: dict[str, Any] = {}
    parts = {}
    for name, idx in subsets.items():
        t = np.stack([scan_template(e[idx], rule) for e in emb])
        rows[name] = {"views": len(idx), "view_indices": idx.tolist(), **score(cohort, t, cal,
                      scan_ids)}  # fmt: skip
        if not name.startswith("random"):  # the same poses as pose_grid(n), a render option
            rows[name]["is_pose_grid"] = is_pose_grid(idx)
        parts[name] = cohort.parts(t, threshold)
    ref = check_reference(rows["9x10"], args.reference)

    # paired bootstrap over subjects: each subset minus all 90 views
    w = rng.multinomial(cohort.n_subjects, np.full(cohort.n_subjects, 1 / cohort.n_subjects),
                        size=args.bootstrap).astype(float)  # fmt: skip
    base = boot_metrics(parts["9x10"], cohort, w)
    lo90, hi90 = np.percentile(base, [2.5, 97.5], axis=0)
    for name in subsets:
        d = boot_metrics(parts[name], cohort, w) - base
        lo, hi = np.percentile(d, [2.5, 97.5], axis=0)
        m = rows[name]
        point = [m["rank1"] - rows["9x10"]["rank1"], m["auc"] - rows["9x10"]["auc"],
                 m["shipped_threshold"]["fnmr"]["rate"]
                 - rows["9x10"]["shipped_threshold"]["fnmr"]["rate"]]  # fmt: skip
        m["vs_90"] = {k: [round(point[j], 5), round(lo[j], 5), round(hi[j], 5)]
                      for j, k in enumerate(("rank1", "auc", "fnmr"))}  # fmt: skip
        m["within_noise"] = bool(np.all((lo <= 1e-12) & (hi >= -1e-12)))
        ref90 = rows["9x10"]
        m["no_loss"] = bool(
            set(m["misses"]) <= set(ref90["misses"])
            and m["shipped_threshold"]["fnmr"]["count"]
            <= ref90["shipped_threshold"]["fnmr"]["count"]
            and m[f"fnmr@{FMR_KEY}"] <= ref90[f"fnmr@{FMR_KEY}"]
            and lo[1] <= 1e-12
        )
    t_scored = time.perf_counter()

    grids = [f"{p}x{r}" for p, r in GRIDS]
    with tempfile.TemporaryDirectory(prefix="ctface-views-") as tmp:  # 0.3 GB of DICOM
        timing = timings(
            args.timing_scan or _thin_phantom_series(Path(tmp)),
            model,
            {g: subsets[g] for g in grids},
            args.repeats,
        )
    t_timed = time.perf_counter()

    by_size = sorted(grids, key=lambda g: -rows[g]["views"])
    ok = [g for g in by_size if rows[g]["within_noise"]]
    smallest = recommended = None
    for g in by_size:
        if not rows[g]["within_noise"]:
            break
        smallest = g
    for g in by_size:
        if not rows[g]["no_loss"]:
            break
        recommended = g
    spread = {}
    for n in sizes:
        rnd = [rows[f"random{n}#{k + 1}"] for k in range(args.draws)]
        spread[str(n)] = {k: [min(r[k] for r in rnd), max(r[k] for r in rnd)]
                          for k in ("rank1", "auc", "eer", f"fnmr@{FMR_KEY}")}  # fmt: skip
        spread[str(n)]["shipped_fnmr"] = [
            min(r["shipped_threshold"]["fnmr"]["rate"] for r in rnd),
            max(r["shipped_threshold"]["fnmr"]["rate"] for r in rnd),
        ]

    head = (f"{'subset':>14} {'n':>3} {'rank-1':>7} {'AUC':>8} {'EER':>7} {'FNMR3':>7}"
            f" {'FNM@thr':>7} {'FM':>3} {'render+emb':>9} {'d rank-1 [95%]':>24}"
            f" {'d AUC [95%]':>26} {'d FNMR@thr [95%]':>24}")  # fmt: skip
    print(f"\n{args.cohort.name}: {len(scan_ids)} scans, {cohort.n_subjects} subjects, "
          f"{len(failures)} failure(s) to acquire; template rule {rule}; FNMR3 = FNMR at FMR "
          f"1e-3 (this cohort); FNM@thr / FM = false non-matches / matches at the shipped "
          f"threshold {threshold:.4f}; render+emb = s on one scan, min of repeats")  # fmt: skip
    print(head)
    for name in subsets:
        m = rows[name]
        tg = timing["grids"].get(name)
        sec = f"{tg['render_s']:.2f}+{tg['embed_s']:.2f}" if tg else ""
        print(fmt_row(name, m["views"], m, None if name == "9x10" else m["vs_90"], sec))
    print(
        f"90 views, bootstrap 95% intervals: rank-1 {lo90[0]:.4f}-{hi90[0]:.4f}, AUC "
        f"{lo90[1]:.5f}-{hi90[1]:.5f}, FNMR at the shipped threshold {lo90[2]:.4f}-{hi90[2]:.4f}"
    )
    print(f"load_ct {timing['load_ct_s']} s, landmarks {timing['landmarks_s']} s (once per scan)")
    print(
        "subset render vs the 90-view render (template cosine): "
        + ", ".join(
            f"{g} {timing['grids'][g]['subset_render_vs_90']['template_cosine']:.4f}" for g in grids
        )
    )
    print(
        f"reference check ({ref['reference']}): "
        f"{'matches' if ref['match'] else 'DIFFERS: ' + json.dumps(ref.get('differences'))}"
    )
    print(
        f"grids not significantly worse than 90 views (paired bootstrap): {ok}; smallest "
        f"with all larger ones too: {smallest}"
    )
    print(
        f"grids with no loss: {[g for g in by_size if rows[g]['no_loss']]}; recommended "
        f"(smallest with all larger ones too): {recommended} "
        f"({rows[recommended]['views'] if recommended else '-'} views)"
    )

    runtime = {"load_and_embed_s": round(t_embedded - t_start, 1),
               "score_and_bootstrap_s": round(t_scored - t_embedded, 1),
               "timing_s": round(t_timed - t_scored, 1),
               "total_s": round(time.perf_counter() - t_start, 1)}  # fmt: skip
    out = {
        "date": time.strftime("%Y-%m-%d"),
        "cohort": shown_path(args.cohort),
        "scans": len(scan_ids) + len(failures),
        "subjects": cohort.n_subjects,
        "failures_to_acquire": failures,
        "model_version": model.version,
        "template_rule": rule,
        "shipped_threshold": {
            "fmr": DEFAULT_FMR,
            "threshold": round(threshold, 5),
            "calibration": cal.provenance.get("cohort", "?"),
        },  # fmt: skip
        "grid": {
            "pitch_deg": PITCHES.round(3).tolist(),
            "roll_deg": ROLLS.round(3).tolist(),
            "view_index": "pitch_index * 10 + roll_index (pose_grid order)",
        },  # fmt: skip
        "reference_check": ref,
        "bootstrap": {
            "resamples": args.bootstrap,
            "seed": args.seed,
            "unit": "subject",
            "ci95_90_views": {
                "rank1": [round(lo90[0], 5), round(hi90[0], 5)],
                "auc": [round(lo90[1], 5), round(hi90[1], 5)],
                "fnmr_shipped": [round(lo90[2], 5), round(hi90[2], 5)],
            },
            "vs_90": "[point, lo, hi]: subset minus 90 views, paired",
        },  # fmt: skip
        "subsets": rows,
        "random_spread": spread,
        "within_noise": ok,
        "smallest_within_noise": smallest,
        "no_loss": [g for g in by_size if rows[g]["no_loss"]],
        "recommended": recommended,
        "timing": timing,
        "runtime_s": runtime,
        "cpu_count": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "command": "python "
        + " ".join(
            [shown_path(sys.argv[0])]
            + [
                portable_path(a, Path(a).parents[1]) if a.startswith("/") else a
                for a in sys.argv[1:]
            ]
        ),  # fmt: skip
    }
    write_text_atomic(args.out, json.dumps(out, indent=1))
    print(f"runtime {runtime}; wrote {args.out}")


if __name__ == "__main__":
    main()
