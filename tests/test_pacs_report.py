"""The answer ``ctface pacs sync`` stores in a study (``ctface.pacs.report``): the identification
SR and the review KOS, written to bytes and read back with pydicom."""

from __future__ import annotations

import copy
import io
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom import Dataset

pytest.importorskip("highdicom")

from ctface.errors import InvalidInputError  # noqa: E402
from ctface.gallery.calibration import DecisionThreshold  # noqa: E402
from ctface.gallery.decide import Identification  # noqa: E402
from ctface.gallery.search import Candidate  # noqa: E402
from ctface.ingest.volume import CtVolume  # noqa: E402
from ctface.pacs.report import (  # noqa: E402
    KOS_SERIES_DESCRIPTION,
    SR_SERIES_DESCRIPTION,
    identification_sr,
    is_identification_sr,
    read_identification_sr,
    review_kos,
)
from ctface.phantom.export import DicomSeriesInfo, make_uid, write_dicom_series  # noqa: E402

HEADER = "PAT-0007"
THRESHOLD = 0.4123456789  # not a round number: the SR keeps it exactly (FD)


@pytest.fixture(scope="module")
def ct(tmp_path_factory: pytest.TempPathFactory) -> list[Dataset]:
    """A 3-slice CT series of one study, as the PACS would return it."""
    hu = np.full((3, 8, 8), -1000, np.int16)
    vol = CtVolume(hu, np.diag([0.5, 0.5, 2.0, 1.0]))
    info = DicomSeriesInfo(HEADER, "Doe^Jane", "20240101", "120000", make_uid("study"),
                           make_uid("series"), make_uid("for"))  # fmt: skip
    files = write_dicom_series(vol, tmp_path_factory.mktemp("pacs") / "ct", info)
    return [pydicom.dcmread(f) for f in files]


def summary(face: str | None, scores: list[tuple[str, float]]) -> dict[str, Any]:
    """What ``Identification.summary`` gives for these candidates and decision."""
    candidates = [Candidate(k + 1, p, s, 100 + k) for k, (p, s) in enumerate(scores)]
    threshold = DecisionThreshold(THRESHOLD, 1e-3, 0.021, 4950, 50, "shipped (v1)")
    result = Identification(candidates, face, threshold, 120, 60, "exact")
    return result.summary("study", "embed-2024.1", {"face_coverage": 0.9}, 1.5)


def roundtrip(ds: Dataset) -> Dataset:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return pydicom.dcmread(io.BytesIO(buf.getvalue()))


def test_sr_of_a_mismatch_keeps_study_and_patient(ct: list[Dataset]) -> None:
    sr = identification_sr(ct, summary("PAT-0042", [("PAT-0042", 0.8123), ("PAT-0007", 0.31)]),
                           HEADER)  # fmt: skip
    back = roundtrip(sr)
    assert back.Modality == "SR"
    assert back.SOPClassUID == pydicom.uid.ComprehensiveSRStorage
    assert back.SeriesDescription == SR_SERIES_DESCRIPTION
    assert back.Manufacturer == "ctface"
    assert back.StudyInstanceUID == ct[0].StudyInstanceUID
    assert back.PatientID == ct[0].PatientID == HEADER  # the header's, never the face's
    assert back.PatientName == ct[0].PatientName
    assert back.SeriesInstanceUID != ct[0].SeriesInstanceUID
    assert back.SOPInstanceUID not in {ds.SOPInstanceUID for ds in ct}
    assert back.SeriesNumber == 9901
    assert back.CodingSchemeIdentificationSequence[0].CodingSchemeDesignator == "99CTFACE"
    (study,) = back.CurrentRequestedProcedureEvidenceSequence
    (series,) = study.ReferencedSeriesSequence
    assert series.SeriesInstanceUID == ct[0].SeriesInstanceUID
    assert {i.ReferencedSOPInstanceUID for i in series.ReferencedSOPSequence} == {
        ds.SOPInstanceUID for ds in ct
    }
    assert is_identification_sr(back)
    got = read_identification_sr(back)
    assert got["patient_id"] == "PAT-0042" and got["in_gallery"]
    assert got["header_patient_id"] == HEADER and got["matches_header"] is False
    assert got["score"] == pytest.approx(0.8123)
    assert got["threshold"] == THRESHOLD
    assert got["fmr"] == pytest.approx(1e-3)
    assert got["fnmr_at_threshold"] == pytest.approx(0.021)
    assert got["model_version"] == "embed-2024.1"
    assert got["calibration"] == "shipped (v1)"
    assert got["series_instance_uid"] == ct[0].SeriesInstanceUID
    assert got["study_instance_uid"] == ct[0].StudyInstanceUID
    assert got["sop_instance_uid"] == back.SOPInstanceUID
    assert [(c["rank"], c["patient_id"]) for c in got["candidates"]] == [
        (1, "PAT-0042"),
        (2, "PAT-0007"),
    ]
    assert got["candidates"][1]["score"] == pytest.approx(0.31)


