"""The library API: a handful of verbs over the pipeline's dataclasses.

One scan goes ``load_ct`` -> ``detect_landmarks`` -> ``render_face`` -> ``face_template``; a
``Gallery`` enrolls templates under patient IDs and answers ``identify`` (1:N, open set) and
``verify`` (1:1) at a calibrated false-match rate. ``face_template`` runs the whole chain with
the quality gate; the three steps before it are there for a caller who wants to look at, or
replace, one stage. The command line and the service call these verbs and print.

The recognition model and the shipped calibration are read once per process and kept
(``default_model``); every verb takes ``model=`` (a loaded ``FaceEmbedder`` or a weights file)
to use another one.

Example (identify a rescan)::

    import ctface
    gallery = ctface.Gallery.open("gallery.db")
    gallery.enroll(["S0001_01/"], patient_id="S0001")
    result = gallery.identify("S0001_02.nii.gz")
    print(result.patient_id, result.candidates[0].score)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np

from ctface.errors import GalleryError, InvalidInputError

if TYPE_CHECKING:
    from ctface.deid.deface_scan import DefaceResult
    from ctface.embed.embedder import FaceEmbedder, Template
    from ctface.gallery.acquire import Acquisition
    from ctface.gallery.calibration import Calibration
    from ctface.gallery.decide import Identification, Verification
    from ctface.gallery.enroll import LazyGallery
    from ctface.gallery.reconcile import Reconciliation
    from ctface.gallery.records import Outcome
    from ctface.gallery.review import DecisionRecord, ReviewFinding
    from ctface.gallery.store import GalleryDatabase
    from ctface.ingest.archive import ArchiveScan
    from ctface.ingest.volume import CtVolume
    from ctface.landmarks.detect import LandmarkSet
    from ctface.landmarks.frame import FaceFrame
    from ctface.render.depth import FaceRendering

    ModelLike: TypeAlias = FaceEmbedder | str | Path | None
    CalibrationLike: TypeAlias = Calibration | str | Path | None
    Probe: TypeAlias = str | Path | CtVolume | Template | Acquisition | np.ndarray
    EnrollItem: TypeAlias = str | Path | ArchiveScan | CtVolume | Acquisition

DEFAULT_FMR = 1e-3  # the shipped calibration's operating point (ctface.gallery.DEFAULT_FMR)


def load_ct(path: str | Path, *, series_uid: str | None = None) -> CtVolume:
    """Read a head CT and bring it to the canonical grid.

    Parameters
    ----------
    path : str or Path
        A DICOM folder (any layout, several series allowed) or file, NIfTI (.nii, .nii.gz),
        NRRD (.nrrd, .nhdr) or MetaImage (.mha, .mhd).
    series_uid : str, optional
        The DICOM SeriesInstanceUID to read when the folder holds several series (default:
        the automatic choice, which prefers a soft-tissue axial series covering the face).

    Returns
    -------
    CtVolume
        Hounsfield units ``hu[k, j, i]`` (int16) cropped to the head, on an isotropic 1 mm
        grid in LPS orientation, with the source geometry and metadata kept.

    Raises
    ------
    InvalidInputError
        The path does not exist or is not a readable CT (one-line reason).
    NoFaceError
        The volume holds no head (nothing of body density).
    """
    from ctface.ingest.reader import load_ct as load

    return load(path, series_uid=series_uid)


def detect_landmarks(volume: CtVolume, *, method: str = "auto") -> LandmarkSet:
    """The five facial landmarks of a CT (CT-FAN, cross-checked by the face-model fit where it
    is unsure).

    Parameters
    ----------
    volume : CtVolume
        From ``load_ct``.
    method : {"auto", "ct-fan", "surface-fit"}
        ``auto``: CT-FAN, cross-checked by fitting the face model to the skin unless CT-FAN is
        sure of every landmark (``CrossCheck.SKIPPED``), the fit alone where CT-FAN is lost;
        or one method alone.

    Returns
    -------
    LandmarkSet
        Eye centres, nose tip and mouth corners in patient LPS mm (``.ras`` for RAS), each
        with a confidence in 0..1; a landmark outside the field of view has ``lps`` None and a
        reason. ``.frame()`` is the face frame rendering uses.

    Raises
    ------
    NoFaceError
        No face in the field of view.
    InvalidInputError
        An unknown ``method``.
    MissingDataError
        The CT-FAN weights are missing (``surface-fit`` and the cross-check need the face
        model instead; without it ``auto`` runs CT-FAN alone).
    """
    from ctface.landmarks.detect import detect_landmarks as detect

    if method not in ("auto", "ct-fan", "surface-fit"):
        raise InvalidInputError(f"unknown landmark method {method!r} (auto, ct-fan, surface-fit)")
    return detect(volume, method)  # type: ignore[arg-type]


def render_face(volume: CtVolume, *, landmarks: LandmarkSet | None = None) -> FaceRendering:
    """Depth images of the face from the paper's 90 head poses (pitch +-20 deg, roll +-25 deg).

    Parameters
    ----------
    volume : CtVolume
        From ``load_ct``.
    landmarks : LandmarkSet, optional
        Where the face is (default: ``detect_landmarks(volume)``, or the geometric face
        locator when the landmarks find no face).

    Returns
    -------
    FaceRendering
        ``depth_mm`` (90, 256, 256) float32, mm above the reference plane 100 mm behind the
        nose tip (NaN = background) over a 220 mm field, the normalized uint8 images, the
        views, the face frame and the face region (visible parts, soft tissue under the skin).

    Raises
    ------
    NoFaceError
        No skin surface in front of the face.
    """
    from ctface.render.depth import render_face as render

    frame: FaceFrame | None = landmarks.frame() if landmarks is not None else None
    return render(volume, frame=frame)


def face_template(
    scan: str | Path | CtVolume, *, model: ModelLike = None, series_uid: str | None = None
) -> Template:
    """The face template of one scan: load, landmarks, 90 depth views, quality gate, embedding.

    Parameters
    ----------
    scan : str, Path or CtVolume
        A CT file or DICOM folder (as ``load_ct`` reads), or a volume already loaded.
    model : FaceEmbedder, str or Path, optional
        The recognition model, or its weights file (default: the shipped model).
    series_uid : str, optional
        The DICOM series to read (paths only; ignored for a loaded volume).

    Returns
    -------
    Template
        ``vector``: (128,) float32 unit vector; two scans' similarity is the dot product of
        their vectors (-1..1). Also the number of views, the model version and the share of
        the image the face separation kept.

    Raises
    ------
    FailureToAcquire
        The quality gate refused the scan; ``code`` says why (``no-face``, ``thick-slices``,
        ``face-incomplete``, ``face-covered``, ``no-soft-tissue``, ``no-skull``).
    InvalidInputError
        The scan cannot be read.
    MissingDataError
        The model weights are missing or unreadable.
    """
    from ctface.gallery.acquire import acquire as run

    return run(scan, resolve_model(model), series_uid=series_uid, digest=False).template


def acquire(
    scan: str | Path | CtVolume | ArchiveScan,
    *,
    model: ModelLike = None,
    series_uid: str | None = None,
    digest: bool = True,
) -> Acquisition:
    """``face_template`` with what the gallery keeps about the scan: its record (content
    digest, DICOM UIDs, acquisition metadata, quality measures), the frontal depth image and
    the seconds each stage took. Same parameters and errors as ``face_template``;
    ``digest=False`` leaves the record's digest empty (it is only needed to enroll the scan)."""
    from ctface.gallery.acquire import acquire as run

    return run(scan, resolve_model(model), series_uid=series_uid, digest=digest)


