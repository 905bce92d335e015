"""Pack ICT-FaceKit's ``FaceXModel/`` OBJ folder into the light npz that ``face_model`` loads.

Layout (ICT-FaceKit on GitHub, ICT-VGL/ICT-FaceKit: the README,
``Scripts/face_model_io.py`` and the OBJ files): ``generic_neutral_mesh.obj`` (26719 vertices,
26384 polygons), ``identity000.obj`` ... ``identity099.obj`` and one OBJ per expression named as
in ``vertex_indices.json`` (``jawOpen.obj`` ...). Every morph target is an *absolute* shape with
the neutral's topology; ICT's loader turns them into deltas (``mesh.points() -
generic_neutral_mesh.points()``), and so does this module. Units are cm.

The light npz keeps the first 9 parts of the README's topology table (face ... eyeball right),
which are a leading block: vertices 0..24590 and polygons 0..24691. Lacrimal fluid, eye blend,
eye occlusion and eyelashes come after them and are dropped.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from ctface.errors import InvalidInputError, MissingDataError, OutputError
from ctface.files import atomic_path

NEUTRAL_FILE = "generic_neutral_mesh.obj"
FULL_VERTICES = 26719  # ICT README, "All: Vertex indices [0:26718]"
FULL_POLYGONS = 26384  # ICT README, "All: Polygon indices [0:26383]"
LIGHT_VERTICES = 24591  # first vertex of "Lacrimal fluid left" (#9)
LIGHT_POLYGONS = 24692  # first polygon of "Lacrimal fluid left" (#9)

# Inclusive (first, last) vertex and polygon index of the kept parts: ICT README topology table
# rows #0-#8; identical to group_* in the shared ict_facekit_light.npz.
GROUPS: tuple[tuple[str, tuple[int, int], tuple[int, int]], ...] = (
    ("face", (0, 9408), (0, 9229)),
    ("head_neck", (9409, 11247), (9230, 11143)),
    ("mouth_socket", (11248, 13293), (11144, 13225)),
    ("eye_socket_left", (13294, 13677), (13226, 13629)),
    ("eye_socket_right", (13678, 14061), (13630, 14033)),
    ("gums_tongue", (14062, 17038), (14034, 17005)),
    ("teeth", (17039, 21450), (17006, 21495)),
    ("eyeball_left", (21451, 23020), (21496, 23093)),
    ("eyeball_right", (23021, 24590), (23094, 24691)),
)

# The 53 expressions in the order of FaceXModel/vertex_indices.json "expressions" (= the shared
# npz's expression_names, read from it once).
EXPRESSION_NAMES: tuple[str, ...] = (
    "browDown_L", "browDown_R", "browInnerUp_L", "browInnerUp_R", "browOuterUp_L",
    "browOuterUp_R", "cheekPuff_L", "cheekPuff_R", "cheekSquint_L", "cheekSquint_R",
    "eyeBlink_L", "eyeBlink_R", "eyeLookDown_L", "eyeLookDown_R", "eyeLookIn_L", "eyeLookIn_R",
    "eyeLookOut_L", "eyeLookOut_R", "eyeLookUp_L", "eyeLookUp_R", "eyeSquint_L", "eyeSquint_R",
    "eyeWide_L", "eyeWide_R", "jawForward", "jawLeft", "jawOpen", "jawRight", "mouthClose",
    "mouthDimple_L", "mouthDimple_R", "mouthFrown_L", "mouthFrown_R", "mouthFunnel", "mouthLeft",
    "mouthLowerDown_L", "mouthLowerDown_R", "mouthPress_L", "mouthPress_R", "mouthPucker",
    "mouthRight", "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper",
    "mouthSmile_L", "mouthSmile_R", "mouthStretch_L", "mouthStretch_R", "mouthUpperUp_L",
    "mouthUpperUp_R", "noseSneer_L", "noseSneer_R",
)  # fmt: skip

# Multi-PIE 68-point landmark vertex indices (0-based), as listed in the ICT-FaceKit README
# ("Facial Landmarks"); identical to landmarks68 in the shared ict_facekit_light.npz.
LANDMARKS68: tuple[int, ...] = (
    1225, 1888, 1052, 367, 1719, 1722, 2199, 1447, 966, 3661, 4390, 3927, 3924, 2608, 3272, 4088,
    3443, 268, 493, 1914, 2044, 1401, 3615, 4240, 4114, 2734, 2509, 978, 4527, 4942, 4857, 1140,
    2075, 1147, 4269, 3360, 1507, 1542, 1537, 1528, 1518, 1511, 3742, 3751, 3756, 3721, 3725,
    3732, 5708, 5695, 2081, 0, 4275, 6200, 6213, 6346, 6461, 5518, 5957, 5841, 5702, 5711, 5533,
    6216, 6207, 6470, 5517, 5966,
)  # fmt: skip

_IDENTITY_RE = re.compile(r"identity(\d{3})\.obj")


def _read_raw(path: Path) -> tuple[np.ndarray, bytes]:
    """Vertices (V, 3) float64 of an OBJ and its face lines (without ``f ``) joined by newlines."""
    lines = path.read_bytes().splitlines()
    vlines = [ln[2:] for ln in lines if ln.startswith(b"v ")]
    try:
        verts = np.array(b" ".join(vlines).split(), dtype=np.float64)
        if verts.size != 3 * len(vlines) or not np.isfinite(verts).all():
            raise ValueError("every v line must hold 3 finite coordinates")
    except ValueError as exc:
        raise InvalidInputError(f"{path} is not a readable OBJ mesh: {exc}") from exc
    return verts.reshape(-1, 3), b"\n".join([ln[2:] for ln in lines if ln.startswith(b"f ")])


def _parse_faces(path: Path, block: bytes, n_verts: int) -> np.ndarray:
    """(F, 4) int64 0-based polygons from face lines ``a b c [d]`` or ``a/t/n ...``."""
    if not block:
        return np.zeros((0, 4), dtype=np.int64)
    try:
        if b"-" in block:
            raise ValueError("relative (negative) face indices are not supported")
        # keep the vertex index of each a/t/n, mark line ends with -1
        tokens = re.sub(rb"/\S*", b"", block).replace(b"\n", b" -1 ").split() + [b"-1"]
        nums = np.array(tokens, dtype=np.int64)
    except ValueError as exc:
        raise InvalidInputError(f"{path} is not a readable OBJ mesh: {exc}") from exc
    ends = np.flatnonzero(nums < 0)
    counts = np.diff(ends, prepend=-1) - 1
    flat = nums[nums >= 0]
    if counts.min() < 3 or counts.max() > 4:
        raise InvalidInputError(f"{path}: only triangles and quads are supported")
    if flat.min() < 1 or flat.max() > n_verts:
        raise InvalidInputError(f"{path}: face index out of range 1..{n_verts}")
    start = np.cumsum(counts) - counts
    return flat[start[:, None] + np.minimum(np.arange(4), counts[:, None] - 1)] - 1


def read_obj(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (V, 3) float64 and polygons (F, 4) int64, 0-based, of an OBJ (``v``/``f`` only).

    Faces may be ``f a b c [d]`` or ``f a/t/n ...``; a triangle repeats its last index.
    """
    verts, block = _read_raw(path)
    return verts, _parse_faces(path, block, len(verts))


