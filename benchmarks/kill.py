"""Crash safety at the command level: ``ctface enroll --from-dicom-tags``, ``ctface reconcile``
and ``ctface pacs sync`` killed with SIGKILL at many points, each kill followed by checks and
a rerun of the same command (issue 23).

Run: .venv/bin/python benchmarks/kill.py [--kills 20] [--commands enroll reconcile pacs]
     [--seed 23] [--work DIR]

Data: a phantom DICOM archive (3 people x 2 coarse scans, seed 23), one scan filed under
another patient's ID (S0002_02 as S0001) and one without a PatientID (S0003_02): the
reconciliation has findings and report images to write. ``pacs``: a real Orthanc with DICOMweb
(Debian packages, ``tests/orthanc_server.py``) holding three studies (S0001's rescan, S0002's
rescan filed as S0001, a new patient S0003), a gallery of S0001_01 and S0002_01, ``sync --once
--enroll-confirmed``.

For each command: one uninterrupted reference run (its duration and phase markers measured),
then ``--kills`` trials, each from a fresh state (new gallery / output folder / Orthanc): the
command is started as ``python -m ctface ...`` with ``benchmarks/killhook`` on ``PYTHONPATH``
(phase markers in a log; write transactions held open 0.15 s before COMMIT, files 0.1 s
before their rename, 0.3 s after a STOW's answer, so that kills land inside them), and killed
with SIGKILL (its process only; the orphaned workers are killed after the checks) either at
a seeded random delay spread over the reference run's duration (even trials) or inside a
chosen phase (odd trials: a random occurrence of a write transaction, a file rename, an
acquisition, a pull or the moment after a STOW). After each kill: ``PRAGMA integrity_check``;
the outputs left (reconcile: a findings.json present must be whole and of the same run as
report.html and findings.csv); then the same command again, without markers, to its end; then
the state against the reference: the same scans (digest, series, patient) with none twice,
the same failures, the same findings (reconcile: kind, IDs, suggestion, scans and roles,
scores within 1e-3; gallery findings kept for review), pacs: each CT study recorded once with
the reference's status and decision, one ctface SR per study in Orthanc and the reference's
KOS, no answer left pending. Printed as a table, written to ``benchmarks/results/kill.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
HOOK = ROOT / "benchmarks" / "killhook"
SHARED = ROOT.parent / "shared"
FACE_MODEL = SHARED / "data" / "face_model" / "ict_facekit_light.npz"
HOLDS = {"CTFACE_KILL_HOLD_DB": "0.15", "CTFACE_KILL_HOLD_WRITE": "0.1",
         "CTFACE_KILL_HOLD_STOW": "0.3"}  # fmt: skip
# phases aimed at by the odd trials: (event that opens it, label)
TARGETS = {
    "enroll": [("db-commit", "db write"), ("acquire-start", "acquisition")],
    "reconcile": [("db-commit", "db write"), ("write", "writing outputs"),
                  ("acquire-start", "acquisition")],
    "pacs": [("db-commit", "db write"), ("http-end stow", "after STOW"), ("http pull", "pull"),
             ("acquire-start", "acquisition")],
}  # fmt: skip
COMMANDS = ("enroll", "reconcile", "pacs")


# -- data -----------------------------------------------------------------------------------
PLANTED = {"S0002/S0002_02_dicom": "S0001", "S0003/S0003_02_dicom": ""}  # series: PatientID


def make_archive(folder: Path, seed: int = 23, subjects: int = 3, scans: int = 2,
                 planted: dict[str, str] | None = None) -> Path:  # fmt: skip
    """The phantom archive (module docstring; ``planted``: series whose PatientID is
    rewritten), kept in ``folder/archive`` for later runs."""
    archive = folder / "archive"
    if (archive / "manifest.csv").is_file():
        return archive
    sys.path.insert(0, str(ROOT / "src"))
    import pydicom

    from ctface.phantom.cohort import CohortSpec, generate_cohort
    from ctface.phantom.params import NuisanceConfig

    fast = NuisanceConfig(pixel_mm=(0.9, 1.0), slice_thickness_mm=(2.0, 3.0),
                          p_overlapping_slices=0.0)  # fmt: skip
    generate_cohort(CohortSpec(face_model=str(FACE_MODEL), subjects=subjects, scans_min=scans,
                               scans_max=scans, seed=seed, nuisance=fast, dicom_fraction=1.0),
                    archive)  # fmt: skip
    for name, pid in (PLANTED if planted is None else planted).items():
        for f in sorted((archive / name).glob("*.dcm")):
            ds = pydicom.dcmread(f)
            ds.PatientID = pid
            ds.save_as(f)
    return archive


def series(archive: Path, name: str) -> Path:
    return archive / name[:5] / f"{name}_dicom"


# -- running and killing ----------------------------------------------------------------------
def ctface_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "ctface", *args]


def environment(log: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTFACE_KILL")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "src"),) if p)
    if log is not None:
        env["PYTHONPATH"] = os.pathsep.join((str(HOOK), env["PYTHONPATH"]))
        env["CTFACE_KILL_LOG"] = str(log)
        env.update(HOLDS)
    return env


def events(log: Path) -> list[tuple[float, int, str]]:
    if not log.is_file():
        return []
    out = []
    for line in log.read_text().splitlines():
        parts = line.split(" ", 2)
        if len(parts) == 3:
            out.append((float(parts[0]), int(parts[1]), parts[2]))
    return out


def phase_at(log: Path, main_pid: int, when: float) -> str:
    """What the command was doing at ``when`` (from the markers up to then)."""
    seen = [e for e in events(log) if e[0] <= when]
    mine = [e for e in seen if e[1] == main_pid]
    last = mine[-1][2] if mine else "start"
    labels = {"db-begin": "db write", "db-commit": "db write (before COMMIT)",
              "acquire-start": "acquisition", "http stow": "STOW", "http-end stow": "after STOW",
              "http pull": "pull", "http-end pull": "pull (streaming)",
              "http query": "DICOMweb query"}  # fmt: skip
    if last.startswith("write ") and not last.endswith("-end"):
        return f"writing {last.split(' ', 1)[1]}"
    if last in labels:
        return labels[last]
    workers: dict[int, str] = {}
    for _, pid, ev in seen:
        if pid != main_pid:
            workers[pid] = ev
    if any(ev == "acquire-start" for ev in workers.values()):
        return "acquisition (worker)"
    return "start-up" if last == "start" else "between steps"


@dataclass
class Run:
    code: int | None  # None: killed
    seconds: float
    stdout: str
    stderr: str
    killed_at: float | None = None
    phase: str | None = None


def run(args: list[str], log: Path | None = None, *, kill_after: float | None = None,
        kill_on: tuple[str, int, float] | None = None, timeout: float = 900) -> Run:  # fmt: skip
    """Run ``args``; kill it (SIGKILL) ``kill_after`` seconds after the start, or ``kill_on``
    = (event, n, delay): ``delay`` s after the ``n``-th (0-based) marker ``event`` of the
    command's own process."""
    if log is not None:
        log.unlink(missing_ok=True)
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.time()
        proc = subprocess.Popen(args, stdout=out, stderr=err, env=environment(log), cwd=ROOT,
                                start_new_session=True)  # fmt: skip
        killed = None
        try:
            if kill_after is not None or kill_on is not None:
                killed = _kill_when(proc, t0, log, kill_after, kill_on, timeout)
            proc.wait(timeout=timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)  # the orphaned workers of a killed run
        seconds = time.time() - t0
        out.seek(0)
        err.seek(0)
        result = Run(None if killed is not None else proc.returncode, seconds, out.read(),
                     err.read())  # fmt: skip
    if killed is not None:
        result.killed_at = killed - t0
        result.phase = phase_at(log, proc.pid, killed) if log is not None else None
    return result


