"""The answer ``ctface pacs sync`` stores back into a study, as DICOM (needs the ``pacs`` extra):
a Comprehensive SR with the identification of one CT series (``identification_sr``), and, when
the face is not the header's PatientID, a Key Object Selection document flagging the series'
images for review (``review_kos``).

Both are new instances in new series of the CT's own study. highdicom copies the patient and
study attributes from the CT: the PatientID stays exactly the header's (ctface reports a
mismatch, it never corrects one). The evidence (the CT series' instances) is listed in the
Current Requested Procedure Evidence Sequence.

Codes: DICOM's where one fits (DCM Series Instance UID, Algorithm Name / Version; SCT Yes / No;
UCUM "1" for unitless numbers), else ctface's private scheme ``99CTFACE``, declared in the
Coding Scheme Identification Sequence. The content tree (all CONTAINS)::

    CONTAINER  CTF001 ctface identification
      CODE     CTF002 Identification decision = CTF003 Match in gallery | CTF004 Not in gallery
      TEXT     CTF005 Identified patient ID               (a match only)
      TEXT     CTF006 Header patient ID                   (when the header has one)
      CODE     CTF007 Face matches header patient ID = SCT Yes | No
      NUM      CTF008 Best similarity score               (when the gallery had candidates)
      NUM      CTF009 Decision threshold
      NUM      CTF010 False match rate                    (the threshold's, per comparison)
      NUM      CTF011 False non-match rate at threshold
      NUM      CTF018 Estimated false-positive identification rate
      TEXT     CTF012 Calibration
      TEXT     DCM 111001 Algorithm Name = "ctface"
      TEXT     DCM 111003 Algorithm Version = the model version
      UIDREF   DCM 112002 Series Instance UID = the CT series identified
      CONTAINER CTF013 Gallery candidates
        CONTAINER CTF014 Candidate (one per candidate, best first)
          NUM  CTF015 Rank;  TEXT CTF016 Candidate patient ID;  NUM CTF017 Similarity score
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import highdicom as hd
from highdicom.coding_schemes import CodingSchemeIdentificationItem
from pydicom import Dataset
from pydicom.datadict import dictionary_VR
from pydicom.sr.codedict import codes
from pydicom.valuerep import DA, TM

from ctface import __version__
from ctface.errors import InvalidInputError

__all__ = [
    "KOS_SERIES_DESCRIPTION",
    "KOS_TITLE",
    "SCHEME",
    "SR_SERIES_DESCRIPTION",
    "identification_sr",
    "is_identification_sr",
    "read_identification_sr",
    "review_kos",
]

SR_SERIES_DESCRIPTION = "ctface identification"
KOS_SERIES_DESCRIPTION = "ctface review"
SCHEME = "99CTFACE"
MANUFACTURER = "ctface"


def _ctf(value: str, meaning: str) -> hd.sr.CodedConcept:
    return hd.sr.CodedConcept(value, SCHEME, meaning)


ROOT = _ctf("CTF001", "ctface identification")
DECISION = _ctf("CTF002", "Identification decision")
MATCH = _ctf("CTF003", "Match in gallery")
NOT_IN_GALLERY = _ctf("CTF004", "Not in gallery")
IDENTIFIED_ID = _ctf("CTF005", "Identified patient ID")
HEADER_ID = _ctf("CTF006", "Header patient ID")
MATCHES_HEADER = _ctf("CTF007", "Face matches header patient ID")
BEST_SCORE = _ctf("CTF008", "Best similarity score")
THRESHOLD = _ctf("CTF009", "Decision threshold")
FMR = _ctf("CTF010", "False match rate")
FNMR = _ctf("CTF011", "False non-match rate at threshold")
CALIBRATION = _ctf("CTF012", "Calibration")
CANDIDATES = _ctf("CTF013", "Gallery candidates")
CANDIDATE = _ctf("CTF014", "Candidate")
RANK = _ctf("CTF015", "Rank")
CANDIDATE_ID = _ctf("CTF016", "Candidate patient ID")
SCORE = _ctf("CTF017", "Similarity score")
FPIR = _ctf("CTF018", "Estimated false-positive identification rate")
YES = hd.sr.CodedConcept.from_code(codes.SCT.Yes)
NO = hd.sr.CodedConcept.from_code(codes.SCT.No)
UNITLESS = hd.sr.CodedConcept.from_code(codes.UCUM.NoUnits)
ALGORITHM_NAME = hd.sr.CodedConcept.from_code(codes.DCM.AlgorithmName)
ALGORITHM_VERSION = hd.sr.CodedConcept.from_code(codes.DCM.AlgorithmVersion)
SERIES_UID = hd.sr.CodedConcept.from_code(codes.DCM.SeriesInstanceUID)
# CID 7010 "Key Object Selection Document Title": "Quality Issue" (113010); not one of the IHE
# IOCM rejection notes (113001, 113037-113039), which a PACS may act on by hiding the images
KOS_TITLE = hd.sr.CodedConcept.from_code(codes.DCM.QualityIssue)

_CONTAINS = hd.sr.RelationshipTypeValues.CONTAINS


def _scheme() -> CodingSchemeIdentificationItem:
    """The declaration of ``99CTFACE`` (Coding Scheme Identification Sequence)."""
    return CodingSchemeIdentificationItem(
        designator=SCHEME, name="ctface identification codes", responsible_organization="ctface"
    )


# -- writing ---------------------------------------------------------------------------------
def _check_evidence(evidence: Sequence[Dataset]) -> tuple[str, str]:
    """(study UID, series UID) of the one CT series the evidence must be."""
    if len(evidence) == 0:
        raise InvalidInputError("An SR needs the CT series' instances as evidence; none given.")
    uids = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID")
    for ds in evidence:
        missing = [k for k in uids if not ds.get(k)]
        if missing:
            raise InvalidInputError(f"An evidence instance lacks {', '.join(missing)}.")
    studies = {str(ds.StudyInstanceUID) for ds in evidence}
    series = {str(ds.SeriesInstanceUID) for ds in evidence}
    if len(studies) != 1 or len(series) != 1:
        raise InvalidInputError(
            f"The evidence must be one series of one study, got {len(series)} series in "
            f"{len(studies)} studies."
        )
    return studies.pop(), series.pop()


def _header_source(ds: Dataset) -> Dataset:
    """A copy of ``ds`` that highdicom can copy the patient and study from: Type 2 attributes
    it reads that are missing (a DICOMweb metadata answer may leave them out) are empty, and
    values it refuses (an unknown PatientSex, a malformed date) are empty too. Each element but
    the pixel data is copied (highdicom puts the elements themselves into the SR, so ``ds``
    would change with it); a PatientID is never altered."""
    out = Dataset({tag: copy.deepcopy(elem) for tag, elem in ds.items() if tag.group != 0x7FE0})

    def blank(keyword: str) -> None:
        out.add_new(keyword, dictionary_VR(keyword), "")

    for keyword in ("PatientID", "PatientName", "PatientBirthDate", "PatientSex",
                    "AccessionNumber", "StudyID", "StudyDate", "StudyTime"):  # fmt: skip
        if keyword not in out or out[keyword].value is None:
            blank(keyword)
    if str(out.PatientSex) not in {"M", "F", "O", ""}:
        blank("PatientSex")
    for keyword, vr in (("PatientBirthDate", DA), ("StudyDate", DA), ("StudyTime", TM)):
        try:
            vr(out[keyword].value)
        except (TypeError, ValueError):
            blank(keyword)
    return out


def _num(name: hd.sr.CodedConcept, value: float) -> hd.sr.NumContentItem:
    number = value if isinstance(value, int) else float(value)  # numpy floats: a float
    return hd.sr.NumContentItem(name=name, value=number, unit=UNITLESS, relationship_type=_CONTAINS)


def _text(name: hd.sr.CodedConcept, value: str) -> hd.sr.TextContentItem:
    return hd.sr.TextContentItem(name=name, value=str(value), relationship_type=_CONTAINS)


def _content(summary: dict[str, Any], header_patient_id: str, series_uid: str) -> Dataset:
    decision = summary["decision"]
    candidates = summary.get("candidates") or []
    face = decision.get("patient_id")
    root = hd.sr.ContainerContentItem(name=ROOT)
    items: list[hd.sr.ContentItem] = [
        hd.sr.CodeContentItem(
            name=DECISION,
            value=MATCH if face is not None else NOT_IN_GALLERY,
            relationship_type=_CONTAINS,
        )
    ]
    if face is not None:
        items.append(_text(IDENTIFIED_ID, face))
    if header_patient_id:
        items.append(_text(HEADER_ID, header_patient_id))
    matches = face is not None and str(face) == header_patient_id
    items.append(
        hd.sr.CodeContentItem(
            name=MATCHES_HEADER, value=YES if matches else NO, relationship_type=_CONTAINS
        )
    )
    if candidates:
        items.append(_num(BEST_SCORE, candidates[0]["score"]))
    items += [_num(THRESHOLD, decision["threshold"]), _num(FMR, decision["fmr"])]
    if decision.get("fnmr_at_threshold") is not None:
        items.append(_num(FNMR, decision["fnmr_at_threshold"]))
    if decision.get("fpir_estimate") is not None:
        items.append(_num(FPIR, decision["fpir_estimate"]))
    if decision.get("calibration"):
        items.append(_text(CALIBRATION, decision["calibration"]))
    items += [
        _text(ALGORITHM_NAME, MANUFACTURER),
        _text(ALGORITHM_VERSION, summary["model_version"]),
        hd.sr.UIDRefContentItem(name=SERIES_UID, value=series_uid, relationship_type=_CONTAINS),
    ]
    if candidates:
        group = hd.sr.ContainerContentItem(name=CANDIDATES, relationship_type=_CONTAINS)
        entries: list[hd.sr.ContentItem] = []
        for c in candidates:
            entry = hd.sr.ContainerContentItem(name=CANDIDATE, relationship_type=_CONTAINS)
            entry.ContentSequence = hd.sr.ContentSequence(
                [
                    _num(RANK, int(c["rank"])),
                    _text(CANDIDATE_ID, c["patient_id"]),
                    _num(SCORE, c["score"]),
                ]
            )
            entries.append(entry)
        group.ContentSequence = hd.sr.ContentSequence(entries)
        items.append(group)
    root.ContentSequence = hd.sr.ContentSequence(items)
    return root


def identification_sr(
    evidence: Sequence[Dataset],
    summary: dict[str, Any],
    header_patient_id: str,
    *,
    series_number: int = 9901,
    instance_number: int = 1,
) -> Dataset:
    """The identification of one CT series as a Comprehensive SR in the series' study.

    Parameters
    ----------
    evidence : sequence of pydicom Dataset
        The CT series' instances (full instances or their metadata: each needs its study,
        series, SOP instance and SOP class UIDs; the first gives the patient and study).
    summary : dict
        ``Identification.summary()`` (``ctface.gallery.decide``): ``decision`` (patient_id, or
        None for not in gallery, threshold, fmr, ...), ``candidates``, ``model_version``.
    header_patient_id : str
        The PatientID the CT's header gives, compared with the face's.

    Returns
    -------
    pydicom Dataset
        A ``highdicom.sr.ComprehensiveSR`` (new series and SOP instance UIDs, Modality SR,
        SeriesDescription ``SR_SERIES_DESCRIPTION``), ready for STOW-RS or ``save_as``.
    """
    _, series_uid = _check_evidence(evidence)
    sources = [_header_source(evidence[0]), *evidence[1:]]
    return hd.sr.ComprehensiveSR(
        evidence=sources,
        content=_content(summary, header_patient_id, series_uid),
        series_instance_uid=hd.UID(),
        series_number=series_number,
        sop_instance_uid=hd.UID(),
        instance_number=instance_number,
        manufacturer=MANUFACTURER,
        is_complete=True,
        series_description=SR_SERIES_DESCRIPTION,
        manufacturer_model_name=MANUFACTURER,
        software_versions=__version__,
        coding_schemes=[_scheme()],
    )


def review_kos(evidence: Sequence[Dataset], sr: Dataset, *, series_number: int = 9902) -> Dataset:
    """A Key Object Selection document flagging the CT series' instances for review: their
    face is not the header's PatientID. It also references ``sr`` (the identification, which
    says whose face it is), in the same study; SeriesDescription ``KOS_SERIES_DESCRIPTION``."""
    study_uid, _ = _check_evidence(evidence)
    if str(sr.StudyInstanceUID) != study_uid:
        raise InvalidInputError("The SR and the CT series belong to different studies.")
    found = read_identification_sr(sr)
    face = found["patient_id"] or "not in the gallery"
    header = found["header_patient_id"] or "(empty)"
    description = (
        f"ctface: the face does not match the header's PatientID {header}; "
        f"the face is {face}. Review before use (SR {sr.SOPInstanceUID})."
    )
    sources = [_header_source(evidence[0]), *evidence[1:], sr]
    content = hd.ko.KeyObjectSelection(
        document_title=KOS_TITLE, referenced_objects=sources, description=description
    )
    return hd.ko.KeyObjectSelectionDocument(
        evidence=sources,
        content=content,
        series_instance_uid=hd.UID(),
        series_number=series_number,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        series_description=KOS_SERIES_DESCRIPTION,
        manufacturer_model_name=MANUFACTURER,
        software_versions=__version__,
    )


# -- reading ---------------------------------------------------------------------------------
def _key(item: Dataset) -> tuple[str, str]:
    code = item.ConceptNameCodeSequence[0]
    return str(code.CodingSchemeDesignator), str(code.CodeValue)


def _of(code: hd.sr.CodedConcept) -> tuple[str, str]:
    return code.scheme_designator, code.value


def _children(item: Dataset) -> dict[tuple[str, str], Dataset]:
    """The first child item of each concept name (this document names each once)."""
    out: dict[tuple[str, str], Dataset] = {}
    for child in item.get("ContentSequence", []):
        if "ConceptNameCodeSequence" in child:
            out.setdefault(_key(child), child)
    return out


def _number(item: Dataset | None) -> float | None:
    if item is None:
        return None
    mv = item.MeasuredValueSequence[0]
    return float(mv.FloatingPointValue if "FloatingPointValue" in mv else mv.NumericValue)


def _coded(item: Dataset | None) -> tuple[str, str] | None:
    if item is None:
        return None
    code = item.ConceptCodeSequence[0]
    return str(code.CodingSchemeDesignator), str(code.CodeValue)


def is_identification_sr(ds: Dataset) -> bool:
    """Is ``ds`` an SR that ``identification_sr`` wrote (its root concept is ctface's)?"""
    try:
        return ds.Modality == "SR" and _key(ds) == _of(ROOT)
    except (AttributeError, IndexError, KeyError):
        return False


def read_identification_sr(ds: Dataset) -> dict[str, Any]:
    """The identification out of an SR that ``identification_sr`` wrote: ``patient_id`` (None:
    not in gallery), ``in_gallery``, ``header_patient_id``, ``matches_header``, ``score`` (the
    best candidate's, None without candidates), ``threshold``, ``fmr``, ``fnmr_at_threshold``,
    ``model_version``, ``calibration``, ``series_instance_uid`` (the CT series), ``candidates``
    ([{rank, patient_id, score}]) and the SR's ``study_instance_uid``, ``sop_instance_uid``."""
    if not is_identification_sr(ds):
        raise InvalidInputError("Not a ctface identification SR.")
    try:
        top = _children(ds)
        decision = _coded(top.get(_of(DECISION)))
        if decision not in (_of(MATCH), _of(NOT_IN_GALLERY)):
            raise InvalidInputError(f"The SR's decision is not one of ctface's: {decision}.")
        face = top.get(_of(IDENTIFIED_ID))
        header = top.get(_of(HEADER_ID))
        version = top.get(_of(ALGORITHM_VERSION))
        calibration = top.get(_of(CALIBRATION))
        series = top.get(_of(SERIES_UID))
        candidates = []
        group = top.get(_of(CANDIDATES))
        for entry in group.ContentSequence if group is not None else []:
            fields = _children(entry)
            rank = _number(fields.get(_of(RANK)))
            candidates.append({
                "rank": None if rank is None else int(rank),
                "patient_id": str(fields[_of(CANDIDATE_ID)].TextValue),
                "score": _number(fields.get(_of(SCORE))),
            })  # fmt: skip
        return {
            "patient_id": str(face.TextValue) if decision == _of(MATCH) and face else None,
            "in_gallery": decision == _of(MATCH),
            "header_patient_id": str(header.TextValue) if header is not None else "",
            "matches_header": _coded(top.get(_of(MATCHES_HEADER))) == _of(YES),
            "score": _number(top.get(_of(BEST_SCORE))),
            "threshold": _number(top.get(_of(THRESHOLD))),
            "fmr": _number(top.get(_of(FMR))),
            "fnmr_at_threshold": _number(top.get(_of(FNMR))),
            "model_version": str(version.TextValue) if version is not None else None,
            "calibration": str(calibration.TextValue) if calibration is not None else None,
            "series_instance_uid": str(series.UID) if series is not None else None,
            "candidates": candidates,
            "study_instance_uid": str(ds.StudyInstanceUID),
            "sop_instance_uid": str(ds.SOPInstanceUID),
        }
    except (AttributeError, IndexError, KeyError, TypeError, ValueError) as e:
        raise InvalidInputError(f"A malformed ctface identification SR: {e!r}") from e
