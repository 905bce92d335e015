"""Inference on ONNX Runtime: identifying a scan does not load torch, the exports give torch's
numbers (templates within 1e-4), a stale export is ignored, and the export command reproduces
the shipped files."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ctface.embed.config import EmbedConfig
from ctface.embed.embedder import ONNX_PARTS, FaceEmbedder
from ctface.embed.shipped import WEIGHTS
from ctface.embed.template import scan_template
from ctface.errors import MissingDataError
from ctface.landmarks import ctfan
from ctface.landmarks.ctfan import CtFanDetector
from ctface.model_files import SOURCE_KEY, onnx_path, sha256

TOLERANCE = 1e-4  # max abs difference of templates and view embeddings, torch vs ONNX Runtime
HEATMAP_TOLERANCE = 1e-4  # CT-FAN heatmaps (measured on two phantoms: <= 3e-6)
SMALL = EmbedConfig(
    name="small", block="basic", layers=(1, 1, 1, 1), widths=(8, 8, 8, 8), stem_stride=2,
    resize=68, input_size=64, embedding_dim=8,
)  # fmt: skip

# acquire() in a fresh interpreter; the depth views it embedded are saved for the comparison
_ACQUIRE = """
import json, sys
import numpy as np
from ctface.embed import embedder
seen = {}
run = embedder.FaceEmbedder.template_of_depth
def keep(self, depth):
    seen["depth"] = depth
    return run(self, depth)
embedder.FaceEmbedder.template_of_depth = keep
from ctface.api import acquire, default_model
a = acquire(sys.argv[1], digest=False)
np.save(sys.argv[2], seen["depth"])
print(json.dumps({"torch": "torch" in sys.modules, "onnxruntime": "onnxruntime" in sys.modules,
                  "backend": default_model().backend, "template": a.template.vector.tolist(),
                  "version": a.template.model_version}))
