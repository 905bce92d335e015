"""Dependencies point one way along the data path (ARCHITECTURE.md): every import in src/ctface,
at the top of a module or inside a function, goes to the same layer or a lower one; and the
runtime path (the library API and what it reaches) imports neither the phantom generator nor
training code."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
# lowest first; a module may import its own layer and the ones before it
LAYERS = [
    ["errors", "extras", "files", "jobs", "geometry", "model_files", "training"],
    ["face_model"],
    ["ingest"],
    ["phantom"],
    ["landmarks"],
    ["render"],
    ["embed"],
    ["gallery"],
    ["evaluate"],
    ["deid"],
    ["api"],
    ["service", "pacs"],
    ["cli", "__main__"],
]
TRAINING = {
    "ctface.training",
    "ctface.landmarks.train",
    "ctface.landmarks.dataset",
    "ctface.embed.train",
    "ctface.embed.dataset",
    "ctface.embed.examples",
    "ctface.embed.synthetic",
    "ctface.embed.losses",
    "ctface.embed.sampling",
    "ctface.embed.segment_train",
    "ctface.embed.average",
}


def _modules() -> dict[str, Path]:
    out = {}
    for p in (SRC / "ctface").rglob("*.py"):
        parts = p.relative_to(SRC).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return out


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ctface"):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("ctface"))
    return found


def _layer(module: str) -> int:
    top = module.split(".")[1] if "." in module else "__init__"
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    raise AssertionError(f"{module}: not in any layer of tests/test_architecture.py")


def test_every_import_points_down_the_data_path() -> None:
    modules = _modules()
    wrong = []
    for name, path in modules.items():
        if name == "ctface":
            continue
        for target in _imports(path):
            if target in modules and target != "ctface" and _layer(target) > _layer(name):
                wrong.append(f"{name} -> {target}")
    assert not wrong, "imports against the data path:\n" + "\n".join(sorted(wrong))


def test_runtime_path_imports_no_generator_and_no_training_code() -> None:
    modules = _modules()
    seen, todo = set(), ["ctface.api"]
    while todo:
        name = todo.pop()
        if name in seen or name not in modules:
            continue
        seen.add(name)
        todo.extend(t for t in _imports(modules[name]) if t in modules)
        parent = name.rsplit(".", 1)[0]
        todo.append(parent)  # importing a module runs its package's __init__
    bad = sorted(m for m in seen if m.startswith("ctface.phantom") or m in TRAINING)
    assert not bad, f"the library API reaches {bad}"
