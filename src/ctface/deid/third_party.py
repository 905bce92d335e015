"""Third-party defacers run on CT, for ``ctface audit --compare``.

- quickshear (PyPI ``quickshear``, Schimke & Hale 2011): cuts everything in front of and below
  a plane fitted under the brain mask's convex hull. It needs a brain mask, which MRI pipelines
  get from a skull stripper; here it is derived from the CT (``brain_mask``). quickshear zeroes
  the voxels it removes, which in CT is water (0 HU), not air, so it is run on HU + 1024 and
  shifted back: removed voxels become air (-1024 HU).
- pydeface needs FSL's FLIRT (not installable from the package registries), mri_deface needs
  FreeSurfer's templates: neither runs here.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ctface.extras import require
from ctface.ingest.volume import CtVolume

BRAIN_HU = (0, 80)
BONE_HU = 300
OFFSET_HU = 1024


def brain_mask(volume: CtVolume) -> np.ndarray:
    """The brain of a canonical CT (the usual CT skull strip): soft tissue (0-80 HU) inside the
    skull, where the skull (>= 300 HU, closed by a one-voxel dilation) encloses it in an axial
    slice; the largest such region after a 2-voxel erosion (which cuts it from tissue reached
    through the skull's openings), grown back."""
    hu = volume.hu
    bone = ndimage.binary_dilation(hu >= BONE_HU, iterations=1)
    inside = np.stack([ndimage.binary_fill_holes(b) for b in bone]) & ~bone
    soft = inside & (hu >= BRAIN_HU[0]) & (hu <= BRAIN_HU[1])
    ball = ndimage.generate_binary_structure(3, 1)
    core = ndimage.binary_erosion(soft, ball, iterations=2)
    labels, n = ndimage.label(core)
    if n == 0:
        return np.zeros(hu.shape, bool)
    sizes = np.bincount(labels.ravel())[1:]
    brain = labels == (int(np.argmax(sizes)) + 1)
    return np.asarray(ndimage.binary_dilation(brain, ball, iterations=2) & inside)


def quickshear_deface(volume: CtVolume, mask: np.ndarray | None = None) -> CtVolume:
    """The volume defaced by quickshear with ``mask`` (default ``brain_mask``)."""
    import nibabel as nib

    qs = require("quickshear", "ctface audit --compare (quickshear)")
    brain = brain_mask(volume) if mask is None else mask
    # nibabel arrays are indexed [i, j, k]; the volume's hu is [k, j, i]
    shifted = (volume.hu.astype(np.int32) + OFFSET_HU).transpose(2, 1, 0)
    affine = volume.affine_ras
    anat = nib.Nifti1Image(shifted, affine)
    defaced = qs.quickshear(
        anat, nib.Nifti1Image(brain.transpose(2, 1, 0).astype(np.uint8), affine)
    )
    hu = np.asarray(defaced.dataobj).transpose(2, 1, 0) - OFFSET_HU
    return CtVolume(hu.astype(np.int16), volume.affine_lps.copy(), dict(volume.metadata))