def _kill_when(proc: subprocess.Popen[str], t0: float, log: Path | None, after: float | None,
               on: tuple[str, int, float] | None, timeout: float) -> float | None:  # fmt: skip
    """Wait for the moment, SIGKILL the process; the time of the kill (None: it ended first)."""
    deadline = t0 + timeout
    while proc.poll() is None and time.time() < deadline:
        if after is not None and time.time() >= t0 + after:
            break
        if on is not None and log is not None:
            event, n, delay = on
            hits = [
                e
                for e in events(log)
                if e[1] == proc.pid and (e[2] == event or e[2].startswith(event + " "))
            ]
            if event == "acquire-start":  # in a worker too
                hits = [e for e in events(log) if e[2] == event]
            if len(hits) > n:
                time.sleep(max(0.0, hits[n][0] + delay - time.time()))
                break
        time.sleep(0.005)
    if proc.poll() is not None:
        return None
    when = time.time()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return when


# -- state ----------------------------------------------------------------------------------
def integrity(db: Path) -> str:
    """``PRAGMA integrity_check`` of the file (a plain connection: it recovers a WAL)."""
    if not db.exists():
        return "ok (no file yet)"
    with contextlib.closing(sqlite3.connect(db, timeout=30)) as c:
        return str(c.execute("PRAGMA integrity_check").fetchone()[0])


def rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    if not db.exists():
        return []
    with contextlib.closing(sqlite3.connect(db, timeout=30)) as c:
        try:
            return c.execute(sql).fetchall()
        except sqlite3.OperationalError:  # a table not made yet
            return []


def gallery_state(db: Path) -> dict[str, Any]:
    """Scans (patient, digest, series), failures, findings kept for review, pending keys."""
    scans = rows(db, "SELECT patient_id, digest, series_uid, source FROM scans")
    return {
        "scans": sorted((p, d, s or "") for p, d, s, _ in scans),
        "failures": sorted((d, c) for d, c in rows(db, "SELECT digest, code FROM failures")),
        "findings": sorted(
            k for (k,) in rows(db, "SELECT key FROM findings WHERE gone_at IS NULL")
        ),
        "pending": sorted(k for (k,) in rows(db, "SELECT key FROM meta WHERE key LIKE "
                                                 "'x.pacs.answering.%'")),
    }  # fmt: skip


def compare_scans(state: dict[str, Any], ref: dict[str, Any]) -> tuple[int, int, list[str]]:
    """(duplicates, lost, differences) of the gallery against the reference's: a scan twice
    is a digest or a series UID on two rows."""
    got, want = state["scans"], ref["scans"]
    digests = [d for _, d, _ in got]
    uids = [s for _, _, s in got if s]
    dup = (len(digests) - len(set(digests))) + (len(uids) - len(set(uids)))
    lost = len(set(want) - set(got))
    diffs = []
    if set(got) != set(want):
        diffs.append(f"scans differ: extra {sorted(set(got) - set(want))[:3]}, "
                     f"missing {sorted(set(want) - set(got))[:3]}")  # fmt: skip
    for key in ("failures", "findings", "pending"):
        if state[key] != ref[key]:
            diffs.append(f"{key} differ: {state[key][:3]} vs {ref[key][:3]}")
    return dup, lost, diffs


# -- the commands -----------------------------------------------------------------------------
@dataclass
class Scenario:
    """One command: how to make a fresh state, its arguments, and how to check the result."""

    name: str
    work: Path
    archive: Path
    args: list[str] = field(default_factory=list)
    db: Path = Path()
    out: Path | None = None
    orthanc: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    def fresh(self) -> None:
        for p in (self.db, self.db.with_name(self.db.name + "-wal"),
                  self.db.with_name(self.db.name + "-shm")):  # fmt: skip
            p.unlink(missing_ok=True)
        if self.out is not None and self.out.exists():
            shutil.rmtree(self.out)
        if self.name == "pacs":
            shutil.copy(self.extra["base_db"], self.db)
            self.extra["restart_orthanc"]()

    def state(self) -> dict[str, Any]:
        s = gallery_state(self.db)
        if self.name == "reconcile":
            s["report"] = reconcile_findings(self.out)
        if self.name == "pacs":
            studies = rows(self.db, "SELECT study_uid, status, header_patient_id, decision "
                           "FROM pacs_studies")  # fmt: skip
            s["studies"] = sorted(
                (u, st, h or "", (json.loads(d) or {}).get("patient_id") if d else None)
                for u, st, h, d in studies
            )
            s["orthanc"] = self.extra["answers"]()
        return s


def reconcile_findings(out: Path | None) -> Any:
    """The findings of ``OUT/findings.json`` without run-specific values (scan keys, paths),
    with scores; None when there is no findings.json."""
    if out is None or not (out / "findings.json").is_file():
        return None
    doc = json.loads((out / "findings.json").read_text())
    return sorted(
        (
            f["kind"],
            tuple(f["patient_ids"]),
            f["suggested_patient_id"] or "",
            tuple(sorted((s["role"], s["series_uid"] or "") for s in f["scans"])),
            f["score"],
        )
        for f in doc["findings"]
    )