def test_sr_of_a_match_and_of_not_in_gallery(ct: list[Dataset]) -> None:
    sr = identification_sr(ct, summary(HEADER, [(HEADER, 0.9)]), HEADER, series_number=42,
                           instance_number=3)  # fmt: skip
    assert (sr.SeriesNumber, sr.InstanceNumber) == (42, 3)
    match = read_identification_sr(roundtrip(sr))
    assert match["patient_id"] == HEADER and match["matches_header"] is True
    assert match["score"] == pytest.approx(0.9)
    nobody = roundtrip(identification_sr(ct, summary(None, [("PAT-0042", 0.12)]), HEADER))
    got = read_identification_sr(nobody)
    assert got["patient_id"] is None and got["in_gallery"] is False
    assert got["matches_header"] is False
    assert got["score"] == pytest.approx(0.12) and got["threshold"] == THRESHOLD
    assert nobody.PatientID == HEADER
    empty = read_identification_sr(roundtrip(identification_sr(ct, summary(None, []), "")))
    assert empty["score"] is None and empty["candidates"] == []
    assert empty["header_patient_id"] == "" and empty["patient_id"] is None


def test_sr_reads_back_through_highdicom_and_dicomweb_json(ct: list[Dataset]) -> None:
    import highdicom as hd

    sr = identification_sr(ct, summary(HEADER, [(HEADER, 0.9)]), HEADER)
    buf = io.BytesIO()
    sr.save_as(buf, enforce_file_format=True)
    parsed = hd.sr.srread(io.BytesIO(buf.getvalue()))
    assert isinstance(parsed, hd.sr.ComprehensiveSR)
    assert {e[2] for e in parsed.get_evidence()} == {ds.SOPInstanceUID for ds in ct}
    # a QIDO/WADO metadata answer (DICOM JSON) carries everything read_identification_sr needs
    as_json = Dataset.from_json(sr.to_json_dict())
    assert read_identification_sr(as_json)["patient_id"] == HEADER


def test_sr_from_metadata_without_type2_attributes(ct: list[Dataset]) -> None:
    """A DICOMweb metadata answer may leave out empty attributes; the evidence is not changed."""
    sparse = []
    for ds in ct:
        d = Dataset()
        for kw in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID",
                   "PatientID", "Modality"):  # fmt: skip
            setattr(d, kw, getattr(ds, kw))
        sparse.append(d)
    sparse[0].PatientSex = "X"  # not a DICOM value: left out of the SR, not refused
    before = [d.to_json_dict() for d in sparse]
    back = roundtrip(identification_sr(sparse, summary(None, []), HEADER))
    assert back.PatientID == HEADER and back.StudyInstanceUID == ct[0].StudyInstanceUID
    assert [d.to_json_dict() for d in sparse] == before


def test_sr_refuses_mixed_or_empty_evidence(ct: list[Dataset]) -> None:
    other = copy.deepcopy(ct[0])
    other.SeriesInstanceUID = make_uid("another series")
    with pytest.raises(InvalidInputError, match="one series"):
        identification_sr([*ct, other], summary(None, []), HEADER)
    with pytest.raises(InvalidInputError):
        identification_sr([], summary(None, []), HEADER)
    with pytest.raises(InvalidInputError, match="Not a ctface"):
        read_identification_sr(ct[0])
    assert not is_identification_sr(ct[0])


def test_kos_flags_every_ct_instance_for_review(ct: list[Dataset]) -> None:
    sr = identification_sr(ct, summary("PAT-0042", [("PAT-0042", 0.8)]), HEADER)
    kos = roundtrip(review_kos(ct, sr))
    assert kos.Modality == "KO"
    assert kos.SOPClassUID == pydicom.uid.KeyObjectSelectionDocumentStorage
    assert kos.SeriesDescription == KOS_SERIES_DESCRIPTION and kos.SeriesNumber == 9902
    assert kos.StudyInstanceUID == ct[0].StudyInstanceUID and kos.PatientID == HEADER
    assert kos.SeriesInstanceUID not in {sr.SeriesInstanceUID, ct[0].SeriesInstanceUID}
    title = kos.ConceptNameCodeSequence[0]
    assert (title.CodingSchemeDesignator, title.CodeValue) == ("DCM", "113010")
    items = kos.ContentSequence
    referenced = {i.ReferencedSOPSequence[0].ReferencedSOPInstanceUID
                  for i in items if i.ValueType in ("IMAGE", "COMPOSITE")}  # fmt: skip
    assert referenced == {ds.SOPInstanceUID for ds in ct} | {sr.SOPInstanceUID}
    (text,) = [i.TextValue for i in items if i.ValueType == "TEXT"]
    assert HEADER in text and "PAT-0042" in text and "does not match" in text
    evidence = {
        i.ReferencedSOPInstanceUID
        for study in kos.CurrentRequestedProcedureEvidenceSequence
        for series in study.ReferencedSeriesSequence
        for i in series.ReferencedSOPSequence
    }
    assert evidence == referenced


def test_the_ct_is_never_changed(ct: list[Dataset]) -> None:
    before = [ds.to_json_dict() for ds in ct]
    sr = identification_sr(ct, summary("PAT-0042", [("PAT-0042", 0.8)]), HEADER)
    kos = review_kos(ct, sr)
    for doc in (sr, kos):  # no element of the CT is shared with what was written
        doc.PatientID, doc.PatientName, doc.StudyDate = "X", "X^Y", "19990101"
    assert [ds.to_json_dict() for ds in ct] == before


def test_kos_refuses_an_sr_of_another_study(ct: list[Dataset]) -> None:
    sr = identification_sr(ct, summary(None, []), HEADER)
    sr.StudyInstanceUID = make_uid("another study")
    with pytest.raises(InvalidInputError, match="different studies"):
        review_kos(ct, sr)
