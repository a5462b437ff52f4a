"""Two CPU processes (gloo): gathered contrastive losses under DDP give the single-process gradients."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import pairkit.losses as L
from pairkit.errors import InputError
from pairkit.losses import distributed as D

WORLD = 2
N_GLOBAL, D_IN, D_OUT = 12, 5, 4


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _data():
    gen = torch.Generator().manual_seed(7)
    xq = torch.randn(N_GLOBAL, D_IN, generator=gen, dtype=torch.float64)
    xk = xq + 0.3 * torch.randn(N_GLOBAL, D_IN, generator=gen, dtype=torch.float64)
    # Two rows per label (rows 2j and 2j + 1); rank r holds rows r, r + 2, ..., so every positive of a row
    # lives on the other rank and only reaches it through the gather.
    labels = torch.arange(N_GLOBAL // 2).repeat_interleave(2)
    return xq, xk, labels


def _model():
    torch.manual_seed(3)
    return torch.nn.Linear(D_IN, D_OUT).double()


CASES = [
    ("clip", dict(temperature=0.3)),
    ("infonce", dict(temperature=0.2)),
    ("ntxent", dict(temperature=0.25)),
    ("supcon", dict(temperature=0.5)),
]


def _run_case(name, kwargs, model, xq, xk, labels, dist_mode):
    """Loss and gradient of the model weight; dist_mode None = single process on the full batch."""
    model.zero_grad()
    if name in ("clip", "infonce"):
        out = model(torch.cat([xq, xk]))
        q, k = out[: xq.shape[0]], out[xq.shape[0] :]
        if dist_mode is None:
            loss = L.get(name)(q, k, **kwargs)
        else:
            fn = D.distributed_clip if name == "clip" else D.distributed_infonce
            loss = fn(q, k, local_loss=dist_mode == "local", chunk_size=3, **kwargs)
    else:
        emb = model(xq)
        if dist_mode is None:
            loss = L.get(name)(emb, labels, **kwargs)
        else:
            fn = D.distributed_ntxent if name == "ntxent" else D.distributed_supcon
            loss = fn(emb, labels, local_loss=dist_mode == "local", chunk_size=5, **kwargs)
    loss.backward()
    return loss.detach().clone(), model.module.weight.grad.clone() if dist_mode else model.weight.grad.clone()


def _worker(rank, port, out_dir):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        torch.set_num_threads(1)
        xq, xk, labels = _data()
        rows = torch.arange(N_GLOBAL)[rank::WORLD]
        ddp = torch.nn.parallel.DistributedDataParallel(_model())
        results = {}
        for name, kwargs in CASES:
            for mode in ("local", "full"):
                results[(name, mode)] = _run_case(name, kwargs, ddp, xq[rows], xk[rows], labels[rows], mode)
        # The gather itself: values in rank order and a gradient that sums over ranks.
        x = torch.full((rank + 1, 2), float(rank + 1), dtype=torch.float64, requires_grad=True)
        gathered = D.all_gather_with_grad(x)
        (gathered.sum() * (rank + 1)).backward()
        results["gather"] = (gathered.detach(), x.grad.clone())
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def distributed_results(tmp_path_factory):
    out_dir = str(tmp_path_factory.mktemp("ddp"))
    mp.spawn(_worker, args=(_free_port(), out_dir), nprocs=WORLD, join=True)
    return [torch.load(os.path.join(out_dir, f"rank{r}.pt")) for r in range(WORLD)]


def _single(name, kwargs):
    xq, xk, labels = _data()
    # The gathered batch is in rank order: rank 0's rows then rank 1's rows.
    order = torch.cat([torch.arange(N_GLOBAL)[r::WORLD] for r in range(WORLD)])
    return _run_case(name, kwargs, _model(), xq[order], xk[order], labels[order], None)


@pytest.mark.parametrize("name,kwargs", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("mode", ["local", "full"])
def test_ddp_gradients_equal_single_process(distributed_results, name, kwargs, mode):
    ref_loss, ref_grad = _single(name, kwargs)
    losses = [res[(name, mode)][0] for res in distributed_results]
    for res in distributed_results:
        # DDP averaged the gradients over ranks; the gather's summed backward makes that the exact gradient.
        torch.testing.assert_close(res[(name, mode)][1], ref_grad, rtol=1e-9, atol=1e-12)
    if mode == "full":
        for loss in losses:
            torch.testing.assert_close(loss, ref_loss, rtol=1e-12, atol=1e-12)
    else:
        # Equal shares (same rows, same positive-pair count per rank): the mean of local means is the mean.
        torch.testing.assert_close(sum(losses) / WORLD, ref_loss, rtol=1e-12, atol=1e-12)


def test_all_gather_with_grad_unequal_sizes(distributed_results):
    expected = torch.tensor([[1.0, 1.0], [2.0, 2.0], [2.0, 2.0]], dtype=torch.float64)
    for rank, res in enumerate(distributed_results):
        gathered, grad = res["gather"]
        torch.testing.assert_close(gathered, expected)
        # d/dx_r of sum_r' (r'+1) * sum(gathered) = 1 + 2 for every entry of every rank
        torch.testing.assert_close(grad, torch.full((rank + 1, 2), 3.0, dtype=torch.float64))


def test_requires_initialised_process_group():
    with pytest.raises(InputError, match="init_process_group"):
        D.all_gather_with_grad(torch.zeros(2, 3))
