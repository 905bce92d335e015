"""The evaluation report: ``report.json`` (every number), ``report.html`` (self-contained:
tables and plots as inline PNG) and ``tables.md`` (the paper's tables beside this run's).
Files are written whole or not at all (temporary name, then renamed)."""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from ctface.errors import OutputError
from ctface.evaluate.data import CohortData
from ctface.evaluate.harness import MethodRun
from ctface.evaluate.results import protocol_result
from ctface.evaluate.tables import TABLE_I, TABLE_II, metric_text, render_tables
from ctface.extras import available, pyplot
from ctface.files import portable_path, write_text_atomic

FORMAT = "ctface-evaluation-1"
NO_FIGURES = (
    "<p>(no figures: matplotlib is not installed; pip install 'ctface[plot]', then "
    "<code>ctface evaluate --out ... --tables</code>)</p>"
)
MAX_PLOTTED = 6
HEADLINE = ("rank1", "rank1_acquired", "vacc", "auc", "eer", "fnmr@fmr=0.01", "fnmr@fmr=0.001",
            "fnmr@fmr=0.0001", "fnir@fpir=0.01", "fnir@fpir=0.003")  # fmt: skip


def method_label(spec: str) -> str:
    """The table row's name of a method, else its spec."""
    from ctface.evaluate.methods import bare_spec, parse_method

    bare = bare_spec(spec)
    if bare.startswith("model:"):
        path = parse_method(spec).opt("path")
        return f"trained model {path or '(shipped)'}, no training"
    for row in TABLE_I + TABLE_II:
        if row.spec is not None and bare_spec(row.spec) == bare:
            return row.label.split(": ", 1)[-1] if row.label[0].isdigit() else row.label
    return spec


def build_report(
    runs: list[MethodRun],
    data: CohortData,
    protocols: list[str],
    settings: dict[str, Any],
    n_boot: int,
    progress: Any = None,
) -> dict[str, Any]:
    methods = []
    for n, run in enumerate(runs):
        res = {p: protocol_result(run, p, data, settings["seed"], n_boot) for p in protocols}
        methods.append({
            "spec": run.method.spec,
            "label": method_label(run.method.spec),
            "family": run.method.family,
            "iterations": run.method.iterations,
            "train_seconds": [round(s, 1) for s in run.train_seconds],
            "protocols": res,
        })  # fmt: skip
        if progress:
            progress(n + 1, len(runs))
    return {
        "format": FORMAT,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "settings": {**settings, "bootstrap": n_boot, "protocols": protocols},
        "cohort": {
            "path": portable_path(data.cohort),
            "scans": data.manifest_scans,
            "scans_evaluated": len(data.scan_ids),
            "subjects": len(data.subject_ids),
            "failure_to_acquire": {"rate": round(data.fta_rate, 5), "scans": data.failures},
        },
        "methods": methods,
    }


def write_report(report: dict[str, Any], out: Path) -> list[Path]:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create {out}: {e.strerror or e}") from e
    files = [out / "report.json", out / "tables.md", out / "report.html"]
    write_text_atomic(files[0], json.dumps(report, indent=1))
    write_text_atomic(files[1], render_tables(report))
    write_text_atomic(files[2], report_html(report))
    return files


def _png(fig: Any) -> str:
    plt = pyplot("the report's figures")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _plotted(methods: list[dict[str, Any]], protocol: str) -> list[dict[str, Any]]:
    """Table I's two rows of ours (when present), the best other method of each family (by
    rank-1), then the rest, up to MAX_PLOTTED."""
    from ctface.evaluate.methods import bare_spec

    have = [m for m in methods if protocol in m["protocols"]]
    have.sort(key=lambda m: -(m["protocols"][protocol]["metrics"]["rank1"]["mean"] or 0.0))
    headline = {bare_spec("ours"), bare_spec("ours:pretrained=0")}
    first = [m for m in have if bare_spec(m["spec"]) in headline]
    best = {m["family"]: m for m in reversed(have) if m not in first and m["family"] != "ours"}
    chosen = first + list(best.values())
    return (chosen + [m for m in have if m not in chosen])[:MAX_PLOTTED]


