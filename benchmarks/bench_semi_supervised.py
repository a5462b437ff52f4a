"""Semi-supervised classification: two moons (FixMatch, SimMatchV2's graph terms) and digits (ShrinkMatch).

Run: python benchmarks/bench_semi_supervised.py     (about 4 minutes on 2 shared cores)

Two moons: 2,000 points of scikit-learn's two moons (noise 0.08): 6 labelled (3 per class), 1,000 unlabelled, the
other 1,000 held out. A 2-32-32 ReLU encoder with a linear head, μ = 7, τ = 0.95, weak view = Gaussian jitter 0.03,
strong view = jitter 0.15, batch 6, 400 steps at lr 1e-2, three seeds. SimMatchV2 rows: the paper's EMA teacher and
projection head at the authors' settings, a faster teacher, and the configuration before they were added (the model
itself as teacher, no projection).

Digits: scikit-learn's 8x8 digits (1,797 images, 10 classes, pixels / 16): 20 labelled (2 per class), 1,000
unlabelled, 777 held out. A 64-64-64 ReLU encoder, μ = 7, τ = 0.95, weak view = jitter 0.05, strong view = jitter
0.3 and 20 % of the pixels zeroed, batch 20, 300 steps at lr 3e-3, three seeds. ShrinkMatch as the paper (auxiliary
head, certain-ratio weight) and as before (the classifier as head, no weight).

"supervised only" is the same run with the consistency term weighted 0 (it still draws the views, so every run
consumes the same random numbers). No peer is installed (USB / TorchSSL are image-first); the baseline is
pairkit's own supervised run.
"""

from __future__ import annotations

import time

import torch
from sklearn.datasets import load_digits, make_moons

from pairkit.train import TrainConfig, train_semi_supervised

GRAPH = "fixmatch_loss+simmatchv2_node_edge_loss+simmatchv2_edge_edge_loss"
SHRINK = "fixmatch_loss+shrinkmatch_loss"
MOONS = {  # title: (loss, extra options of train_semi_supervised)
    "supervised only": ("0*fixmatch_loss", {}),
    "FixMatch": ("fixmatch_loss", {}),
    "FixMatch + SimMatchV2 node-edge + edge-edge (EMA teacher m = 0.999, projection 128)": (GRAPH, {}),
    "same, EMA teacher m = 0.99": (GRAPH, {"ema_decay": 0.99}),
    "same, no teacher (m = 0)": (GRAPH, {"ema_decay": 0.0}),
    "same, no teacher and no projection (before)": (GRAPH, {"ema_decay": 0.0, "projection": None}),
    "FixMatch + ShrinkMatch (two classes: the term is 0)": (SHRINK, {}),
}
DIGITS = {
    "supervised only": ("0*fixmatch_loss", {}),
    "FixMatch": ("fixmatch_loss", {}),
    "FixMatch + ShrinkMatch (auxiliary head, certain-ratio weight)": (SHRINK, {}),
    "same, auxiliary head, no weight": (SHRINK, {"loss_options": {"certain_ratio": 1.0}}),
    "same, classifier as head, certain-ratio weight": (SHRINK, {"aux_head": "shared"}),
    "same, classifier as head, no weight (before)": (SHRINK, {"aux_head": "shared",
                                                              "loss_options": {"certain_ratio": 1.0}}),
}


def table(title, specs, lab, unl, tx, ty, width, weak, strong, config) -> None:
    print(f"\n{title}\n\n| method | held-out accuracy (mean of 3 seeds) | per seed | wall |\n|---|---|---|---|")
    for name, (spec, extra) in specs.items():
        extra = dict(extra)
        options = {"threshold": 0.95, **extra.pop("loss_options", {})}
        accs, t = [], time.perf_counter()
        for seed in range(3):
            torch.manual_seed(seed)
            enc = torch.nn.Sequential(torch.nn.Linear(tx.shape[1], width), torch.nn.ReLU(),
                                      torch.nn.Linear(width, width), torch.nn.ReLU()).double()  # fmt: skip
            res = train_semi_supervised(enc, lab, unl, weak_augment=weak, strong_augment=strong, loss=spec, ratio=7,
                                        loss_options=options, bank_size=256, config=config(seed), **extra)
            with torch.no_grad():
                accs.append(float((res.heads["classifier"](enc(tx)).argmax(-1) == ty).double().mean()))
        per_seed = ", ".join(f"{a:.3f}" for a in accs)
        print(f"| {name} | {sum(accs) / 3:.3f} | {per_seed} | {time.perf_counter() - t:.0f} s |", flush=True)


def main() -> None:
    x, y = make_moons(2000, noise=0.08, random_state=0)
    x, y = torch.tensor(x), torch.tensor(y)
    lab_idx = [int((y == c).nonzero()[k]) for c in (0, 1) for k in range(3)]
    table("Two moons, 6 labels", MOONS, [{"features": x[i], "label": int(y[i])} for i in lab_idx],
          [{"features": x[i]} for i in range(1000)], x[1000:], y[1000:], 32,
          lambda v: v + 0.03 * torch.randn_like(v), lambda v: v + 0.15 * torch.randn_like(v),
          lambda seed: TrainConfig(batch_size=6, max_steps=400, epochs=400, lr=1e-2, seed=seed, schedule="constant",
                                   max_grad_norm=None))  # fmt: skip

    x, y = load_digits(return_X_y=True)
    x, y = torch.tensor(x / 16.0), torch.tensor(y)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    lab_idx = [int(i) for c in range(10) for i in perm[y[perm] == c][:2]]
    rest = [int(i) for i in perm if int(i) not in set(lab_idx)]
    table("Digits, 20 labels", DIGITS, [{"features": x[i], "label": int(y[i])} for i in lab_idx],
          [{"features": x[i]} for i in rest[:1000]], x[rest[1000:]], y[rest[1000:]], 64,
          lambda v: v + 0.05 * torch.randn_like(v),
          lambda v: (v + 0.3 * torch.randn_like(v)) * (torch.rand_like(v) > 0.2),
          lambda seed: TrainConfig(batch_size=20, max_steps=300, epochs=300, lr=3e-3, seed=seed, schedule="constant",
                                   max_grad_norm=None))  # fmt: skip


if __name__ == "__main__":
    main()
