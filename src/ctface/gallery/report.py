"""A self-contained HTML page of an identification: the probe's and the candidates' frontal
face depth images side by side, with scores and the decision (images inline as PNG)."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ctface.files import write_text_atomic
from ctface.gallery.decide import Identification
from ctface.gallery.search import Candidate

STYLE = (
    "body{font-family:sans-serif;margin:2em;color:#222}"
    ".row{display:flex;gap:1.5em;flex-wrap:wrap}.card{text-align:center;font-size:.9em}"
    ".card img{width:192px;height:192px;border:3px solid #ccc;background:#000}"
    ".hit img{border-color:#2a2}.probe img{border-color:#36c}"
    "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .6em}"
)


def png_bytes(image: np.ndarray) -> bytes:
    """uint8 grey image -> PNG file bytes."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8), mode="L").save(buf, "png")
    return buf.getvalue()


def png_data_uri(image: np.ndarray) -> str:
    """uint8 grey image -> ``data:image/png;base64,...``."""
    return "data:image/png;base64," + base64.b64encode(png_bytes(image)).decode()


def _card(label: str, image: np.ndarray | None, css: str) -> str:
    img = (
        f'<img src="{png_data_uri(image)}" alt="frontal face depth image">'
        if image is not None
        else '<div style="width:192px;height:192px;border:3px dashed #ccc">no image</div>'
    )
    return f'<div class="card {css}">{img}<br>{label}</div>'


def identification_html(
    path: Path,
    probe_label: str,
    probe_image: np.ndarray,
    result: Identification,
    candidate_image: Callable[[Candidate], np.ndarray | None],
) -> Path:
    """Write the page (atomically) and return its path."""
    t = result.threshold
    if result.patient_id is None:
        verdict = "<b>not in gallery</b>: no patient reaches the threshold"
    else:
        verdict = f"<b>identified as {html.escape(result.patient_id)}</b>"
    cards = [_card(f"<b>probe</b><br>{html.escape(probe_label)}", probe_image, "probe")]
    for c in result.candidates:
        hit = "hit" if c.patient_id == result.patient_id else ""
        label = f"#{c.rank} {html.escape(c.patient_id)}<br>score {c.score:.3f}"
        cards.append(_card(label, candidate_image(c), hit))
    rows = "".join(
        f"<tr><td>{c.rank}</td><td>{html.escape(c.patient_id)}</td><td>{c.score:.4f}</td>"
        f"<td>{'yes' if c.score >= t.threshold else 'no'}</td></tr>"
        for c in result.candidates
    )
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>ctface: "
        f"{html.escape(probe_label)}</title><style>{STYLE}</style></head><body>"
        f"<h1>Identification of {html.escape(probe_label)}</h1><p>{verdict}. "
        f"Threshold {t.threshold:.4f} for a "
        f"false-match rate of {t.fmr:g} per comparison (calibration: "
        f"{html.escape(t.calibration)}, {t.impostor_comparisons} impostor "
        f"comparisons; {t.fnmr_at_threshold:.1%} of genuine comparisons fall below it). "
        f"Gallery: {result.gallery_patients} patients, {result.gallery_scans} scans "
        f"({result.search} search).</p><div class='row'>{''.join(cards)}</div><table><tr>"
        "<th>rank</th><th>patient</th><th>score</th><th>above threshold</th></tr>"
        f"{rows}</table><p>Images: frontal face depth (brighter = nearer), as the recognition "
        "model sees it before face separation.</p></body></html>"
    )
    write_text_atomic(path, page)
    return path