def deface(
    scan: str | Path,
    out: str | Path,
    *,
    method: str = "remove",
    ears: bool = False,
    series_uid: str | None = None,
    qc_dir: str | Path | None = None,
) -> DefaceResult:
    """Deface one head CT and write it, de-identified, in its own format into ``out``.

    Parameters
    ----------
    scan : str or Path
        A DICOM folder or file (classic single-frame CT series), NIfTI, NRRD or MetaImage.
    out : str or Path
        The output folder: ``out/<name>`` (a DICOM folder, or a file named like the source).
    method : {"remove", "reface"}
        ``remove``: the face's soft tissue (forehead to chin, nose, lips, cheeks, eyelids)
        becomes air; ``reface``: it is replaced by a generic face (the face model's mean shape at
        its own size, placed by the scan's landmarks).
    ears : bool
        Also remove the outer ears.
    series_uid : str, optional
        The DICOM series to read when the folder holds several.
    qc_dir : str or Path, optional
        Write ``qc_dir/<name>.png`` (before/after frontal skin and sagittal slices). Its
        "before" half shows the face: keep it out of what is shared.

    Returns
    -------
    DefaceResult
        The output path, what was changed (ml of tissue removed, generic face added), the
        landmarks the face was found by, and the seconds each stage took.

    Raises
    ------
    NoFaceError
        The face was not found whole (a landmark missing): nothing is written.
    InvalidInputError
        The scan cannot be read, or is an enhanced multi-frame DICOM file, or ``method`` is
        unknown.
    OutputError
        ``out`` cannot be written, or the output already exists there.
    """
    from ctface.deid.deface import DefaceMethod
    from ctface.deid.deface_scan import deface_scan

    try:
        chosen = DefaceMethod(method)
    except ValueError:
        raise InvalidInputError(f"unknown deface method {method!r} (remove, reface)") from None
    return deface_scan(scan, out, chosen, ears=ears, series_uid=series_uid, qc_dir=qc_dir)


