"""Hostile input to ``load_ct`` (issue 23): the fuzzer's regression corpus and a short seeded
campaign, each input in the fuzzer's worker subprocess (address space limited to 2 GiB above
its warmed-up size, killed after 10 s). The contract: a CtVolume or a CtfaceError, nothing
else. The long campaign is ``benchmarks/fuzz.py`` (results in benchmarks/results/fuzz.json).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from ctface.errors import InvalidInputError
from ctface.ingest import load_ct
from ctface.ingest.dicom_planes import Plane
from ctface.ingest.stack import plan_stack

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "fuzz_corpus"
CAMPAIGN_SEED = 23  # not the benchmark's seed (0): the test covers other inputs
CAMPAIGN_INPUTS = 1500  # ~25 s on 2 idle cores, ~55 s on busy ones


def _load_fuzz() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ctface_fuzz_bench", ROOT / "benchmarks/fuzz.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


fuzz = _load_fuzz()


def test_every_corpus_input_gives_its_expected_outcome() -> None:
    results = fuzz.run_corpus(CORPUS)
    assert len(results) >= 19
    for entry, result in results:
        now = entry["now"]
        assert result["outcome"] == now["outcome"], (entry["file"], result)
        assert now["message"] in result.get("message", ""), (entry["file"], result)
        assert result["seconds"] < fuzz.TIME_LIMIT_S
        assert result["peak_rss"] < fuzz.MEMORY_LIMIT


def test_seeded_campaign_keeps_the_contract() -> None:
    tally = fuzz.campaign(CAMPAIGN_SEED, CAMPAIGN_INPUTS, jobs=1)
    assert tally.inputs == CAMPAIGN_INPUTS
    assert not tally.findings, tally.findings[:5]
    assert set(tally.by_format) == set(fuzz.FORMATS)
    assert tally.outcomes["result"] > 0 and tally.outcomes["InvalidInputError"] > 0
    assert tally.slowest["seconds"] < fuzz.TIME_LIMIT_S


def test_inputs_are_deterministic_and_independent_of_order() -> None:
    a = [fuzz.make_case(5, i) for i in (40, 41, 42)]
    b = [fuzz.make_case(5, i) for i in (42, 41, 40)][::-1]
    for x, y in zip(a, b, strict=True):
        assert (x.fmt, x.target, x.mutators, x.files) == (y.fmt, y.target, y.mutators, y.files)


def test_absurd_nifti_size_is_refused_before_reading(tmp_path: Path) -> None:
    """A header declaring 4096 x 4096 x 2000 voxels (within the shape limits, 64 GB) over a
    6 KB file: refused from the header, nothing allocated."""
    data = fuzz.seeds()["nifti"][0].files["v.nii"]
    hdr = np.frombuffer(data[:348], dtype=fuzz._nifti_dtype(data)).copy()
    dim = hdr["dim"].copy()
    dim[0, 1:4] = [4096, 4096, 2000]
    hdr["dim"] = dim
    (tmp_path / "big.nii").write_bytes(hdr.tobytes() + data[348:])
    with pytest.raises(InvalidInputError, match="declares 67108864000 bytes of voxels"):
        load_ct(tmp_path / "big.nii")


def test_resampled_slice_count_is_checked_before_the_grid_is_built() -> None:
    """Eight steps of 0.02 mm and three of 19.9 mm: a 0.02 mm grid would need ~3000 slices."""
    z = np.concatenate([0.02 * np.arange(9), 0.16 + 19.9 * np.arange(1, 4)])
    planes = [
        Plane(i, -1, np.array([0.0, 0.0, v]), np.array([1.0, 0, 0, 0, 1, 0]), (1.0, 1.0),
              (4, 4), 1.0, 0.0)
        for i, v in enumerate(z)
    ]  # fmt: skip
    with pytest.raises(InvalidInputError, match=r"would be resampled to \d+ slices"):
        plan_stack(planes)
