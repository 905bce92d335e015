"""The ICT-FaceKit morphable face model (packed npz) and where to find it.

Units in the npz are centimetres; ``FaceModel`` converts to millimetres. Model frame: +x = the
face's left, +y up, +z out of the face (towards a viewer in front of it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ctface.errors import InvalidInputError, MissingDataError

ENV_VAR = "CTFACE_FACE_MODEL"
DEFAULT_RELATIVE = Path("..") / "shared" / "data" / "face_model" / "ict_facekit_light.npz"
REPO_ROOT = Path(__file__).resolve().parents[3]

HOW_TO_GET = (
    "get ICT-FaceKit (MIT licence) from GitHub (ICT-VGL/ICT-FaceKit, folder FaceXModel/), then "
    "run `ctface face-model pack PATH/TO/FaceXModel --out ict_facekit_light.npz` and pass "
    f"--face-model or set ${ENV_VAR}"
)


@dataclass(frozen=True)
class FaceModel:
    """Linear face model: vertices = neutral + identity_modes . w_id + expression_modes . w_expr."""

    neutral: np.ndarray  # (V, 3) float32, mm
    identity_modes: np.ndarray  # (100, V, 3) float32, mm per unit weight
    expression_modes: np.ndarray  # (53, V, 3) float32, mm per unit weight (weights in [0, 1])
    expression_names: tuple[str, ...]
    triangles: np.ndarray  # (T, 3) int32, split from the quads
    triangle_group: np.ndarray  # (T,) int16, index into group_names
    vertex_group: np.ndarray  # (V,) int16
    group_names: tuple[str, ...]
    landmarks68: np.ndarray  # (68,) int32 vertex indices
    path: Path

    @property
    def n_identity(self) -> int:
        return int(self.identity_modes.shape[0])

    def expression_index(self, name: str) -> int:
        return self.expression_names.index(name)

    def group_mask(self, *names: str) -> np.ndarray:
        """Boolean (T,) mask of triangles belonging to any of the named groups."""
        ids = [self.group_names.index(n) for n in names]
        return np.isin(self.triangle_group, ids)

    def vertices(self, identity: np.ndarray, expression: np.ndarray | None = None) -> np.ndarray:
        """Mesh vertices (V, 3) in mm for identity weights (n_id,) and expression weights."""
        v = self.neutral + np.tensordot(identity, self.identity_modes[: len(identity)], axes=1)
        if expression is not None and np.any(expression):
            nz = np.flatnonzero(expression)
            v = v + np.tensordot(expression[nz], self.expression_modes[nz], axes=1)
        return v.astype(np.float32)


def find_face_model(path: str | Path | None = None) -> Path:
    """Resolve the face-model npz: explicit path, else $CTFACE_FACE_MODEL, else ../shared/...

    The default is looked up relative to the repository (editable install) and to the current
    working directory. Raises MissingDataError saying where it looked and how to get the model.
    """
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise MissingDataError(f"face model not found at {p} (--face-model); {HOW_TO_GET}")
        return p
    env = os.environ.get(ENV_VAR)
    if env:
        p = Path(env).expanduser()
        if not p.is_file():
            raise MissingDataError(f"face model not found at {p} (${ENV_VAR}); {HOW_TO_GET}")
        return p
    tried = [REPO_ROOT / DEFAULT_RELATIVE, Path.cwd() / DEFAULT_RELATIVE]
    for p in tried:
        if p.is_file():
            return p.resolve()
    where = ", ".join(str(p.resolve()) for p in tried)
    raise MissingDataError(f"face model not found (looked at {where}); {HOW_TO_GET}")


def load_face_model(path: str | Path | None = None) -> FaceModel:
    """Load the packed ICT-FaceKit npz (see ``find_face_model`` for the lookup order)."""
    p = find_face_model(path)
    try:
        d = np.load(p, allow_pickle=False)
        quads = d["quads"].astype(np.int64)
        group_names = tuple(str(s) for s in d["group_names"])
        vrange = d["group_vertex_range"]
        prange = d["group_poly_range"]
        neutral = d["neutral"].astype(np.float32) * 10.0
        identity = d["identity_modes"].astype(np.float32) * 10.0
        expression = d["expression_modes"].astype(np.float32) * 10.0
        names = tuple(str(s) for s in d["expression_names"])
        lm68 = d["landmarks68"].astype(np.int32)
    except (OSError, KeyError, ValueError) as exc:
        raise InvalidInputError(f"{p} is not a packed ICT-FaceKit face model: {exc}") from exc
    poly_group = np.zeros(len(quads), dtype=np.int16)
    for g, (a, b) in enumerate(prange):
        poly_group[a : b + 1] = g
    vertex_group = np.zeros(len(neutral), dtype=np.int16)
    for g, (a, b) in enumerate(vrange):
        vertex_group[a : b + 1] = g
    tri_a = quads[:, [0, 1, 2]]
    is_quad = quads[:, 3] != quads[:, 2]
    tri_b = quads[is_quad][:, [0, 2, 3]]
    triangles = np.concatenate([tri_a, tri_b]).astype(np.int32)
    triangle_group = np.concatenate([poly_group, poly_group[is_quad]])
    return FaceModel(
        neutral=neutral,
        identity_modes=identity,
        expression_modes=expression,
        expression_names=names,
        triangles=triangles,
        triangle_group=triangle_group,
        vertex_group=vertex_group,
        group_names=group_names,
        landmarks68=lm68,
        path=p,
    )
