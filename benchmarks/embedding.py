"""Recognition model speed on this CPU: embedding one scan (all 90 views) and training
throughput, for the default and the paper's configuration.

Run: .venv/bin/python benchmarks/embedding.py [--repeats 3] [--threads 2]

Embedding: the shipped model (default configuration) on the 90 views of one phantom scan
rendered by ``render_face`` (face separation + adjustment + network + template), and the
paper's configuration (ResNet50 at 224 px; untrained weights, the same arithmetic) on the same
views. Training: images per second of forward + backward + Adam step with the configuration's
loss, on random images at the configuration's input size (default: its batch E x L = 6 x 16;
paper: a batch of 30, since one of its 270-image batches takes minutes here).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from ctface.embed.embedder import FaceEmbedder
from ctface.embed.losses import CosFace, batch_hard_triplet
from ctface.embed.resnet import CONFIGS, ResNetEmbedder
from ctface.ingest import load_ct
from ctface.phantom import CohortSpec, NuisanceConfig, generate_cohort
from ctface.render import render_face

RESULTS = Path(__file__).parent / "results"


def train_rate(name: str, batch: int, repeats: int) -> float:
    cfg = CONFIGS[name]
    net = ResNetEmbedder(cfg)
    head = CosFace(cfg.embedding_dim, 100) if "cosface" in cfg.loss else None
    opt = torch.optim.Adam(list(net.parameters()) + (list(head.parameters()) if head else []))
    x = torch.rand(batch, 1, cfg.input_size, cfg.input_size)
    y = torch.arange(batch) % max(batch // cfg.group_e, 2)
    best = float("inf")
    for i in range(repeats + 1):
        t = time.perf_counter()
        emb = net(x)
        loss = batch_hard_triplet(emb, y, cfg.margin) + (head(emb, y) if head else 0.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i:  # the first is a warm-up
            best = min(best, time.perf_counter() - t)
    return batch / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        generate_cohort(CohortSpec(subjects=1, scans_min=1, scans_max=1, seed=31,
                                   nuisance=NuisanceConfig()), Path(tmp) / "c")  # fmt: skip
        scan = next((Path(tmp) / "c").glob("S0001/*.nii.gz"))
        rendering = render_face(load_ct(scan))
    shipped = FaceEmbedder.load()
    paper = FaceEmbedder(
        CONFIGS["paper"], ResNetEmbedder(CONFIGS["paper"]), shipped.segmenter, "untrained"
    )
    rows = {}
    for name, model in (("default (shipped)", shipped), ("paper", paper)):
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            model.template(rendering)
            times.append(time.perf_counter() - t)
        rows[name] = {"embed_90_views_s": round(min(times), 3)}
    rows["default (shipped)"]["train_images_per_s"] = round(
        train_rate("default", 96, args.repeats), 1
    )
    rows["paper"]["train_images_per_s"] = round(train_rate("paper", 30, args.repeats), 2)
    print(f"{'configuration':>20} {'embed 90 views s':>17} {'train images/s':>15}")
    for name, r in rows.items():
        print(f"{name:>20} {r['embed_90_views_s']:17.3f} {r['train_images_per_s']:15.2f}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "embedding.json"
    out.write_text(json.dumps({"threads": args.threads, "rows": rows}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