def _figures(methods: list[dict[str, Any]], protocol: str) -> list[str]:
    plt = pyplot("the report's figures")
    shown = _plotted(methods, protocol)
    fig, ax = plt.subplots(1, 3, figsize=(15, 4.2))
    for m in shown:
        r = m["protocols"][protocol]
        ax[0].plot(range(1, len(r["cmc"]) + 1), r["cmc"], marker=".", label=m["label"])
        roc = np.array(r["roc"])
        ax[1].plot(roc[:, 0], roc[:, 1], label=m["label"])
        ok = (roc[:, 0] > 0) & (roc[:, 1] < 1)
        ax[2].loglog(roc[ok, 0], 1 - roc[ok, 1], label=m["label"])
    ax[0].set(title="CMC (mean over folds)", xlabel="rank", ylabel="identification rate")
    ax[1].set(title="ROC (folds pooled)", xlabel="FMR", ylabel="1 - FNMR")
    ax[2].set(title="DET (folds pooled)", xlabel="FMR", ylabel="FNMR")
    for a in ax:
        a.grid(alpha=0.3)
    ax[0].legend(fontsize=7)
    out = [_png(fig)]
    fig, axes = plt.subplots(1, len(shown), figsize=(3.2 * len(shown), 2.8), squeeze=False)
    for a, m in zip(axes[0], shown, strict=True):
        h = m["protocols"][protocol]["histogram"]
        centres = (np.array(h["bins"][:-1]) + np.array(h["bins"][1:])) / 2
        for key, colour in (("genuine", "tab:green"), ("impostor", "tab:red")):
            c = np.array(h[key], float)
            a.plot(centres, c / max(c.sum(), 1), color=colour, label=key)
        a.set_title(m["label"][:40], fontsize=8)
        a.set_xlabel("similarity")
        a.tick_params(labelsize=7)
    axes[0][0].legend(fontsize=7)
    out.append(_png(fig))
    return out


def _metric_cell(key: str, r: dict[str, Any]) -> str:
    v = r["metrics"].get(key)
    if v is None or v["mean"] is None:
        return "–"
    ci = v.get("ci95")
    ci_s = f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci and all(np.isfinite(ci)) else ""
    point = r["operating_points"].get(key.split("@", 1)[-1], [])
    mark = " †" if any(not p["resolved"] for p in point) else ""
    return f"{metric_text(v)}{ci_s}{mark}"


def _nuisance_html(methods: list[dict[str, Any]], protocol: str) -> str:
    rows = []
    for m in _plotted(methods, protocol):
        for name, groups in m["protocols"][protocol]["nuisance"].items():
            cells = ", ".join(f"{html.escape(g)}: {v['rank1']:.3f} (n={v['probes']})"
                              for g, v in groups.items())  # fmt: skip
            rows.append(f"<tr><td>{html.escape(m['label'])}</td><td>{html.escape(name)}</td>"
                        f"<td>{cells}</td></tr>")  # fmt: skip
    return ("<table><tr><th>method</th><th>nuisance</th><th>rank-1 by group (probes)</th></tr>"
            + "".join(rows) + "</table>")  # fmt: skip


def report_html(report: dict[str, Any]) -> str:
    methods, c, s = report["methods"], report["cohort"], report["settings"]
    parts = [
        "<!doctype html><meta charset='utf-8'><title>ctface evaluation</title><style>"
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:12px}"
        "td,th{border:1px solid #ccc;padding:3px 6px;text-align:left}img{max-width:100%}</style>",
        "<h1>ctface evaluation</h1>",
        f"<p>{html.escape(report['date'])} &middot; cohort {html.escape(c['path'])}: "
        f"{c['subjects']} subjects, {c['scans_evaluated']} of {c['scans']} scans evaluated "
        f"(failure to acquire {c['failure_to_acquire']['rate']:.2%}) &middot; {s['folds']} folds "
        f"over subjects, seed {s['seed']}, bootstrap {s['bootstrap']} replicates &middot; "
        f"command: <code>{html.escape(str(s.get('command', '')))}</code></p>",
    ]
    for protocol in s["protocols"]:
        have = [m for m in methods if protocol in m["protocols"]]
        keys = [k for k in HEADLINE if any(k in m["protocols"][protocol]["metrics"] for m in have)]
        head = "".join(f"<th>{html.escape(k)}</th>" for k in keys)
        parts += [
            f"<h2>Protocol: {html.escape(protocol)}</h2>",
            "<p>mean ± SD over folds [subject-level bootstrap 95 % CI]; rank-1, FNMR and FNIR "
            "count a probe that failed to acquire as a miss (rank1_acquired leaves it out)</p>",
            "<table><tr><th>method</th><th>gallery</th><th>probes</th>" + head + "</tr>",
        ]
        for m in have:
            r = m["protocols"][protocol]
            cells = "".join(f"<td>{_metric_cell(k, r)}</td>" for k in keys)
            lost = r["probes"].get("failed_to_acquire", 0)
            probes = f"{r['probes']['mated']} + {r['probes']['non_mated']} non-mated" + (
                f" + {lost} failed" if lost else ""
            )
            parts.append(f"<tr><td>{html.escape(m['label'])}<br><small>{html.escape(m['spec'])}"
                         f"</small></td><td>1:{np.mean(r['gallery_size']):.0f}</td>"
                         f"<td>{probes}</td>{cells}</tr>")  # fmt: skip
        parts.append(
            "</table><p><small>† not resolved: a fold has fewer than 1/rate impostor comparisons "
            "(non-mated searches for FPIR); the value is at the threshold above every impostor "
            "score.</small></p>"
        )
        if have:
            if available("matplotlib"):
                parts += [f"<p><img src='{u}'></p>" for u in _figures(have, protocol)]
            else:
                parts.append(NO_FIGURES)
            parts += ["<h3>Rank-1 by nuisance (probe scan; generator ground truth)</h3>",
                      _nuisance_html(have, protocol)]  # fmt: skip
    return "\n".join(parts)