def default_model() -> FaceEmbedder:
    """The shipped recognition model (``embed/weights/embedder.pt``, its model card beside it),
    read once per process; ``.version`` names it in templates and galleries.

    Raises
    ------
    MissingDataError
        The weights file is missing or unreadable.
    """
    return resolve_model(None)


def resolve_model(model: ModelLike = None) -> FaceEmbedder:
    """``model`` itself when it is a loaded model, else the weights file it names (default:
    the shipped one), read once per process."""
    from ctface.embed.embedder import FaceEmbedder, cached_model

    return model if isinstance(model, FaceEmbedder) else cached_model(model)


@lru_cache(maxsize=4)
def _calibration_file(path: str) -> Calibration:
    from ctface.gallery.calibration import Calibration

    return Calibration.load(Path(path) if path else None)


def verify(
    a: Probe,
    b: Probe,
    *,
    fmr: float = DEFAULT_FMR,
    model: ModelLike = None,
    calibration: CalibrationLike = None,
) -> Verification:
    """Are two scans the same person? (1:1, no gallery)

    Parameters
    ----------
    a, b : scan path, CtVolume, Template, Acquisition or template vector
        Scans are acquired (``face_template``) first.
    fmr : float
        False-match rate (per comparison) the decision threshold is set to, e.g. 1e-3.
    model : FaceEmbedder, str or Path, optional
        The recognition model (default: the shipped one).
    calibration : Calibration, str or Path, optional
        Genuine and impostor scores the threshold comes from (default: the shipped
        calibration of the shipped model).

    Returns
    -------
    Verification
        ``score`` (-1..1), ``same_person``, the threshold used and the measured FMR and FNMR
        at this score.

    Raises
    ------
    FailureToAcquire
        A scan was refused by the quality gate.
    InvalidInputError
        ``fmr`` outside what the calibration can measure.
    GalleryError
        The calibration belongs to another model.
    """
    from ctface.gallery.decide import verify as decide

    m = resolve_model(model)
    cal = resolve_calibration(calibration, m.version)
    cal.threshold(fmr)  # an impossible FMR fails before the slow work
    return decide(_vector(a, m), _vector(b, m), cal, fmr)


