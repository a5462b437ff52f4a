"""Learning-to-rank losses: pairkit against allRank (forward + backward time, peak memory, agreement).

allRank 1.4.3 pins torch<=1.8, so it cannot be pip-installed beside torch 2.x; its loss code runs unchanged on
torch 2.13 though. Fetch the wheel without dependencies and point ALLRANK_SRC at the unpacked folder:

    pip download --no-deps -d /tmp/allrank allRank==1.4.3 && unzip -q -o /tmp/allrank/*.whl -d /tmp/allrank/src
    ALLRANK_SRC=/tmp/allrank/src python benchmarks/bench_ranking_losses.py           # ~1 minute
    python benchmarks/bench_ranking_losses.py --quick                                 # smaller sizes

The two allRank modules that import torchvision/gcsfs (``allrank.data.dataset_loading`` and
``allrank.models.model_utils``) are replaced by stubs holding the two names the losses use. Without allRank
the script times pairkit alone. Peak memory is the high-water mark of the bytes held by tensors that torch ops
create during one forward + backward (counted by a TorchDispatchMode, released when their storage is freed),
so the inputs are excluded and allocator caching cannot blur it. Times are the best of ``--repeats`` runs in
process CPU time with one torch thread. Each method's loss value is compared
with allRank's under the same reduction (relative difference column).
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import sys
import time
import types
import weakref

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from pairkit.losses import ranking as R


def load_allrank():
    src = os.environ.get("ALLRANK_SRC")
    if src:
        sys.path.insert(0, src)
    try:
        import allrank  # noqa: F401
    except ImportError:
        return None
    loading = types.ModuleType("allrank.data.dataset_loading")
    loading.PADDED_Y_VALUE = -1
    loading.PADDED_INDEX_VALUE = -1
    utils = types.ModuleType("allrank.models.model_utils")
    utils.get_torch_device = lambda: torch.device("cpu")
    sys.modules["allrank.data.dataset_loading"] = loading
    sys.modules["allrank.models.model_utils"] = utils
    import allrank.models.losses as losses

    return losses


class _LiveTensorBytes(TorchDispatchMode):
    """Counts the bytes of every tensor storage created by torch ops while active (forward and backward) and
    released again when the storage is freed; ``peak`` is the high-water mark of the live total."""

    def __init__(self):
        super().__init__()
        self.live = self.peak = 0
        self._seen = weakref.WeakKeyDictionary()

    def _release(self, nbytes: int) -> None:
        self.live -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                storage = t.untyped_storage()
                if storage in self._seen:
                    continue  # a view of a storage already counted
                nbytes = storage.nbytes()
                self._seen[storage] = nbytes
                self.live += nbytes
                self.peak = max(self.peak, self.live)
                weakref.finalize(storage, self._release, nbytes)
        return out


def peak_mib(step) -> float:
    """Peak MiB of tensor memory allocated by ``step()`` (forward + backward) beyond its inputs."""
    gc.collect()
    tracker = _LiveTensorBytes()
    with tracker:
        step()
    return tracker.peak / 2**20


def time_ms(step, repeats: int) -> float:
    """Best-of-``repeats`` CPU time of ``step()`` in ms (one torch thread, so CPU time ≈ compute time and is
    not inflated by other processes waiting for the same cores)."""
    step()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.process_time()
        step()
        times.append(time.process_time() - t0)
    return 1000 * min(times)


def make_batch(n_lists: int, n_items: int, seed: int = 0):
    """Scores, graded labels 0-4 (≥1 relevant per list) and a trailing-padding mask (allRank's layout)."""
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(n_lists, n_items, generator=g)
    labels = torch.randint(0, 5, (n_lists, n_items), generator=g).float()
    labels[:, 0] = labels[:, 0].clamp_min(1)
    lengths = torch.randint(n_items // 2, n_items + 1, (n_lists,), generator=g)
    lengths[0] = n_items
    mask = torch.arange(n_items) < lengths[:, None]
    return scores, labels, mask


def real_batch():
    """Scores of a least-squares linear model on rank.train (201 lists, up to 27 documents)."""
    from pairkit.data.letor import read_letor

    root = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "ltr", "rank.train")
    if not os.path.exists(root):
        return None
    d = read_letor(root, n_features=300, dtype=np.float64)
    x = d.features[d.mask]
    w, *_ = np.linalg.lstsq(np.c_[x, np.ones(len(x))], d.labels[d.mask], rcond=None)
    scores = torch.tensor(d.features @ w[:-1] + w[-1], dtype=torch.float32)
    return scores, torch.tensor(d.labels, dtype=torch.float32), torch.tensor(d.mask)


def _n_pairs(labels, mask):
    pm = mask[:, :, None] & mask[:, None, :] & (labels[:, :, None] > labels[:, None, :])
    return pm.sum()


def methods(labels, mask, cont_labels):
    """(name, pairkit fn, allRank fn, allRank labels) with the same reduction on both sides."""
    n_pairs = _n_pairs(labels, mask)

    def ranknet_pk(s, y, mask):
        # allRank averages over all pairs of the batch: sum of per-list sums / number of pairs
        total = R.pairwise_ranking_loss(
            s, y, pair_loss=lambda d: torch.nn.functional.softplus(-d), normalize=False, mask=mask, reduction="sum"
        )
        return total / n_pairs

    return [
        ("listNet", lambda s, y, m: R.listnet_loss(s, y, mask=m), "listNet", {}, labels),
        ("listMLE", lambda s, y, m: R.listmle_loss(s, y, mask=m), "listMLE", {}, cont_labels),
        ("rankNet", ranknet_pk, "rankNet", {}, labels),
        (
            "lambdaLoss NDCG-Loss2++",
            lambda s, y, m: R.lambda_loss(s, y, mask=m, reduction="sum"),
            "lambdaLoss",
            {"weighing_scheme": "ndcgLoss2PP_scheme"},
            labels,
        ),
        (
            "lambdaLoss LambdaRank@5",
            lambda s, y, m: R.lambdarank_loss(s, y, k=5, mask=m, reduction="sum"),
            "lambdaLoss",
            {"weighing_scheme": "lambdaRank_scheme", "k": 5},
            labels,
        ),
        ("approxNDCG", lambda s, y, m: R.approx_ndcg_loss(s, y, mask=m), "approxNDCGLoss", {}, labels),
        ("neuralNDCG", lambda s, y, m: R.neural_ndcg_loss(s, y, mask=m), "neuralNDCG", {}, labels),
    ]


def run_config(title, batch, allrank, repeats):
    scores, labels, mask = batch
    # tie-free labels for ListMLE: allRank breaks label ties at random
    cont = labels + torch.rand(labels.shape, generator=torch.Generator().manual_seed(1)) * 0.5
    padded = lambda y: y.masked_fill(~mask, -1.0)  # noqa: E731  (allRank's padding sentinel)
    rows = []
    for name, pk_fn, ar_name, ar_kw, y in methods(labels, mask, cont):

        def pk_step(pk_fn=pk_fn, y=y):
            x = scores.clone().requires_grad_(True)
            out = pk_fn(x, y, mask)
            out.backward()
            return out.detach()

        pk_ms = time_ms(pk_step, repeats)
        pk_mem = peak_mib(pk_step)
        row = [name, pk_ms, pk_mem]
        if allrank is not None:
            fn = getattr(allrank, ar_name)

            def ar_step(fn=fn, y=y, ar_kw=ar_kw):
                x = scores.clone().requires_grad_(True)
                out = fn(x, padded(y), **ar_kw)
                out.backward()
                return out.detach()

            ar_ms = time_ms(ar_step, repeats)
            ar_mem = peak_mib(ar_step)
            ar_value = float(ar_step())
            delta = abs(float(pk_step()) - ar_value) / max(abs(ar_value), 1e-30)
            row += [ar_ms, ar_mem, ar_ms / pk_ms, delta]
        rows.append(row)
    print(f"\n### {title}: {scores.shape[0]} lists × up to {scores.shape[1]} items, float32\n")
    if allrank is None:
        print("| loss | pairkit ms | pairkit peak MiB |")
        print("|---|---:|---:|")
        for r in rows:
            print(f"| {r[0]} | {r[1]:.2f} | {r[2]:.1f} |")
    else:
        print(
            "| loss | pairkit ms | allRank ms | allRank/pairkit | pairkit peak MiB | allRank peak MiB | rel. Δ loss |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|")
        for r in rows:
            print(f"| {r[0]} | {r[1]:.2f} | {r[3]:.2f} | {r[5]:.2f}× | {r[2]:.1f} | {r[4]:.1f} | {r[6]:.1e} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: stable on a shared machine)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    allrank = load_allrank()
    repeats = args.repeats or (3 if args.quick else 7)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")
    print(
        "allRank: "
        + ("allrank " + str(getattr(sys.modules.get("allrank"), "__file__", "")) if allrank else "not found")
    )
    configs = [("synthetic, LETOR-sized slates", make_batch(64 if args.quick else 256, 30))]
    configs.append(("synthetic, long lists", make_batch(8 if args.quick else 32, 64 if args.quick else 128, seed=1)))
    real = real_batch()
    if real is not None:
        configs.append(("rank.train (LightGBM example), linear-model scores", real))
    for title, batch in configs:
        run_config(title, batch, allrank, repeats)


if __name__ == "__main__":
    main()
