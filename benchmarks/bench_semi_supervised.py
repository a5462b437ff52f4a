"""Semi-supervised classification on two moons: supervised only vs FixMatch vs FixMatch + SimMatchV2's graph terms.

Run: python benchmarks/bench_semi_supervised.py     (about 4 minutes on 2 shared cores)

2,000 points of scikit-learn's two moons (noise 0.08): 6 labelled (3 per class), 1,000 unlabelled, the other 1,000
held out. A 2-32-32 ReLU encoder with a linear head, μ = 7, τ = 0.95, weak view = Gaussian jitter 0.03, strong view =
jitter 0.15, batch 6, 400 steps at lr 1e-2, three seeds. "supervised only" is the same run with the consistency term
weighted 0 (it still draws the views, so every run consumes the same random numbers). No peer is installed (USB /
TorchSSL are image-first); the baseline is pairkit's own supervised run.
"""

from __future__ import annotations

import time

import torch
from sklearn.datasets import make_moons

from pairkit.train import TrainConfig, train_semi_supervised

GRAPH = "fixmatch_loss+simmatchv2_node_edge_loss+simmatchv2_edge_edge_loss"
SPECS = {  # title: (loss, extra options of train_semi_supervised)
    "supervised only": ("0*fixmatch_loss", {}),
    "FixMatch": ("fixmatch_loss", {}),
    "FixMatch + SimMatchV2 node-edge + edge-edge (EMA teacher m = 0.999, projection 128)": (GRAPH, {}),
    "same, EMA teacher m = 0.99": (GRAPH, {"ema_decay": 0.99}),
    "same, no teacher (m = 0) and no projection (before)": (GRAPH, {"ema_decay": 0.0, "projection": None}),
    "FixMatch + ShrinkMatch (two classes: the term is 0)": ("fixmatch_loss+shrinkmatch_loss", {}),
}


def main() -> None:
    x, y = make_moons(2000, noise=0.08, random_state=0)
    x, y = torch.tensor(x), torch.tensor(y)
    lab_idx = [int((y == c).nonzero()[k]) for c in (0, 1) for k in range(3)]
    lab = [{"features": x[i], "label": int(y[i])} for i in lab_idx]
    unl = [{"features": x[i]} for i in range(1000)]
    tx, ty = x[1000:], y[1000:]
    print("| method | held-out accuracy (mean of 3 seeds) | per seed | wall |")
    print("|---|---|---|---|")
    for title, (spec, extra) in SPECS.items():
        accs, t = [], time.perf_counter()
        for seed in range(3):
            torch.manual_seed(seed)
            enc = torch.nn.Sequential(torch.nn.Linear(2, 32), torch.nn.ReLU(), torch.nn.Linear(32, 32),
                                      torch.nn.ReLU()).double()  # fmt: skip
            res = train_semi_supervised(
                enc, lab, unl, weak_augment=lambda v: v + 0.03 * torch.randn_like(v),
                strong_augment=lambda v: v + 0.15 * torch.randn_like(v), loss=spec, ratio=7,
                loss_options={"threshold": 0.95}, bank_size=256, **extra,
                config=TrainConfig(batch_size=6, max_steps=400, epochs=400, lr=1e-2, seed=seed, schedule="constant",
                                   max_grad_norm=None),
            )  # fmt: skip
            with torch.no_grad():
                accs.append(float((res.heads["classifier"](enc(tx)).argmax(-1) == ty).double().mean()))
        per_seed = ", ".join(f"{a:.3f}" for a in accs)
        print(f"| {title} | {sum(accs) / 3:.3f} | {per_seed} | {time.perf_counter() - t:.0f} s |")


if __name__ == "__main__":
    main()