"""


@pytest.fixture(scope="module")
def acquired(nifti_cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """The API's acquire of a phantom in a subprocess: what it imported, its template, and the
    depth views it embedded."""
    depth = tmp_path_factory.mktemp("onnx") / "depth.npy"
    scan = nifti_cohort / "S0001" / "S0001_01.nii.gz"
    r = subprocess.run([sys.executable, "-c", _ACQUIRE, str(scan), str(depth)],
                       capture_output=True, text=True, timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr
    return {**json.loads(r.stdout.splitlines()[-1]), "depth": np.load(depth), "scan": scan}


def test_shipped_exports_record_their_weights() -> None:
    for pt, parts in ((WEIGHTS, ONNX_PARTS), (ctfan.WEIGHTS, ctfan.ONNX_PARTS)):
        for part in parts:
            f = onnx_path(pt, part)
            assert f.is_file() and f.stat().st_size < 20e6
    assert FaceEmbedder.load().backend == "onnxruntime"
    assert CtFanDetector.load().backend == "onnxruntime"
    for pt in (WEIGHTS, ctfan.WEIGHTS):
        assert "ctface train export-onnx" in (pt.parent / "MODEL_CARD.md").read_text()


def test_acquire_does_not_import_torch(acquired: dict[str, object]) -> None:
    assert acquired["torch"] is False and acquired["onnxruntime"] is True
    assert acquired["backend"] == "onnxruntime"
    # the model version stays the .pt's: galleries enrolled on torch stay valid
    assert acquired["version"] == sha256(WEIGHTS)[:16] == FaceEmbedder.load().version


def test_embedder_onnx_matches_torch(acquired: dict[str, object]) -> None:
    depth = acquired["depth"]
    assert isinstance(depth, np.ndarray) and depth.ndim == 3  # (views, 256, 256)
    ort, pt = FaceEmbedder.load(backend="onnxruntime"), FaceEmbedder.load(backend="torch")
    assert (ort.backend, pt.backend) == ("onnxruntime", "torch")
    assert (ort.config, ort.template_rule, ort.version) == (pt.config, pt.template_rule, pt.version)
    (img_o, mask_o), (img_t, mask_t) = ort.images(depth), pt.images(depth)
    assert (mask_o != mask_t).sum() <= 10  # of 1.5 M pixels (measured: none differ)
    emb_o, emb_t = ort.embed(img_t), pt.embed(img_t)  # the same images
    assert np.abs(emb_o - emb_t).max() < TOLERANCE
    # the templates (as template_of_depth makes them) of each backend's own images
    t_o, t_t = (
        scan_template(ort.embed(img_o), ort.template_rule),
        scan_template(emb_t, pt.template_rule),
    )
    assert np.abs(t_o - t_t).max() < TOLERANCE
    assert np.abs(t_o - np.array(acquired["template"])).max() < 1e-5  # the subprocess's


def test_ctfan_onnx_matches_torch(acquired: dict[str, object]) -> None:
    from ctface.api import load_ct
    from ctface.landmarks.sampling import (
        COARSE,
        FINE,
        Grid,
        body_centre,
        coarse_grid,
        face_axes,
        sample_cube,
    )

    volume = load_ct(acquired["scan"])  # type: ignore[arg-type]
    ort, pt = CtFanDetector.load(backend="onnxruntime"), CtFanDetector.load(backend="torch")
    grid = coarse_grid(volume)
    cube = sample_cube(grid, body_centre(grid), np.eye(3), COARSE.n, COARSE.step_mm)[None]
    maps = [d._heatmaps("coarse", cube) for d in (ort, pt)]
    assert np.abs(maps[0] - maps[1]).max() < HEATMAP_TOLERANCE
    five, _ = ort._coarse_once(grid)  # the fine stage's cubes around ONNX Runtime's estimates
    fine, axes = Grid.from_volume(volume), face_axes(five)
    cubes = np.stack([sample_cube(fine, c, axes, FINE.n, FINE.step_mm) for c in five[:2]])
    maps = [d._heatmaps("fine", cubes) for d in (ort, pt)]
    assert np.abs(maps[0] - maps[1]).max() < HEATMAP_TOLERANCE
    # the decoded landmarks (a fine pass with its mirror images) of both eyes
    (lps_o, peak_o), (lps_t, peak_t) = (
        d._run("fine", fine, five[:2], axes, FINE) for d in (ort, pt)
    )
    assert np.abs(lps_o - lps_t).max() < 1e-3 and np.abs(peak_o - peak_t).max() < 1e-4  # mm


def _copy_exports(src: Path, dst: Path, parts: tuple[str, ...]) -> None:
    for part in parts:
        shutil.copy(onnx_path(src, part), onnx_path(dst, part))


def test_stale_or_partial_export_is_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ctface.model_files as mf
    from ctface.embed.embedder import save_model
    from ctface.embed.resnet import ResNetEmbedder
    from ctface.embed.segment import FaceSegmenter
    from ctface.landmarks.model import CtFan, NetConfig

    # the shipped exports beside a copy of their own .pt: used, with the thread setting
    monkeypatch.setattr(mf, "_threads", 1)
    shutil.copy(WEIGHTS, tmp_path / "own.pt")
    _copy_exports(WEIGHTS, tmp_path / "own.pt", ONNX_PARTS)
    own = FaceEmbedder.load(tmp_path / "own.pt")
    assert own.backend == "onnxruntime" and own.onnx is not None
    assert own.onnx["embedding"].session.get_session_options().intra_op_num_threads == 1
    # ... beside another model's .pt: that one runs on torch
    other = save_model(tmp_path / "other.pt", SMALL, ResNetEmbedder(SMALL), FaceSegmenter(), {},
                       onnx=False)  # fmt: skip
    _copy_exports(WEIGHTS, other, ONNX_PARTS)
    stale = FaceEmbedder.load(other)
    assert stale.backend == "torch" and stale.config == SMALL
    assert stale.embed(np.zeros((2, 128, 128), np.uint8)).shape == (2, 8)
    with pytest.raises(MissingDataError, match="export-onnx"):
        FaceEmbedder.load(other, backend="onnxruntime")
    onnx_path(tmp_path / "own.pt", "segmenter").unlink()  # one part missing: torch
    assert FaceEmbedder.load(tmp_path / "own.pt").backend == "torch"

    net = CtFan(NetConfig(channels=4, depth=1))
    ctfan.save_weights(tmp_path / "ctfan.pt", net, net, {"tiny": True}, onnx=False)
    _copy_exports(ctfan.WEIGHTS, tmp_path / "ctfan.pt", ctfan.ONNX_PARTS)
    det = CtFanDetector.load(tmp_path / "ctfan.pt")
    assert det.backend == "torch" and det.meta == {"tiny": True}


def test_export_command_reproduces_the_shipped_exports(tmp_path: Path, cli: object) -> None:
    pt = shutil.copy(WEIGHTS, tmp_path / "embedder.pt")
    r = cli("train", "export-onnx", "--weights", str(pt), "--json")  # type: ignore[operator]
    assert r.returncode == 0, r.stderr
    (row,) = json.loads(r.stdout)["exported"]
    assert row["backend"] == "onnxruntime" and len(row["onnx"]) == len(ONNX_PARTS)
    for part in ONNX_PARTS:
        made, shipped = onnx_path(Path(pt), part), onnx_path(WEIGHTS, part)
        assert _same_export(made, shipped), (
            f"{shipped.name} is not what `ctface train export-onnx` makes of {WEIGHTS.name}: "
            "run it to re-export"
        )
    assert (
        SOURCE_KEY.encode() in made.read_bytes() and sha256(WEIGHTS).encode() in made.read_bytes()
    )


def _same_export(made: Path, shipped: Path) -> bool:
    """The same graph, metadata and weights; each weight tensor equal to within 4 float32 ULPs
    of its largest value (folding batch norms into the convolutions rounds differently on other
    CPUs: seen on one with AVX-512 and AMX, up to 2 such ULPs in a few % of the values, more
    on small biases left after a cancellation)."""
    import onnx
    from onnx import numpy_helper

    a, b = onnx.load(made), onnx.load(shipped)
    wa = {i.name: numpy_helper.to_array(i) for i in a.graph.initializer}
    wb = {i.name: numpy_helper.to_array(i) for i in b.graph.initializer}
    for m in (a, b):
        m.graph.ClearField("initializer")
    return (
        a.SerializeToString() == b.SerializeToString()
        and wa.keys() == wb.keys()
        and all(_close(wa[k], wb[k]) for k in wa)
    )


def _close(a: np.ndarray, b: np.ndarray) -> bool:
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if not np.issubdtype(a.dtype, np.floating) or not a.size:
        return bool(np.array_equal(a, b))
    ulp = np.spacing(np.abs(b).max())
    return bool(np.abs(a.astype(np.float64) - b).max() <= 4 * ulp)
