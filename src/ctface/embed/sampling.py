"""The paper's group sampling: each subject's images are split into random subgroups of E;
a batch is L random subjects with one random subgroup each (batch = E x L). Without
shuffling (the paper's "no grouping" ablation) a subgroup is a run of E consecutive images of
one scan (``scans``), at a random offset: it never mixes two scans of the subject."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


class GroupSampler:
    """Batches of image indices. ``labels`` (N,) subject index per image. Subjects with fewer
    than 2 images are left out (a triplet needs a positive); a subgroup of a subject with fewer
    than E images is all of them."""

    def __init__(
        self,
        labels: np.ndarray,
        e: int,
        l: int,  # noqa: E741
        rng: np.random.Generator,
        shuffle: bool = True,
        scans: np.ndarray | None = None,
    ) -> None:
        if e < 2 or l < 2:
            raise ValueError(f"group sampling needs E >= 2 and L >= 2, got E={e}, L={l}")
        self.e, self.l, self.rng, self.shuffle = e, l, rng, shuffle
        self.scans = scans if scans is not None else np.zeros(len(labels), int)
        order = np.argsort(labels, kind="stable")
        bounds = np.flatnonzero(np.diff(labels[order])) + 1
        self.members = [g for g in np.split(order, bounds) if len(g) >= 2]
        if len(self.members) < l:
            raise ValueError(f"group sampling needs >= L={l} subjects with 2+ images, "
                             f"got {len(self.members)}")  # fmt: skip

    def subgroups(self, subject: int) -> list[np.ndarray]:
        """A fresh random split of one subject's images into subgroups of E (last may be short)."""
        e = self.e
        if self.shuffle:
            runs = [self.rng.permutation(self.members[subject])]
        else:
            idx = self.members[subject]
            runs = [idx[self.scans[idx] == s] for s in np.unique(self.scans[idx])]
        out = []
        for run in runs:
            start = int(self.rng.integers(e)) % len(run) if not self.shuffle else 0
            out += [run[i : i + e] for i in range(start, len(run), e) if len(run[i : i + e]) >= 2]
        return out or [runs[0][:e]]

    def batch(self) -> np.ndarray:
        chosen = self.rng.choice(len(self.members), size=self.l, replace=False)
        parts = []
        for s in chosen:
            groups = self.subgroups(int(s))
            parts.append(groups[int(self.rng.integers(len(groups)))])
        return np.concatenate(parts)

    def __iter__(self) -> Iterator[np.ndarray]:
        while True:
            yield self.batch()