def _model_files(folder: Path) -> tuple[Path, list[Path], list[Path]]:
    """Neutral, identity and expression paths; MissingDataError names the first missing one."""
    found = {
        int(m.group(1))
        for p in folder.glob("identity*.obj")
        if (m := _IDENTITY_RE.fullmatch(p.name))
    }
    identities = [folder / f"identity{i:03d}.obj" for i in range(max(found, default=0) + 1)]
    expressions = [folder / f"{name}.obj" for name in EXPRESSION_NAMES]
    for p in [folder / NEUTRAL_FILE, *identities, *expressions]:
        if not p.is_file():
            raise MissingDataError(
                f"ICT-FaceKit FaceXModel folder {folder} is incomplete: {p.name} is missing"
            )
    return folder / NEUTRAL_FILE, identities, expressions


def _deltas(paths: list[Path], neutral: np.ndarray, block: bytes, quads: np.ndarray) -> np.ndarray:
    """(K, LIGHT_VERTICES, 3) float16 deltas of the morph targets from the neutral."""
    modes = np.empty((len(paths), LIGHT_VERTICES, 3), dtype=np.float16)
    for k, p in enumerate(paths):
        verts, faces = _read_raw(p)
        if verts.shape != neutral.shape:
            raise InvalidInputError(
                f"{p}: {len(verts)} vertices, the neutral mesh has {len(neutral)}"
            )
        if faces != block and not np.array_equal(_parse_faces(p, faces, len(verts)), quads):
            raise InvalidInputError(f"{p}: polygons differ from {NEUTRAL_FILE}")
        modes[k] = verts[:LIGHT_VERTICES] - neutral[:LIGHT_VERTICES]
    return modes


def pack_face_model(folder: Path, out: Path) -> Path:
    """Pack an ICT-FaceKit ``FaceXModel/`` folder into ``out`` (npz, written atomically)."""
    folder, out = Path(folder).expanduser(), Path(out).expanduser()
    if not folder.is_dir():
        raise MissingDataError(f"ICT-FaceKit FaceXModel folder not found: {folder}")
    if not out.parent.is_dir():
        raise OutputError(f"cannot write {out}: folder {out.parent} does not exist")
    neutral_path, identity_paths, expression_paths = _model_files(folder)
    neutral, block = _read_raw(neutral_path)
    quads = _parse_faces(neutral_path, block, len(neutral))
    if neutral.shape[0] != FULL_VERTICES or quads.shape[0] != FULL_POLYGONS:
        raise InvalidInputError(
            f"{neutral_path}: {len(neutral)} vertices and {len(quads)} polygons, expected "
            f"{FULL_VERTICES} and {FULL_POLYGONS} (ICT-FaceKit FaceXModel topology)"
        )
    light_quads = quads[:LIGHT_POLYGONS]
    if light_quads.max() >= LIGHT_VERTICES:
        raise InvalidInputError(
            f"{neutral_path}: the first {LIGHT_POLYGONS} polygons use later vertices"
        )
    arrays: dict[str, Any] = {
        "neutral": neutral[:LIGHT_VERTICES].astype(np.float32),
        "identity_modes": _deltas(identity_paths, neutral, block, quads),
        "expression_names": np.array(EXPRESSION_NAMES),
        "expression_modes": _deltas(expression_paths, neutral, block, quads),
        "quads": light_quads.astype(np.int32),
        "landmarks68": np.array(LANDMARKS68, dtype=np.int32),
        "group_names": np.array([g[0] for g in GROUPS]),
        "group_vertex_range": np.array([g[1] for g in GROUPS], dtype=np.int32),
        "group_poly_range": np.array([g[2] for g in GROUPS], dtype=np.int32),
        "units": np.array("cm"),
        "source": np.array(f"ICT-FaceKit FaceXModel/ packed from {folder.resolve()}, MIT License"),
    }
    with atomic_path(out) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)
    return out