def resolve_calibration(calibration: CalibrationLike, version: str) -> Calibration:
    """``calibration`` itself, else the file it names (default: the shipped one, read once
    per process); GalleryError when it belongs to another model than ``version``."""
    from ctface.gallery.calibration import Calibration

    if isinstance(calibration, Calibration):
        cal = calibration
    else:
        cal = _calibration_file(str(Path(calibration).resolve()) if calibration else "")
    cal.check_model(version)
    return cal


def _engine(name: Any) -> Any:
    """The ``jobs.Engine`` named (InvalidInputError for an unknown one)."""
    from ctface.jobs import Engine

    try:
        return Engine(str(name))
    except ValueError:
        choices = ", ".join(e.value for e in Engine)
        raise InvalidInputError(f"unknown engine {name!r} ({choices})") from None


def _vector(probe: Probe, model: FaceEmbedder) -> np.ndarray:
    """A probe's template vector; scans are acquired through the quality gate."""
    from ctface.embed.embedder import Template
    from ctface.gallery.acquire import Acquisition

    if isinstance(probe, Acquisition):
        probe = probe.template
    if isinstance(probe, Template):
        if probe.model_version != model.version:
            raise GalleryError(
                f"the template was made by model {probe.model_version}, not {model.version}"
            )
        return probe.vector
    if isinstance(probe, np.ndarray):  # no model version to check: the caller vouches for it
        v = np.asarray(probe, dtype=np.float32)
        dim = model.config.embedding_dim
        if v.shape != (dim,) or not np.all(np.isfinite(v)):
            raise InvalidInputError(f"a template vector has {dim} finite numbers, not {v.shape}")
        if not np.isclose(np.linalg.norm(v), 1.0, atol=1e-3):
            raise InvalidInputError("a template vector must be unit-length")
        return v
    return face_template(probe, model=model).vector


