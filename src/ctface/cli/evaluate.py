"""`ctface evaluate`: k-fold cross-validation of ctface's model and the paper's baselines on a
phantom cohort, or a fixed model's test; writes report.json, report.html and tables.md."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import typer

from ctface.cli.common import progress_bar, report
from ctface.cli.main import app
from ctface.errors import InvalidInputError
from ctface.files import portable_path

PRESETS = ("table1", "table2", "tables")


def _methods(method: list[str], model: Path | None, iterations: int) -> list[str]:
    from ctface.evaluate.methods import parse_method
    from ctface.evaluate.tables import preset_specs

    specs: list[str] = []
    for m in method or ([] if model else ["ours"]):
        specs += preset_specs(m) if m in PRESETS else [m]
    if model is not None:
        specs.append(f"model:path={model}")
    canonical = [parse_method(s, iterations).spec for s in specs]
    return list(dict.fromkeys(canonical))


@app.command()
def evaluate(
    cohort: Path | None = typer.Option(None, "--cohort", help="Phantom cohort (`ctface phantom`)."),
    out: Path = typer.Option(..., "--out", help="Report folder (report.json, .html, tables.md)."),
    protocol: list[str] = typer.Option(
        [], "--protocol", help="paper, cross-scan or open-set (repeatable; default all three)."
    ),
    folds: int = typer.Option(5, "--folds", min=2, help="Folds over subjects."),
    method: list[str] = typer.Option(
        [],
        "--method",
        help="ARCH[:key=value,...] (repeatable; default ours) or a preset: table1, table2, tables.",
    ),  # fmt: skip
    model: Path | None = typer.Option(None, "--model", help="Also test this trained model file."),
    iterations: int = typer.Option(300, "--iterations", min=1, help="Training iterations/fold."),
    cache: Path | None = typer.Option(None, "--cache", help="Pipeline cache (COHORT/depth)."),
    work: Path | None = typer.Option(None, "--work", help="Fold results (default OUT/work)."),
    seed: int = typer.Option(0, "--seed", help="Folds, galleries and training seed."),
    n_boot: int = typer.Option(200, "--bootstrap", min=0, help="Bootstrap replicates."),
    jobs: int = typer.Option(1, "--jobs", min=1, help="Worker processes for the pipeline."),
    tables: bool = typer.Option(
        False, "--tables", help="Only render OUT/report.json again: tables.md and report.html."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON summary."),
) -> None:
    """Evaluate recognition methods (k-fold over subjects) and write a biometric report."""
    from ctface.evaluate.protocols import PROTOCOLS
    from ctface.evaluate.report import report_html
    from ctface.evaluate.tables import render_tables
    from ctface.files import write_text_atomic

    if tables:
        path = out / "report.json"
        if not path.is_file():
            raise InvalidInputError(f"no report at {path}: run `ctface evaluate --out {out}` first")
        try:
            saved = json.loads(path.read_text())
            text, page = render_tables(saved), report_html(saved)
        except (ValueError, KeyError, TypeError) as e:
            raise InvalidInputError(f"{path} is not a ctface evaluation report ({e})") from e
        write_text_atomic(out / "tables.md", text)
        write_text_atomic(out / "report.html", page)
        print(text)
        return
    if cohort is None:
        raise InvalidInputError("--cohort is required (a folder made by `ctface phantom`)")
    for p in protocol:
        if p not in PROTOCOLS:
            raise InvalidInputError(f"--protocol must be one of {', '.join(PROTOCOLS)}, got {p!r}")
    protocols = list(dict.fromkeys(protocol)) or list(PROTOCOLS)
    specs = _methods(method, model, iterations)
    _run(cohort, out, protocols, folds, specs, cache or cohort / "depth", work or out / "work",
         seed, n_boot, jobs, json_out)  # fmt: skip


def _run(
    cohort: Path, out: Path, protocols: list[str], folds: int, specs: list[str], cache: Path,
    work: Path, seed: int, n_boot: int, jobs: int, json_out: bool,
) -> None:  # fmt: skip
    from ctface.embed.embedder import FaceEmbedder
    from ctface.evaluate.data import load_cohort
    from ctface.evaluate.harness import run_method
    from ctface.evaluate.methods import parse_method
    from ctface.evaluate.report import build_report, write_report
    from ctface.evaluate.tables import metric_text

    methods = [parse_method(s) for s in specs]
    for m in methods:  # every model file readable before any training starts
        if m.family == "model":
            FaceEmbedder.load(m.opt("path"))
    segmenter = FaceEmbedder.load().segmenter  # the depth methods' face separation: shipped
    t0 = time.time()
    with progress_bar(json_out) as bar:
        task = bar.add_task("pipeline", total=None, info="")
        data = load_cohort(cohort, cache, segmenter, jobs,
                           any(m.family == "cnn3d" for m in methods),
                           lambda i, n: bar.update(task, completed=i, total=n))  # fmt: skip
        runs = []
        for m in methods:
            n = max(m.iterations, 1)
            task = bar.add_task(m.arch, total=folds * n, info=m.spec)

            def tick(f: int, it: int, loss: float, task: Any = task, n: int = n) -> None:
                bar.update(task, completed=f * n + it, info=f"fold {f + 1} loss {loss:.3f}")

            runs.append(run_method(m, data, folds, seed, work, tick))
            bar.update(task, completed=folds * n)
        task = bar.add_task("report", total=len(runs), info="")
        where = f"--cohort {portable_path(cohort)} --out {portable_path(out)}"
        command = (f"ctface evaluate {where} --folds {folds} --seed {seed} --bootstrap {n_boot} "
                   + " ".join(f"--protocol {p}" for p in protocols) + " "
                   + " ".join(f"--method '{s}'" for s in specs))  # fmt: skip
        settings = {"folds": folds, "seed": seed, "command": command,
                    "cache": portable_path(cache)}  # fmt: skip
        result = build_report(runs, data, protocols, settings, n_boot,
                              lambda i, n: bar.update(task, completed=i))  # fmt: skip
    files = write_report(result, out)
    first = protocols[0]
    summary = {
        "out": [str(f) for f in files],
        "seconds": round(time.time() - t0, 1),
        "cohort": result["cohort"],
        "methods": {
            r["spec"]: {p: {k: v["mean"] for k, v in r["protocols"][p]["metrics"].items()}
                        for p in protocols}
            for r in result["methods"]
        },
    }  # fmt: skip
    lines = [f"wrote {', '.join(summary['out'])} in {summary['seconds']} s ({first}):"]
    for r in result["methods"]:
        mt = r["protocols"][first]["metrics"]
        lines.append(f"  {r['label']}: rank-1 {metric_text(mt['rank1'])}, AUC "
                     f"{metric_text(mt['auc'])}, EER {metric_text(mt['eer'])}")  # fmt: skip
    report(summary, json_out, "\n".join(lines))
