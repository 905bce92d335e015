"""One training loop for every network of ctface: Adam, a step learning-rate drop, atomic
checkpoints, exact resumption (every random draw of iteration i comes from (seed, stage, i)),
and progress callbacks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ctface.model_files import save_atomic


@dataclass(frozen=True)
class TrainConfig:
    iterations: int = 3000
    batch: int = 8
    lr: float = 1e-3
    lr_drop_at: float = 0.75  # lr x 0.1 from this fraction of the iterations on
    seed: int = 0
    checkpoint_every: int = 100

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def train_loop(
    net: nn.Module,
    batch_loss: Callable[[int, np.random.Generator], torch.Tensor],
    config: TrainConfig,
    stage_id: int,
    checkpoint: Path,
    progress: Callable[[int, float], None] | None = None,
) -> list[float]:
    """Train ``net`` (all its parameters) for ``config.iterations`` batches; resumes from
    ``checkpoint`` if present. ``batch_loss(iteration, rng)`` draws a batch with ``rng`` and
    returns its loss. Returns the loss per iteration (from the start of the run)."""
    torch.manual_seed(config.seed * 7919 + stage_id)
    opt = torch.optim.Adam(net.parameters(), lr=config.lr)
    start, losses = 0, []
    if checkpoint.exists():
        state = torch.load(checkpoint, weights_only=False)
        net.load_state_dict(state["net"])
        opt.load_state_dict(state["opt"])
        start, losses = int(state["iteration"]), list(state["losses"])
        torch.set_rng_state(state["torch_rng"])
    net.train()
    for it in range(start, config.iterations):
        rng = np.random.default_rng([config.seed, stage_id, it])
        lr = config.lr * (0.1 if it >= config.lr_drop_at * config.iterations else 1.0)
        for group in opt.param_groups:
            group["lr"] = lr
        loss = batch_loss(it, rng)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if progress:
            progress(it + 1, float(np.mean(losses[-50:])))
        if (it + 1) % config.checkpoint_every == 0 or it + 1 == config.iterations:
            state = {
                "net": net.state_dict(),
                "opt": opt.state_dict(),
                "torch_rng": torch.get_rng_state(),
            }
            save_atomic({**state, "iteration": it + 1, "losses": losses}, checkpoint)
    net.eval()
    return losses
