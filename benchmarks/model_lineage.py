"""The lineage of a shipped model: what each model file it was made from records.

Run: .venv/bin/python benchmarks/model_lineage.py --model NAME=FILE [--model ...] [--out FILE.json]

A model made by ``ctface train average`` records only its inputs' names, SHA-256 and weights;
their own provenance (training data, iterations, seed, time) stays in their files, which are not
shipped. This script copies it into one committed record, so that the model card's account of
the shipped file's ingredients can be checked against something in the repository
(``tests/test_docs_consistency.py``). Per file: size, SHA-256, model version (its first 16 hex
digits, as ``FaceEmbedder.version``) and the ``provenance`` it stores, with machine paths
replaced by ``portable_path`` (relative to the current folder, else the file name).

Results: ``benchmarks/results/model_lineage.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from ctface.files import portable_path, write_text_atomic
from ctface.model_files import sha256

REPO = Path(__file__).resolve().parents[1]


def _portable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _portable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_portable(v) for v in value]
    if isinstance(value, str) and value.startswith("/"):
        return portable_path(value)
    return value


def describe(path: Path) -> dict[str, Any]:
    sha = sha256(path)
    stored = torch.load(path, map_location="cpu", weights_only=False)
    return {
        "file": portable_path(path),
        "bytes": path.stat().st_size,
        "sha256": sha,
        "model_version": sha[:16],
        "format": stored.get("format"),
        "provenance": _portable(stored.get("provenance", {})),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", required=True, help="NAME=FILE (repeatable)")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks/results/model_lineage.json")
    args = ap.parse_args()
    if any("=" not in m for m in args.model):
        ap.error("--model takes NAME=FILE")
    models = dict(m.split("=", 1) for m in args.model)
    out = {
        "date": time.strftime("%Y-%m-%d"),
        "command": "python benchmarks/model_lineage.py "
        + " ".join(f"--model {k}={portable_path(v)}" for k, v in models.items()),
        "models": {name: describe(Path(file)) for name, file in models.items()},
    }
    write_text_atomic(args.out, json.dumps(out, indent=1) + "\n")
    for name, m in out["models"].items():
        print(f"{name:24s} {m['model_version']}  {json.dumps(m['provenance'])[:100]}")
    print(f"wrote {portable_path(args.out, REPO)}")


if __name__ == "__main__":
    main()