def outputs_whole(out: Path | None) -> str | None:
    """A problem with what a killed reconcile left in ``out``, or None: a findings.json
    present is whole JSON and of the same run as findings.csv and report.html."""
    if out is None or not (out / "findings.json").exists():
        return None
    try:
        doc = json.loads((out / "findings.json").read_text())
    except ValueError as e:
        return f"findings.json is not whole: {e}"
    for name in ("findings.csv", "report.html"):
        if not (out / name).is_file():
            return f"findings.json without {name}"
    csv_rows = (out / "findings.csv").read_text().splitlines()[1:]
    if len(csv_rows) != sum(len(f["scans"]) for f in doc["findings"]):
        return "findings.csv is of another run than findings.json"
    n = len(doc["findings"])
    if f"<b>{n} findings</b>" not in (out / "report.html").read_text() and n:
        return "report.html is of another run than findings.json"
    return None


def same_report(got: Any, want: Any) -> bool:
    if got is None or want is None or len(got) != len(want):
        return got == want
    return all(a[:4] == b[:4] and abs(a[4] - b[4]) <= 1e-3 for a, b in zip(got, want, strict=True))


@contextlib.contextmanager
def scenario(name: str, work: Path, archive: Path) -> Iterator[Scenario]:
    """The command's scenario (pacs: Orthanc running for its duration)."""
    folder = work / name
    folder.mkdir(parents=True, exist_ok=True)
    sc = Scenario(name, folder, archive, db=folder / "gallery.db")
    if name == "enroll":
        sc.args = ["enroll", str(archive), "--from-dicom-tags", "--db", str(sc.db), "--json"]
        yield sc
    elif name == "reconcile":
        sc.out = folder / "out"
        sc.db = sc.out / "archive.db"
        sc.args = ["reconcile", str(archive), "--out", str(sc.out), "--jobs", "2", "--json"]
        yield sc
    else:
        with pacs_scenario(sc) as s:
            yield s


@contextlib.contextmanager
def pacs_scenario(sc: Scenario) -> Iterator[Scenario]:
    sys.path.insert(0, str(ROOT / "tests"))
    import orthanc_server as osrv
    import pydicom
    import requests

    base = sc.work / "base.db"
    if not base.exists():
        for pid in ("S0001", "S0002"):
            r = run(ctface_cmd("enroll", str(series(sc.archive, f"{pid}_01")), "--patient-id", pid,
                               "--db", str(base)))  # fmt: skip
            assert r.code == 0, r.stderr
        for suffix in ("-wal", "-shm"):
            assert not base.with_name(base.name + suffix).exists()
    studies = [series(sc.archive, n) for n in ("S0001_02", "S0002_02", "S0003_01")]
    files = [f for s in studies for f in sorted(s.glob("*.dcm"))]
    uids = [str(pydicom.dcmread(sorted(s.glob("*.dcm"))[0], stop_before_pixels=True)
                .StudyInstanceUID) for s in studies]  # fmt: skip
    holder: dict[str, Any] = {}

    def restart() -> None:
        if "cm" in holder:
            holder["cm"].__exit__(None, None, None)
        folder = sc.work / "orthanc"
        if folder.exists():
            shutil.rmtree(folder)
        holder["cm"] = osrv.running_orthanc(folder)
        o = holder["cm"].__enter__()
        sc.orthanc = o
        osrv.upload(o, files)
        osrv.wait_stable(o)
        sc.args = ["pacs", "sync", "--dicomweb", o.dicomweb_url, "--orthanc", o.url, "--db",
                   str(sc.db), "--once", "--enroll-confirmed", "--json"]  # fmt: skip

    def answers() -> list[tuple[str, int, int]]:
        """(study UID, ctface SRs, KOS) in Orthanc."""
        out = []
        for uid in uids:
            found = requests.get(f"{sc.orthanc.dicomweb_url}/studies/{uid}/series",
                                 timeout=30).json()  # fmt: skip
            sr = sum(1 for s in found if s.get("00080060", {}).get("Value") == ["SR"])
            ko = sum(1 for s in found if s.get("00080060", {}).get("Value") == ["KO"])
            n_sr = 0
            for s in found:
                if s.get("00080060", {}).get("Value") == ["SR"]:
                    suid = s["0020000E"]["Value"][0]
                    inst = requests.get(f"{sc.orthanc.dicomweb_url}/studies/{uid}/series/{suid}"
                                        "/instances", timeout=30).json()  # fmt: skip
                    n_sr += len(inst)
            out.append((uid, max(sr, n_sr), ko))
        return out

    sc.extra = {"base_db": base, "restart_orthanc": restart, "answers": answers}
    try:
        yield sc
    finally:
        if "cm" in holder:
            holder["cm"].__exit__(None, None, None)


