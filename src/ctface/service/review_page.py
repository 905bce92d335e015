"""The review page: ``/review/login`` (a token -> an HTTP-only session cookie), ``/review`` (the
worklist of findings and recent identifications, sortable by score or time, each with the
probe's and the candidates' frontal depth images side by side, scores against the threshold,
what to check, the decisions so far, and accept / reject / note buttons) and the scans that
failed to acquire with their reasons.

Plain server-rendered HTML; the one script (a nonce'd inline block, no CDN) posts decisions to
``/v1/findings/{id}/decision`` with the session's CSRF token. Every value from the gallery is
HTML-escaped; images come from the API's image routes (same session).
"""

from __future__ import annotations

import html
import secrets
from typing import Any
from urllib.parse import urlencode, urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ctface.api import DEFAULT_FMR, Gallery
from ctface.gallery.report import STYLE
from ctface.gallery.review import ReviewFinding
from ctface.service.errors import ServiceError

PAGE_SIZE = 50
MAX_FAILURES = 200
PAGE_STYLE = STYLE + (
    ".finding{border:1px solid #ccc;border-radius:6px;padding:.8em 1em;margin:1em 0}"
    ".finding.accept{border-left:6px solid #2a2}.finding.reject{border-left:6px solid #c33}"
    ".kind{font-size:.8em;background:#eef;border-radius:4px;padding:.1em .4em}"
    ".above{color:#161;font-weight:bold}.below{color:#a50}.check{color:#555}"
    ".decisions{font-size:.85em;color:#333}.actions button{margin-right:.4em}"
    "nav a{margin-right:.8em}.status{font-weight:bold}"
    ".card img{width:160px;height:160px}"
)
LOGIN = (
    "<!doctype html><html><head><meta charset='utf-8'><title>ctface review: log in</title>"
    "<style>{style}</style></head><body><h1>ctface review</h1>{message}"
    "<form method='post' action='/review/login'><label>Access token "
    "<input type='password' name='token' id='token' autocomplete='off' required></label> "
    "<button type='submit' id='login'>Log in</button></form></body></html>"
)
SCRIPT = """
const csrf = document.querySelector('meta[name=csrf]').content;
async function decide(section, decision) {
  const text = section.querySelector('input.note').value;
  const r = await fetch('/v1/findings/' + section.dataset.id + '/decision', {
    method: 'POST', credentials: 'same-origin',
    headers: {'Content-Type': 'application/json', 'X-CSRF-Token': csrf},
    body: JSON.stringify({decision: decision, note: text})});
  const out = await r.json();
  if (!r.ok) { alert(out.error.message); return; }
  const li = document.createElement('li');
  const note = out.note ? ' - ' + out.note : '';
  li.textContent = out.at + ' ' + out.user + ': ' + out.decision + note;
  section.querySelector('ul.decisions').appendChild(li);
  if (decision !== 'note') {
    section.querySelector('.status').textContent = decision;
    section.classList.remove('accept', 'reject'); section.classList.add(decision);
  }
  section.querySelector('input.note').value = '';
}
document.querySelectorAll('section.finding').forEach(s => {
  s.querySelectorAll('button[data-decision]').forEach(b =>
    b.addEventListener('click', () => decide(s, b.dataset.decision)));
});
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _card(label: str, src: str, css: str) -> str:
    return (f'<div class="card {css}"><img src="{_e(src)}" loading="lazy" '
            f'alt="frontal face depth image"><br>{label}</div>')  # fmt: skip


def _images(f: ReviewFinding) -> str:
    """Probe (an identification's) and candidates / the finding's scans, side by side."""
    cards = []
    if f.has_probe_image:
        probe = f"<b>probe</b><br>{_e(f.detail.get('label', ''))}"
        cards.append(_card(probe, f"/v1/findings/{f.finding_id}/probe", "probe"))
    if "candidates" in f.detail:  # an identification, a PACS study
        hit = f.detail.get("decision", {}).get("patient_id")
        for c in f.detail.get("candidates", []):
            label = f"#{c['rank']} {_e(c['patient_id'])}<br>score {c['score']:.3f}"
            css = "candidate hit" if c["patient_id"] == hit else "candidate"
            cards.append(_card(label, f"/v1/scans/{c['scan_key']}/image", css))
    else:
        for s in f.detail.get("scans", []):
            label = f"{_e(s['patient_id'] or 'no ID')}<br><small>{_e(s['role'])}</small>"
            cards.append(_card(label, f"/v1/scans/{s['scan_key']}/image", "candidate"))
    return f"<div class='row'>{''.join(cards)}</div>"


def _score_line(f: ReviewFinding, threshold: float) -> str:
    """Identifications and audits: the score against the decision threshold; reconciliation
    findings: the score and the evidence (their thresholds are the archive's own)."""
    if f.score is None:
        return ""
    if f.origin == "reconcile":
        evidence = f.detail.get("evidence")
        return f"score {f.score:.3f}" + (f", evidence {evidence:.1f}" if evidence else "")
    t = float(f.detail.get("decision", {}).get("threshold", threshold))
    side = "above" if f.score >= t else "below"
    word = "&ge;" if side == "above" else "&lt;"
    return f"<span class='{side}'>score {f.score:.3f} {word} threshold {t:.3f}</span>"


def _finding(f: ReviewFinding, threshold: float) -> str:
    decisions = "".join(
        f"<li>{_e(d.at)} {_e(d.user)}: {_e(d.decision)}{' - ' + _e(d.note) if d.note else ''}</li>"
        for d in f.decisions
    )
    check = f.detail.get("check") or ""
    return (
        f"<section class='finding {_e(f.status)}' data-id='{f.finding_id}' "
        f"data-score='{'' if f.score is None else f'{f.score:.6f}'}'>"
        f"<h3><span class='kind'>{_e(f.kind)}</span> #{f.finding_id} {_e(f.title)}</h3>"
        f"<p>{_score_line(f, threshold)} &middot; {_e(f.origin)} &middot; {_e(f.updated_at)} "
        f"&middot; status <span class='status'>{_e(f.status)}</span></p>"
        f"{'<p class=check>' + _e(check) + '</p>' if check else ''}{_images(f)}"
        f"<ul class='decisions'>{decisions}</ul><div class='actions'>"
        "<button class='accept' data-decision='accept'>Accept</button>"
        "<button class='reject' data-decision='reject'>Reject</button>"
        "<input class='note' maxlength='2000' placeholder='note'>"
        "<button class='add-note' data-decision='note'>Add note</button></div></section>"
    )


def _nav(query: dict[str, str], total: int, offset: int) -> str:
    def link(label: str, **change: str) -> str:
        q = {**query, **change, "offset": change.get("offset", "0")}
        return f"<a href='/review?{_e(urlencode(q))}'>{label}</a>"

    parts = [link("highest score", sort="score", order="desc"),
             link("lowest score", sort="score", order="asc"),
             link("newest", sort="time", order="desc"), " | ",
             link("open", status="open"), link("decided", status="decided"),
             link("no longer found", status="gone"), link("all", status="all")]  # fmt: skip
    if offset + PAGE_SIZE < total:
        parts.append(link("next page", offset=str(offset + PAGE_SIZE)))
    return f"<nav>{''.join(parts)}</nav>"


def _failures(g: Gallery) -> str:
    """The scans that failed to acquire (an archive's enrollment), newest first."""
    rows = sorted(g.db.failures(), key=lambda r: r["at"], reverse=True) if g.path.exists() else []
    if not rows:
        return ""
    more = (
        f"<p>{len(rows) - MAX_FAILURES} older ones not shown.</p>"
        if len(rows) > MAX_FAILURES
        else ""
    )
    rows = rows[:MAX_FAILURES]
    body = "".join(
        f"<tr><td>{_e(r['source'])}</td><td>{_e(r['code'])}</td>"
        f"<td>{_e(r['reason'])}</td><td>{_e(r['at'])}</td></tr>"
        for r in rows
    )
    return ("<h2>Scans that failed to acquire</h2><table><tr><th>scan</th><th>code</th>"
            f"<th>reason</th><th>at</th></tr>{body}</table>{more}")  # fmt: skip


def worklist(g: Gallery, user: str, csrf: str, nonce: str, query: dict[str, str]) -> str:
    """The page: header, filters, one section per finding, failures to acquire."""
    offset = int(query.get("offset", "0") or 0)
    found, total = g.findings(kind=query.get("kind") or None, status=query["status"],
                              sort=query["sort"], descending=query["order"] == "desc",
                              limit=PAGE_SIZE, offset=offset)  # fmt: skip
    t = g.calibration.describe(DEFAULT_FMR)
    size = g.db.stats() if g.path.exists() else {"patients": 0, "scans": 0}
    sections = "".join(_finding(f, t.threshold) for f in found) or "<p>No findings.</p>"
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><meta name='csrf' content='{_e(csrf)}'>"
        f"<title>ctface review</title><style>{PAGE_STYLE}</style></head><body>"
        f"<form method='post' action='/review/logout' style='float:right'>{_e(user)} "
        "<button type='submit'>Log out</button></form><h1>ctface review</h1>"
        f"<p>Gallery: {size['patients']} patients, {size['scans']} scans. Threshold "
        f"{t.threshold:.3f} for a false-match rate of {DEFAULT_FMR:g} per comparison "
        f"(calibration: {_e(t.calibration)}; {t.fnmr_at_threshold:.1%} of genuine comparisons "
        f"fall below it). Showing {len(found)} of {total} ({_e(query['status'])}).</p>"
        f"{_nav(query, total, offset)}{sections}{_failures(g)}"
        f"<p>Images: frontal face depth (brighter = nearer).</p>"
        f"<script nonce='{nonce}'>{SCRIPT}</script></body></html>"
    )


def _csp(nonce: str) -> dict[str, str]:
    return {"Content-Security-Policy": f"default-src 'self'; img-src 'self' data:; "
            f"script-src 'nonce-{nonce}'; style-src 'unsafe-inline'; frame-ancestors 'none'",
            "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin",
            "Cache-Control": "no-store"}  # fmt: skip


def _same_origin(request: Request) -> None:
    """403 for a form posted from another site's page (a browser names it in Origin)."""
    origin = request.headers.get("origin")
    if origin is not None and urlsplit(origin).netloc != request.headers.get("host"):
        raise ServiceError(403, "forbidden", "a form from another site")


def review_routes(app: FastAPI, svc: Any) -> None:
    from ctface.service.app import COOKIE

    @app.get("/review/login", include_in_schema=False)
    async def login_form() -> HTMLResponse:
        return HTMLResponse(LOGIN.format(style=STYLE, message=""), headers=_csp("none"))

    @app.post("/review/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        _same_origin(request)
        form = await request.form(max_files=0, max_fields=5)
        user = svc.tokens.user(str(form.get("token", "")))
        if user is None:
            page = LOGIN.format(style=STYLE, message="<p class='below'>Unknown token.</p>")
            return HTMLResponse(page, status_code=401, headers=_csp("none"))
        sid, _ = svc.sessions.start(user)
        out = RedirectResponse("/review", status_code=303)
        out.set_cookie(COOKIE, sid, httponly=True, samesite="strict", path="/",
                       secure=request.url.scheme == "https")  # fmt: skip
        return out

    @app.post("/review/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        _same_origin(request)
        svc.sessions.end(request.cookies.get(COOKIE))
        out = RedirectResponse("/review/login", status_code=303)
        out.delete_cookie(COOKIE, path="/")
        return out

    @app.get("/review", include_in_schema=False)
    async def review(
        request: Request,
        sort: str = "score",
        order: str = "desc",
        status: str = "open",
        kind: str = "",
        offset: int = 0,
    ) -> Response:
        session = svc.sessions.get(request.cookies.get(COOKIE), svc.tokens.users())
        if session is None:
            return RedirectResponse("/review/login", status_code=303)
        query = {"sort": sort, "order": "asc" if order == "asc" else "desc", "status": status,
                 "kind": kind, "offset": str(max(0, offset))}  # fmt: skip
        nonce = secrets.token_urlsafe(12)
        page = await svc.in_gallery(lambda g: worklist(g, session.user, session.csrf, nonce,
                                                       query))  # fmt: skip
        return HTMLResponse(page, headers=_csp(nonce))