class Gallery:
    """Enrolled patients' face templates (one SQLite file) and the decisions made with them.

    Open with ``Gallery.open(path)``; use as a context manager, or call ``close``. The file is
    created by the first enrollment, never by a failed one. Decisions use the gallery's own
    calibration (``ctface calibrate --gallery``) when it is for this model, else the shipped
    one (``calibration_note`` says so), or the one given.
    """

    def __init__(
        self,
        path: Path,
        *,
        model: ModelLike = None,
        calibration: CalibrationLike = None,
    ) -> None:
        self.path = path
        self._handle: LazyGallery | None = None  # opened on first use
        self._model_arg, self._calibration_arg = model, calibration
        self.calibration_note: str | None = None  # why the shipped calibration is used

    @classmethod
    def open(
        cls,
        path: str | Path | None = None,
        *,
        model: ModelLike = None,
        calibration: CalibrationLike = None,
    ) -> Gallery:
        """A gallery file (default: ``$CTFACE_GALLERY``, else
        ``~/.local/share/ctface/gallery.db``); it need not exist before ``enroll``.

        Parameters
        ----------
        path : str or Path, optional
            The database file.
        model : FaceEmbedder, str or Path, optional
            The recognition model (default: the shipped one). A gallery holds templates of one
            model only.
        calibration : Calibration, str or Path, optional
            The decision calibration (default: the gallery's own, else the shipped one).

        Raises
        ------
        GalleryError
            The file is not a ctface gallery.
        """
        from ctface.gallery.store import default_path

        return cls(Path(path) if path is not None else default_path(), model=model,
                   calibration=calibration)  # fmt: skip

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the database file (a closed gallery opens it again when next used)."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def _lazy(self) -> LazyGallery:
        """The database handle: the file opened if it exists, created by the first write."""
        if self._handle is None or self._handle.existing is None:
            from ctface.gallery.enroll import LazyGallery

            self._handle = LazyGallery(self.path)  # opens the file if it exists by now
        return self._handle

    @property
    def db(self) -> GalleryDatabase:
        """The database: patients, scans, templates, failures, stats.

        Raises
        ------
        MissingDataError
            There is no gallery at ``path`` yet.
        """
        from ctface.gallery.store import missing_gallery

        existing = self._lazy().existing
        if existing is None:
            raise missing_gallery(self.path)
        return existing

    @property
    def model(self) -> FaceEmbedder:
        """The recognition model this gallery's templates are made with (the one given to
        ``open``, else the shipped one), read once per process. MissingDataError when its
        weights are missing or unreadable."""
        return resolve_model(self._model_arg)

    @property
    def calibration(self) -> Calibration:
        """The calibration decisions use now: the one given to ``open``, else the gallery's
        own (``ctface calibrate --gallery``) when it is for this model, else the shipped one
        (``calibration_note`` then says why). Read again at every use: a calibration stored
        meanwhile is used.

        Raises
        ------
        GalleryError
            The given or shipped calibration belongs to another model.
        MissingDataError
            The calibration file is missing or unreadable.
        """
        version = self.model.version
        existing = self._lazy().existing
        stored = existing.calibration() if self._calibration_arg is None and existing else None
        self.calibration_note = None
        if stored is not None and stored.model_version == version:
            return stored
        if stored is not None:
            self.calibration_note = (f"the gallery's calibration is for model "
                                     f"{stored.model_version}, not {version}: using the "
                                     "shipped one")  # fmt: skip
        return resolve_calibration(self._calibration_arg, version)

    def enroll(
        self,
        scans: EnrollItem | Iterable[EnrollItem],
        patient_id: str,
        *,
        jobs: int = 1,
        on_outcome: Callable[[Outcome, Acquisition | None], None] | None = None,
    ) -> list[Outcome]:
        """Store one template per scan under ``patient_id``.

        Parameters
        ----------
        scans : path, CtVolume, Acquisition, or an iterable of them
            CT scans (as ``load_ct`` reads them, loaded volumes, or scans ``acquire`` made
            already), one template each.
        patient_id : str
            The patient they belong to.
        jobs : int
            Worker processes.
        on_outcome : callable, optional
            Called with each scan's outcome as it finishes (progress).

        Returns
        -------
        list of Outcome
            One per scan, in order: ``status`` enrolled, already-enrolled or failed (with the
            failure-to-acquire ``code`` and ``reason``). A failed scan is not stored; the
            gallery file is created by the first scan that is.

        Raises
        ------
        InvalidInputError
            Empty patient ID.
        GalleryError
            The gallery holds another model's templates.
        """
        pid = patient_id.strip()
        if not pid:
            raise InvalidInputError("the patient ID is empty")
        if isinstance(scans, str | os.PathLike) or not isinstance(scans, Iterable):
            items: list[Any] = [scans]  # one scan: a path, an archive scan, a volume, ...
        else:
            items = list(scans)
        return self._enroll([(s, pid) for s in items], jobs, False, False, on_outcome)

    def enroll_archive(
        self,
        items: Sequence[tuple[ArchiveScan, str]],
        *,
        jobs: int = 1,
        retry_failed: bool = False,
        record_failures: bool = True,
        on_outcome: Callable[[Outcome, Acquisition | None], None] | None = None,
        engine: str = "local",
        address: str | None = None,
    ) -> list[Outcome]:
        """Enroll an archive's studies, each under its patient ID.

        Parameters
        ----------
        items : sequence of (ArchiveScan or path, patient ID)
            From ``ingest.archive.list_archive`` (one CT per study, under its DICOM
            PatientID); plain paths may be mixed in.
        jobs : int
            Worker processes.
        retry_failed : bool
            Acquire again the scans that failed in an earlier run (skipped by default).
        record_failures : bool
            Record failures in the gallery (by content digest), so a rerun skips them.
        on_outcome : callable, optional
            Called with each scan's outcome as it finishes.
        engine : {"local", "dask", "ray"}
            Where the scans are processed: worker processes here, or a Dask or Ray cluster
            (``address``, else a local one started for the run) whose workers keep the model
            loaded. A scan whose worker dies is retried once, then recorded as failed.
        address : str, optional
            The cluster's scheduler (Dask) or head node (Ray) address.

        Returns
        -------
        list of Outcome
            One per item, in order. Resumable: scans already enrolled are recognized by the
            digest of their files before any work.

        Raises
        ------
        GalleryError
            The gallery holds another model's templates.
        InvalidInputError
            An unknown engine.
        """
        return self._enroll(list(items), jobs, record_failures, retry_failed, on_outcome,
                            _engine(engine), address)  # fmt: skip

    def _enroll(
        self,
        items: list[Any],
        jobs: int,
        record_failures: bool,
        retry_failed: bool,
        on_outcome: Callable[[Outcome, Acquisition | None], None] | None,
        engine: Any = "local",
        address: str | None = None,
    ) -> list[Outcome]:
        from ctface.gallery.enroll import enroll

        return enroll(self._lazy(), items, self.model, jobs=jobs, on_outcome=on_outcome,
                      record_failures=record_failures, retry_failed=retry_failed,
                      engine=_engine(engine), address=address)  # fmt: skip

    def reconcile(self, *, fmr: float | None = None, all_splits: bool = False) -> Reconciliation:
        """The gallery's scans checked against their patient IDs: scans filed under the wrong
        patient (``split``), patients under two IDs (``merge``) and whom the scans without an
        ID belong to (``unlabeled``), strongest evidence first (``gallery.reconcile``).

        Parameters
        ----------
        fmr : float, optional
            False-match rate per comparison of merges and suggested IDs (default: ten over the
            number of comparisons, at most 1e-3: at most ten false matches expected).
        all_splits : bool
            List the splits whose odd scans match no other patient even where more than 10
            false ones are expected (a large archive); by default they are only counted.

        Returns
        -------
        Reconciliation
            ``findings``, the thresholds and the expected number of false findings
            (``levels``), each finding's scans as rows of the gallery's templates
            (``scan_keys``).

        Raises
        ------
        MissingDataError, GalleryError
            No gallery, an empty one, or another model's.
        InvalidInputError
            ``fmr`` not between 0 and 1.
        """
        from ctface.gallery.reconcile import reconcile as run

        if fmr is not None and not 0.0 < fmr < 1.0:
            raise InvalidInputError(f"FMR must be between 0 and 1, got {fmr:g}")
        db = self.db
        db.check_model(self.model.version)
        if db.model_version is None or db.is_empty():
            raise GalleryError(f"the gallery {self.path} is empty: nothing to reconcile")
        return run(db.templates(cache=True), self.calibration, fmr, all_splits)

    def check(self, fmr: float = DEFAULT_FMR) -> Calibration:
        """Fail now, before any slow work, if a decision at ``fmr`` cannot be made: no
        gallery, another model's gallery, an empty one, or an FMR the calibration cannot
        measure (MissingDataError, GalleryError, InvalidInputError). Returns the calibration
        the decision will use."""
        db = self.db
        db.check_model(self.model.version)
        calibration = self.calibration
        calibration.threshold(fmr)
        if db.model_version is None or db.is_empty():
            raise GalleryError(f"the gallery {self.path} is empty: enroll scans first")
        return calibration

    def identify(self, probe: Probe, *, fmr: float = DEFAULT_FMR, top_k: int = 5) -> Identification:
        """Who is this? The enrolled patients ranked for ``probe``, and the decision.

        Parameters
        ----------
        probe : scan path, CtVolume, Template, Acquisition or template vector
            A scan is acquired (``face_template``) first.
        fmr : float
            False-match rate (per comparison) the decision threshold is set to.
        top_k : int
            Candidates to return.

        Returns
        -------
        Identification
            ``patient_id`` (None: not in gallery), ``candidates`` (patient, score, rank, best
            scan), the threshold used and the estimated false-positive identification rate
            for this gallery's size.

        Raises
        ------
        FailureToAcquire
            The probe was refused by the quality gate.
        MissingDataError, GalleryError, InvalidInputError
            As ``check``.
        """
        from ctface.gallery.decide import identify as decide
        from ctface.gallery.search import TemplateIndex

        calibration = self.check(fmr)
        templates = self.db.templates(cache=True)
        vector = _vector(probe, self.model)
        index = TemplateIndex.cached(templates, self.path)
        return decide(vector, index, calibration, fmr, top_k)

    def record_identification(self, result: Identification, probe: Acquisition, label: str) -> int:
        """Keep an identification for review (``findings``): the decision, candidates and the
        probe's frontal depth image (the most recent ``review.RECENT_IDENTIFICATIONS``
        undecided ones are kept). Returns the finding's ID."""
        import secrets

        from ctface.gallery.report import png_bytes
        from ctface.gallery.review import ReviewKind, save_finding

        top = result.candidates[0].score if result.candidates else None
        verdict = result.patient_id or "not in gallery"
        detail = {"label": label, **result.to_json(), "probe_quality": probe.record.quality}
        keys = [c.scan_key for c in result.candidates]
        return save_finding(self.db, f"identification:{secrets.token_hex(8)}",
                            ReviewKind.IDENTIFICATION, "identify", top,
                            f"identification: {label} -> {verdict}", detail, keys,
                            png_bytes(probe.frontal))  # fmt: skip

    def findings(
        self,
        *,
        kind: str | None = None,
        status: str = "all",
        sort: str = "score",
        descending: bool = True,
        limit: int = 100,
        offset: int = 0,
    ) -> tuple[list[ReviewFinding], int]:
        """Findings kept for review (reconciliations' splits, merges and unlabeled scans;
        recorded identifications) with their decisions, and how many match.

        Parameters
        ----------
        kind : {"split", "merge", "unlabeled", "identification"}, optional
        status : {"all", "open", "decided"}
            Open: no accept or reject yet.
        sort : {"score", "time"}
        descending, limit, offset
            Order and page.

        Raises
        ------
        InvalidInputError
            An unknown kind, status or sort.
        """
        from ctface.gallery.review import ReviewKind, Sort, list_findings

        try:
            kinds, order = ReviewKind(kind) if kind else None, Sort(sort)
        except ValueError as e:
            raise InvalidInputError(f"{e} (kinds: {', '.join(ReviewKind)}; sorts: "
                                    f"{', '.join(Sort)})") from None  # fmt: skip
        if not self.path.exists():
            return [], 0
        return list_findings(self.db, kind=kinds, status=status, sort=order,
                             descending=descending, limit=limit, offset=offset)  # fmt: skip

    def decide(self, finding_id: int, decision: str, user: str, note: str = "") -> DecisionRecord:
        """Record a person's decision on a finding: ``accept``, ``reject`` or a ``note``, with
        the user and time; earlier decisions are never changed (an audit trail).

        Raises
        ------
        GalleryError
            No finding with this ID.
        InvalidInputError
            An unknown decision, an empty note, or an empty user.
        """
        from ctface.gallery.review import Decision, record_decision

        try:
            made = Decision(decision)
        except ValueError:
            why = f"unknown decision {decision!r} (accept, reject, note)"
            raise InvalidInputError(why) from None
        if not user.strip():
            raise InvalidInputError("a decision needs the user who made it")
        return record_decision(self.db, finding_id, made, user.strip(), note)

    def verify(self, a: Probe, b: Probe, *, fmr: float = DEFAULT_FMR) -> Verification:
        """Are ``a`` and ``b`` the same person, decided with this gallery's calibration?
        Parameters, returns and errors as the module-level ``verify``."""
        return verify(a, b, fmr=fmr, model=self.model, calibration=self.calibration)
