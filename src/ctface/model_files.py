"""Weights files: written whole through a temporary name (``torch.save``), read back with a
check of the format they declare. Inference and training both read and write them.

Beside a weights file ``NAME.pt`` its networks may be exported to ONNX (``NAME.PART.onnx``,
``export_onnx``), each recording the SHA-256 of the .pt it came from. Inference runs them on
ONNX Runtime (``onnx_nets``) when every part is there and records the .pt being loaded, and
on torch otherwise (a stale or missing export is ignored, never used). torch is imported only
where a torch network is loaded, trained or exported (``import_torch``)."""

from __future__ import annotations

import hashlib
import io
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from ctface.errors import MissingDataError
from ctface.files import atomic_path

if TYPE_CHECKING:
    import torch

ONNX_FORMAT = "ctface-onnx-1"
ONNX_OPSET = 17
SOURCE_KEY = "ctface.source_sha256"  # ONNX metadata: SHA-256 of the .pt it was exported from
_threads: int | None = None  # set_inference_threads; None: each library's default


def save_atomic(obj: Any, path: Path) -> None:
    """``torch.save`` through a temporary file. Written through a file object, the archive
    inside is named "archive" whatever the file's name (``torch.save`` to a path names it after
    the temporary name), so the same content gives the same bytes: the same model version."""
    torch = import_torch()
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        torch.save(obj, fh)


def load_checked(source: Path | io.BytesIO, fmt: str | tuple[str, ...]) -> dict[str, Any]:
    """A ctface weights file (``torch.load``); ValueError unless its format is ``fmt`` (or one
    of them)."""
    formats = (fmt,) if isinstance(fmt, str) else fmt
    state = import_torch().load(source, weights_only=False, map_location="cpu")
    if not isinstance(state, dict) or state.get("format") not in formats:
        raise ValueError(f"not a {' or '.join(formats)} file")
    return state


def set_inference_threads(threads: int) -> None:
    """Threads of the networks' arithmetic in this process (enrollment workers share the
    cores): torch's now if it is loaded, else when it is; ONNX Runtime's in sessions made
    from now on."""
    global _threads
    _threads = max(1, int(threads))
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(_threads)


def import_torch() -> ModuleType:
    """``torch``, imported here (it costs about a second), with the thread setting applied."""
    import torch

    if _threads is not None and torch.get_num_threads() != _threads:
        torch.set_num_threads(_threads)
    return torch


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def onnx_path(weights: Path, part: str) -> Path:
    """Where part ``part`` of weights file ``weights`` is exported: NAME.PART.onnx beside it."""
    return weights.with_name(f"{weights.stem}.{part}.onnx")


class OnnxNet:
    """One exported network on ONNX Runtime: float32 array in, first output out."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.input = session.get_inputs()[0].name
        self.metadata: dict[str, str] = dict(session.get_modelmeta().custom_metadata_map)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, np.float32)
        out: np.ndarray = self.session.run(None, {self.input: x})[0]
        return out


class TorchOnDemand:
    """A model run on ONNX Runtime (``onnx``) or torch; its torch networks, where ONNX Runtime
    runs it, are read from its file on first use (``_load_torch``, by the subclass)."""

    onnx: dict[str, OnnxNet] | None

    @property
    def backend(self) -> str:
        """What runs the networks: "onnxruntime" or "torch"."""
        return "onnxruntime" if self.onnx else "torch"

    def _load_torch(self) -> None:
        raise NotImplementedError

    def _on_demand(self, attr: str) -> Any:
        """The attribute ``attr`` (a torch network, ...), loading the torch side if needed."""
        if getattr(self, attr) is None:
            self._load_torch()
        value = getattr(self, attr)
        assert value is not None
        return value


def onnx_nets(weights: Path, parts: Sequence[str], digest: str) -> dict[str, OnnxNet] | None:
    """The ONNX Runtime networks exported from ``weights`` (whose SHA-256 is ``digest``), by
    part; None when onnxruntime is missing or any part is missing, unreadable or exported from
    another file (the caller then runs torch)."""
    paths = [onnx_path(weights, p) for p in parts]
    if not all(p.is_file() for p in paths):
        return None
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.intra_op_num_threads = _threads or 0  # 0: ONNX Runtime's default (the cores)
    opts.inter_op_num_threads = 1
    # idle threads sleep instead of spinning: measured faster on this 2-core machine when
    # other processes (enrollment workers, rendering) want the cores too
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    out = {}
    for part, p in zip(parts, paths, strict=True):
        try:
            net = OnnxNet(ort.InferenceSession(str(p), opts, providers=["CPUExecutionProvider"]))
        except Exception:  # noqa: BLE001 - an unreadable export: torch runs instead
            return None
        meta = net.metadata
        if meta.get(SOURCE_KEY) != digest or meta.get("ctface.part") != part:
            return None
        out[part] = net
    return out


def export_onnx(
    net: torch.nn.Module,
    example: torch.Tensor,
    path: Path,
    names: tuple[str, str],
    metadata: Mapping[str, Any],
) -> Path:
    """Write ``net`` (evaluation mode) to ``path`` as ONNX (torch's TorchScript exporter, opset
    ``ONNX_OPSET``) with a dynamic batch axis, input and output named ``names``, and
    ``metadata`` (values not str as JSON) in its metadata_props; needs the ``onnx`` package
    (pip install 'ctface[onnx]')."""
    import warnings

    try:
        import onnx
    except ImportError as e:
        raise MissingDataError(
            "exporting to ONNX needs onnx, which is not installed: pip install 'ctface[onnx]'"
        ) from e
    torch = import_torch()
    net.eval()
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        # the TorchScript exporter is deprecated in favour of torch.export (which needs
        # onnxscript); it is what exports these networks with torch 2.13 and onnx alone
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net, (example,), buf, dynamo=False, opset_version=ONNX_OPSET,
            input_names=[names[0]], output_names=[names[1]],
            dynamic_axes={names[0]: {0: "batch"}, names[1]: {0: "batch"}},
        )  # fmt: skip
    model = onnx.load_from_string(buf.getvalue())
    meta = {"ctface.format": ONNX_FORMAT, **metadata}
    for k, v in meta.items():
        model.metadata_props.add(key=k, value=v if isinstance(v, str) else json.dumps(v))
    onnx.checker.check_model(model)
    with atomic_path(path) as tmp:
        tmp.write_bytes(model.SerializeToString())
    return path
