"""Sanity limits every reader applies, and the conversion of raw values to int16 HU.

Limits (issue: "absurd sizes"): 8 to 2000 slices, voxel spacing in (0, 20] mm, at most 4096
pixels along a row or column, at most 4e9 voxels after resampling. Air is -1024 HU: padding
values and anything below -1024 HU (outside the reconstruction circle, e.g. -2000 or -3024)
become -1024.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ctface.errors import InvalidInputError

AIR_HU = -1024
MIN_SLICES = 8
MAX_SLICES = 2000
MAX_IN_PLANE = 4096
MAX_SPACING_MM = 20.0
MAX_VOXELS = 4e9
# Deflate (gzip, zlib) expands at most ~1032x: a header declaring more voxel bytes than that
# times the compressed bytes present is corrupt (refused before anything is allocated).
MAX_COMPRESSION = 1100
FAR_BELOW_AIR_HU = -1100  # values below this are reported as "padding-like" in the notes


@dataclass
class HuStats:
    """Counts of voxels changed while converting to HU (for the metadata notes)."""

    padded: int = 0
    below_air: int = 0
    above_int16: int = 0

    def notes(self) -> list[str]:
        out = []
        if self.padded:
            out.append(f"{self.padded} padding voxels (PixelPaddingValue) set to air (-1024 HU)")
        if self.below_air:
            out.append(f"{self.below_air} voxels below {FAR_BELOW_AIR_HU} HU set to air (-1024 HU)")
        if self.above_int16:
            out.append(f"{self.above_int16} voxels above 32767 HU clipped")
        return out


def to_hu(
    raw: np.ndarray,
    slope: float = 1.0,
    intercept: float = 0.0,
    padding: tuple[float, float] | None = None,
    stats: HuStats | None = None,
) -> np.ndarray:
    """Stored values -> int16 HU: rescale, padding (inclusive stored range) and < -1024 -> air."""
    if raw.dtype.kind == "f" and not np.all(np.isfinite(raw)):
        raise InvalidInputError("The image contains NaN or infinite values.")
    exact = raw.dtype.kind in "iu" and raw.itemsize <= 2 and slope == 1.0
    hu: np.ndarray
    if exact and float(intercept).is_integer() and abs(intercept) < 2**20:
        hu = raw.astype(np.int32)  # integer arithmetic: the same values, ~2x faster
        hu += np.int32(intercept)
    else:
        hu = raw.astype(np.float32, copy=True)
        if slope != 1.0 or intercept != 0.0:
            hu *= np.float32(slope)
            hu += np.float32(intercept)
    st = stats if stats is not None else HuStats()
    if padding is not None:
        lo, hi = min(padding), max(padding)
        pad = (raw >= lo) & (raw <= hi)
        st.padded += int(pad.sum())
        hu[pad] = AIR_HU
    st.below_air += int(np.count_nonzero(hu < FAR_BELOW_AIR_HU))
    st.above_int16 += int(np.count_nonzero(hu > 32767))
    np.clip(hu, AIR_HU, 32767, out=hu)
    return (hu if hu.dtype.kind == "i" else np.rint(hu)).astype(np.int16)


def check_spacing(
    spacing: tuple[float, ...] | list[float] | np.ndarray, what: str = "voxel spacing"
) -> None:
    """Raise unless every spacing is finite, > 0 and <= 20 mm."""
    s = np.asarray(spacing, dtype=float)
    if not np.all(np.isfinite(s)) or np.any(s <= 0) or np.any(s > MAX_SPACING_MM):
        shown = " x ".join(f"{v:g}" for v in s)
        raise InvalidInputError(
            f"The {what} {shown} mm is absurd (each must be > 0 and <= {MAX_SPACING_MM:g} mm)."
        )


def check_shape(n_cols: int, n_rows: int, n_slices: int) -> None:
    """Raise for too few (< 8) or too many (> 2000) slices, or rows/columns beyond 4096."""
    if n_slices < MIN_SLICES:
        raise InvalidInputError(
            f"The volume has only {n_slices} slices (at least {MIN_SLICES} are needed)."
        )
    if n_slices > MAX_SLICES:
        raise InvalidInputError(f"The volume has {n_slices} slices (at most {MAX_SLICES}).")
    if min(n_cols, n_rows) < 1 or max(n_cols, n_rows) > MAX_IN_PLANE:
        raise InvalidInputError(
            f"Slices of {n_cols} x {n_rows} pixels are absurd (1 to {MAX_IN_PLANE} per side)."
        )


def check_affine(affine: np.ndarray) -> None:
    """Raise unless the voxel -> LPS affine is finite and invertible with sane spacing."""
    a = np.asarray(affine, dtype=float)
    if not np.all(np.isfinite(a)) or abs(np.linalg.det(a[:3, :3])) < 1e-9:
        raise InvalidInputError("The image geometry is degenerate (zero or non-finite spacing).")
    check_spacing(np.linalg.norm(a[:3, :3], axis=0))


def check_voxels(n_voxels: float, spacing_mm: float | None = None) -> None:
    """Raise if a (resampled) grid would hold more than 4e9 voxels."""
    if n_voxels > MAX_VOXELS:
        how = (
            f"Resampling to {spacing_mm:g} mm would give" if spacing_mm else "The volume would hold"
        )
        hint = "; use a coarser spacing" if spacing_mm else ""
        raise InvalidInputError(f"{how} {n_voxels:.3g} voxels (at most {MAX_VOXELS:.0e}){hint}.")


def check_data_bytes(declared: float, available: int, compressed: bool, what: str) -> None:
    """Raise if a header declares more voxel bytes than the file's data can hold (checked
    before reading, so an absurd header allocates nothing)."""
    if declared <= available or (compressed and declared <= MAX_COMPRESSION * available):
        return
    how = "compressed " if compressed else ""
    raise InvalidInputError(
        f"{what}: its header declares {declared:.0f} bytes of voxels but only {available} bytes "
        f"of {how}data are present (truncated or corrupt file)."
    )


def shown(value: object, limit: int = 64) -> str:
    """A value read from a file, fit for a one-line message: printable, at most ``limit``."""
    text = "".join(c if c.isprintable() else "?" for c in str(value))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, for one-line error messages."""
    text = str(exc).strip().splitlines()
    return shown(text[0].rstrip(".: "), 200) if text else type(exc).__name__
