"""``pack_face_model``: a fake FaceXModel folder, written from the shared npz in ICT-FaceKit's
real file layout (licence header, mtllib, v, vt, usemtl, ``f v/vt`` lines; absolute shapes;
the 8 parts after the light block appended), must pack back into the same npz."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from ctface.errors import InvalidInputError, MissingDataError, OutputError
from ctface.face_model.model import load_face_model
from ctface.face_model.pack import (
    EXPRESSION_NAMES,
    FULL_POLYGONS,
    FULL_VERTICES,
    LIGHT_POLYGONS,
    LIGHT_VERTICES,
    NEUTRAL_FILE,
    pack_face_model,
    read_obj,
)

SHARED_NPZ = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "face_model" / "ict_facekit_light.npz"
)
N_IDENTITY = 3


@pytest.fixture(scope="module")
def ref() -> dict[str, np.ndarray]:
    if not SHARED_NPZ.is_file():
        pytest.skip(f"shared face model not found at {SHARED_NPZ}")
    with np.load(SHARED_NPZ) as d:
        return {k: d[k] for k in d.files}


def _face_block(ref: dict[str, np.ndarray], rng: np.random.Generator) -> tuple[bytes, np.ndarray]:
    """'f v/vt ...' lines for the light quads (triangles as 3 indices) plus the extra parts."""
    n_extra_v, n_extra_f = FULL_VERTICES - LIGHT_VERTICES, FULL_POLYGONS - LIGHT_POLYGONS
    extra = LIGHT_VERTICES + rng.integers(0, n_extra_v, size=(n_extra_f, 4))
    quads = np.concatenate([ref["quads"].astype(np.int64), extra])
    is_tri = quads[:, 3] == quads[:, 2]
    one = quads + 1
    lines = np.empty(len(quads), dtype=object)
    lines[~is_tri] = [f"f {a}/{a} {b}/{b} {c}/{c} {d}/{d}" for a, b, c, d in one[~is_tri]]
    lines[is_tri] = [f"f {a}/{a} {b}/{b} {c}/{c}" for a, b, c, _ in one[is_tri]]
    lines[LIGHT_POLYGONS:] = [f"f {a} {b} {c} {d}" for a, b, c, d in one[LIGHT_POLYGONS:]]
    body = "usemtl M_Face\n" + "\n".join(lines) + "\n"
    return body.encode(), quads


def _write_obj(path: Path, verts: np.ndarray, faces: bytes) -> None:
    head = "#" * 40 + "\n# ICT FaceKit (test fake)\n" + "#" * 40 + "\n\nmtllib X.mtl\n"
    vblock = ("v %.9g %.9g %.9g\n" * len(verts)) % tuple(verts.ravel())
    path.write_bytes(head.encode() + vblock.encode() + b"vt 0.5 0.5\nvt 0.25 0.75\n" + faces)


@pytest.fixture(scope="module")
def fake_folder(ref: dict[str, np.ndarray], tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("FaceXModel")
    rng = np.random.default_rng(0)
    faces, _ = _face_block(ref, rng)
    extra = rng.normal(0.0, 5.0, size=(FULL_VERTICES - LIGHT_VERTICES, 3))
    neutral = np.concatenate([ref["neutral"].astype(np.float64), extra])
    _write_obj(folder / NEUTRAL_FILE, neutral, faces)
    targets = [(f"identity{i:03d}", ref["identity_modes"][i]) for i in range(N_IDENTITY)]
    targets += list(zip(EXPRESSION_NAMES, ref["expression_modes"], strict=True))
    for name, mode in targets:
        shape = neutral.copy()
        shape[:LIGHT_VERTICES] += mode.astype(np.float64)
        shape[LIGHT_VERTICES:] += rng.normal(0.0, 0.1, size=extra.shape)  # dropped parts move too
        _write_obj(folder / f"{name}.obj", shape, faces)
    return folder


@pytest.fixture(scope="module")
def packed(fake_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pack_face_model(fake_folder, tmp_path_factory.mktemp("out") / "packed.npz")


def test_pack_reproduces_shared_npz(packed: Path, ref: dict[str, np.ndarray]) -> None:
    with np.load(packed) as d:
        got = {k: d[k] for k in d.files}
    assert set(got) == set(ref)
    for key in ("neutral", "quads", "landmarks68", "group_names", "group_vertex_range"):
        assert got[key].dtype == ref[key].dtype, key
        np.testing.assert_array_equal(got[key], ref[key], err_msg=key)
    np.testing.assert_array_equal(got["group_poly_range"], ref["group_poly_range"])
    np.testing.assert_array_equal(got["expression_names"], ref["expression_names"])
    assert str(got["units"]) == "cm" and "FaceXModel" in str(got["source"])
    assert got["identity_modes"].shape == (N_IDENTITY, LIGHT_VERTICES, 3)
    assert got["identity_modes"].dtype == np.float16 == got["expression_modes"].dtype
    assert got["expression_modes"].shape == ref["expression_modes"].shape
    for key, want in (("identity_modes", ref["identity_modes"][:N_IDENTITY]),
                      ("expression_modes", ref["expression_modes"])):  # fmt: skip
        # %.9g text round trip: at most one float16 step off, and only for tiny deltas
        np.testing.assert_allclose(got[key], want, rtol=1e-3, atol=1e-5, err_msg=key)
        assert np.mean(got[key] == want) > 0.99, key


def test_packed_file_loads(packed: Path, ref: dict[str, np.ndarray]) -> None:
    model = load_face_model(packed)
    assert model.n_identity == N_IDENTITY
    assert model.expression_names == EXPRESSION_NAMES
    assert model.group_names[-1] == "eyeball_right"
    np.testing.assert_allclose(model.neutral, ref["neutral"] * 10.0, rtol=1e-6)
    assert model.triangles.max() < LIGHT_VERTICES


def test_no_temp_file_left(packed: Path) -> None:
    assert [p.name for p in packed.parent.iterdir()] == ["packed.npz"]


def _linked_copy(src: Path, dst: Path, skip: str) -> None:
    dst.mkdir()
    for p in src.iterdir():
        if p.name != skip:
            os.link(p, dst / p.name)


def test_identity_with_wrong_vertex_count(fake_folder: Path, tmp_path: Path) -> None:
    folder = tmp_path / "bad"
    _linked_copy(fake_folder, folder, skip="identity000.obj")
    (folder / "identity000.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    with pytest.raises(InvalidInputError, match="identity000.obj: 3 vertices"):
        pack_face_model(folder, tmp_path / "out.npz")
    assert not (tmp_path / "out.npz").exists()


def test_identity_with_other_topology(fake_folder: Path, tmp_path: Path) -> None:
    folder = tmp_path / "topo"
    _linked_copy(fake_folder, folder, skip="identity000.obj")
    text = (fake_folder / "identity000.obj").read_bytes()
    at = text.index(b"\nf ") + 1
    end = text.index(b"\n", at)
    flipped = b"f " + b" ".join(reversed(text[at + 2 : end].split()))  # same face, other winding
    (folder / "identity000.obj").write_bytes(text[:at] + flipped + text[end:])
    with pytest.raises(InvalidInputError, match="identity000.obj: polygons differ"):
        pack_face_model(folder, tmp_path / "out.npz")


def _touch_folder(folder: Path, missing: str, identities: tuple[int, ...] = (0, 1)) -> None:
    folder.mkdir()
    names = [NEUTRAL_FILE, *(f"identity{i:03d}.obj" for i in identities)]
    names += [f"{e}.obj" for e in EXPRESSION_NAMES]
    for name in names:
        if name != missing:
            (folder / name).write_text("v 0 0 0\n")


def test_unwritable_output(tmp_path: Path) -> None:
    _touch_folder(tmp_path / "u", missing="")
    with pytest.raises(OutputError, match="does not exist"):  # before any OBJ is parsed
        pack_face_model(tmp_path / "u", tmp_path / "no" / "such" / "out.npz")


@pytest.mark.parametrize("missing", [NEUTRAL_FILE, "identity000.obj", "jawOpen.obj"])
def test_missing_file(tmp_path: Path, missing: str) -> None:
    _touch_folder(tmp_path / "m", missing)
    with pytest.raises(MissingDataError, match=missing.replace(".", r"\.")) as info:
        pack_face_model(tmp_path / "m", tmp_path / "out.npz")
    assert "\n" not in str(info.value)


def test_gap_in_identity_files(tmp_path: Path) -> None:
    _touch_folder(tmp_path / "g", missing="", identities=(0, 2))
    with pytest.raises(MissingDataError, match=r"identity001\.obj"):
        pack_face_model(tmp_path / "g", tmp_path / "out.npz")


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(MissingDataError, match="not found"):
        pack_face_model(tmp_path / "nope", tmp_path / "out.npz")


def test_read_obj_small(tmp_path: Path) -> None:
    p = tmp_path / "m.obj"
    p.write_text(
        "# c\nmtllib a.mtl\nv 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nvt 0 0\nvn 0 0 1\n"
        "usemtl x\ns off\nf 1/1/1 2/1/1 3/1/1 4/1/1\nf 1//1 3//1 4//1\nf 2 3 4\n"
    )
    verts, faces = read_obj(p)
    np.testing.assert_array_equal(verts[2], [1.0, 1.0, 0.0])
    np.testing.assert_array_equal(faces, [[0, 1, 2, 3], [0, 2, 3, 3], [1, 2, 3, 3]])


@pytest.mark.parametrize(
    "text",
    [
        "v 0 0 x\nv 1 0 0\nv 0 1 0\nf 1 2 3\n",  # not a number
        "v 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n",  # 2 coordinates
        "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 4\n",  # index out of range
        "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2\n",  # a 2-gon
        "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 a\n",  # not an index
        "v 0 0 0\nv 1 0 0\nv 0 1 0\nf -1 -2 -3\n",  # relative indices: not used by ICT
        "v 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 nan 0\nf 1 2 3\n",  # NaN
        "v 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\nf 1 2 3 4 1\n",  # a pentagon
    ],
)
def test_read_obj_malformed(tmp_path: Path, text: str) -> None:
    p = tmp_path / "bad.obj"
    p.write_text(text)
    with pytest.raises(InvalidInputError, match="bad.obj"):
        read_obj(p)


def test_malformed_neutral(tmp_path: Path) -> None:
    _touch_folder(tmp_path / "x", missing="")
    (tmp_path / "x" / NEUTRAL_FILE).write_text("v 0 0 0\nf 1 1 1 1 1\n")
    with pytest.raises(InvalidInputError, match=NEUTRAL_FILE):
        pack_face_model(tmp_path / "x", tmp_path / "out.npz")
    (tmp_path / "x" / NEUTRAL_FILE).write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    with pytest.raises(InvalidInputError, match="expected 26719"):
        pack_face_model(tmp_path / "x", tmp_path / "out.npz")