# -- a campaign -------------------------------------------------------------------------------
def campaign(sc: Scenario, kills: int, seed: int, say: Callable[[str], None] = print,
             aims: list[str] | None = None) -> dict[str, Any]:  # fmt: skip
    """The reference run, then ``kills`` killed runs each checked and rerun (module
    docstring); the figures for kill.json. ``aims``: each trial's marker event (of
    ``TARGETS``) or "random", instead of alternating."""
    t_start = time.time()
    sc.fresh()
    log = sc.work / "markers.log"
    ref_run = run(ctface_cmd(*sc.args), log)
    assert ref_run.code == 0, ref_run.stderr[-2000:]
    ref = sc.state()
    ref_events = events(log)
    duration = ref_run.seconds
    if sc.name == "pacs":
        assert all(n == 1 for _, n, _ in ref["orthanc"]), ref["orthanc"]
    say(f"{sc.name}: reference run {duration:.1f} s, {len(ref['scans'])} scans")
    rng = random.Random(f"{seed}-{sc.name}")
    trials = []
    for i in range(kills):
        sc.fresh()
        aim_event = aims[i] if aims is not None else None
        if aim_event == "random" or (aim_event is None and i % 2 == 0):
            plan: dict[str, Any] = {"kill_after": rng.uniform(0.03, 0.85) * duration}
            aim = f"random {plan['kill_after']:.1f} s"
        else:
            targets = TARGETS[sc.name]
            if aim_event is None:
                event, label = targets[(i // 2) % len(targets)]
            elif aim_event.startswith("write "):  # the rename of one file: "write report.html"
                event, label = aim_event, f"writing {aim_event.split(' ', 1)[1]}"
            else:
                event, label = next(t for t in targets if t[0] == aim_event)
            n_seen = sum(1 for e in ref_events if e[2] == event or e[2].startswith(event + " "))
            n = rng.randrange(max(n_seen, 1))
            hold = {"db-commit": 0.15, "http-end stow": 0.3}.get(event, 0.5)
            hold = 0.1 if event.startswith("write") else hold
            plan = {"kill_on": (event, n, rng.uniform(0.0, 0.8) * hold)}
            aim = f"{label} #{n + 1}"
        killed = run(ctface_cmd(*sc.args), log, **plan)
        for _ in range(3):  # it ended before the kill (a faster run than the reference): again
            if killed.killed_at is not None:
                break
            sc.fresh()
            if "kill_after" in plan:
                plan["kill_after"] *= 0.6
                aim = f"random {plan['kill_after']:.1f} s"
            else:
                plan["kill_on"] = (plan["kill_on"][0], 0, plan["kill_on"][2])
                aim = aim.split(" #")[0] + " #1"
            killed = run(ctface_cmd(*sc.args), log, **plan)
        check = integrity(sc.db)
        left = outputs_whole(sc.out) if sc.name == "reconcile" else None
        rerun = run(ctface_cmd(*sc.args))
        state = sc.state()
        dup, lost, diffs = compare_scans(state, ref)
        if sc.name == "reconcile" and not same_report(state["report"], ref["report"]):
            diffs.append(f"findings differ: {state['report']} vs {ref['report']}")
        if sc.name == "reconcile":
            stale = [p.name for p in sc.out.rglob(".*.tmp*")] if sc.out else []
            if stale:
                diffs.append(f"temporary files left: {stale[:3]}")
        if sc.name == "pacs":
            if state["studies"] != ref["studies"]:
                diffs.append(f"studies differ: {state['studies']} vs {ref['studies']}")
            if state["orthanc"] != ref["orthanc"]:
                diffs.append(f"answers in Orthanc differ: {state['orthanc']} vs {ref['orthanc']}")
            dup += sum(max(0, n - 1) for _, n, _ in state["orthanc"])
            lost += sum(1 for _, n, _ in state["orthanc"] if n == 0)
        if left:
            diffs.append(left)
        trial = {
            "trial": i + 1, "aim": aim,
            "killed_at_s": None if killed.killed_at is None else round(killed.killed_at, 2),
            "phase": killed.phase or "ended before the kill",
            "integrity": check, "outputs_left": left or "ok",
            "rerun_exit": rerun.code, "rerun_s": round(rerun.seconds, 1),
            "duplicates": dup, "lost": lost, "differences": diffs,
        }  # fmt: skip
        if rerun.code != 0:
            trial["rerun_stderr"] = rerun.stderr[-500:]
        trials.append(trial)
        say(f"  {sc.name} #{i + 1:2d} {aim:22s} killed at {trial['killed_at_s']} s "
            f"({trial['phase']}): integrity {check}, rerun exit {rerun.code}, dup {dup}, "
            f"lost {lost}{', ' + '; '.join(diffs) if diffs else ''}")  # fmt: skip
    killed_n = sum(1 for t in trials if t["killed_at_s"] is not None)
    return {
        "command": "python -m ctface " + " ".join(_portable(a) for a in sc.args),
        "reference_run_s": round(duration, 1),
        "kills": killed_n,
        "trials": len(trials),
        "integrity_ok": sum(1 for t in trials if t["integrity"].startswith("ok")),
        "reruns_completed": sum(1 for t in trials if t["rerun_exit"] == 0),
        "duplicates": sum(t["duplicates"] for t in trials),
        "lost": sum(t["lost"] for t in trials),
        "matching_reference": sum(1 for t in trials if not t["differences"]),
        "phases": sorted({t["phase"] for t in trials}),
        "total_s": round(time.time() - t_start, 1),
        "kill_log": trials,
    }


def _portable(arg: str) -> str:
    """An argument without machine paths (the work folder, Orthanc's port)."""
    if arg.startswith("http://127.0.0.1:"):
        rest = arg.split(":", 2)[2]
        return "http://127.0.0.1:PORT" + rest[len(rest.split("/", 1)[0]) :]
    if arg.startswith("/"):
        parts = Path(arg).parts
        return "WORK/" + "/".join(parts[-2:]) if len(parts) > 2 else arg
    return arg


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--commands", nargs="+", default=list(COMMANDS), choices=COMMANDS)
    ap.add_argument("--seed", type=int, default=23)
    ap.add_argument("--work", type=Path, default=None, help="Keep the data here (default: temp).")
    ap.add_argument("--out", type=Path, default=RESULTS / "kill.json")
    ap.add_argument("--aims", nargs="+", default=None,
                    help='Each trial\'s aim instead of alternating: "random", a marker event '
                    '("db-commit", "acquire-start", ...) or "write NAME" (one file\'s rename); '
                    "the results are kept as COMMAND+aims.")  # fmt: skip
    a = ap.parse_args()
    work = a.work or Path(tempfile.mkdtemp(prefix="ctface-kill-"))
    t0 = time.time()
    archive = make_archive(work)
    generation = time.time() - t0
    results: dict[str, Any] = {}
    if a.out.is_file():  # an earlier run's other commands, same settings: kept
        before = json.loads(a.out.read_text())
        if before.get("seed") == a.seed:
            results = {
                k: v
                for k, v in before["results"].items()
                if k not in [c + ("+aims" if a.aims else "") for c in a.commands]
            }
    for command in a.commands:
        name = command + ("+aims" if a.aims else "")
        with scenario(command, work, archive) as sc:
            kills = len(a.aims) if a.aims else a.kills
            results[name] = campaign(sc, kills, a.seed, aims=a.aims)
            results[name]["run_as"] = "python benchmarks/kill.py" + "".join(
                f" {x}" for x in sys.argv[1:]
            ).replace(str(work), "WORK")
        doc = {"benchmark": "kill", "command": "python benchmarks/kill.py" + "".join(
                   f" {x}" for x in sys.argv[1:]).replace(str(work), "WORK"),
               "seed": a.seed, "kills_per_command": a.kills,
               "data": "3 phantom people x 2 coarse DICOM scans (seed 23), S0002_02 filed as "
                       "S0001, S0003_02 without PatientID; pacs: 3 studies in Orthanc",
               "phantom_generation_s": round(generation, 1), "cpus": os.cpu_count(),
               "results": results}  # fmt: skip
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(doc, indent=1) + "\n")
    print_table(results)
    if a.work is None:
        shutil.rmtree(work, ignore_errors=True)


def print_table(results: dict[str, Any]) -> None:
    head = ("command", "kills", "integrity ok", "reruns ok", "duplicates", "lost",
            "= reference", "total s")  # fmt: skip
    print(" | ".join(head))
    for name, r in results.items():
        print(" | ".join(str(x) for x in (name, r["kills"], r["integrity_ok"],
                                           r["reruns_completed"], r["duplicates"], r["lost"],
                                           r["matching_reference"], r["total_s"])))  # fmt: skip
        print(f"  rerun: {r['command']}")


if __name__ == "__main__":
    main()
