"""Memory-bounded exact row log-sum-exp of a scaled similarity matrix (the O(N^2) core of InfoNCE-type losses).

InfoNCE / NT-Xent, CLIP and SupCon only touch the full ``N x M`` logit matrix through per-row
log-sum-exps; everything else is linear in a few gathered logits and costs O(N D). So the one memory-heavy
operation is :func:`row_logsumexp`: for rows of ``q`` against all rows of ``k``

.. math::

    \\mathrm{lse}_i = \\log \\sum_{j \\notin E_i} \\exp(s\\, q_i^\\top k_j),

where the excluded set ``E_i`` holds ``j = i + self_offset`` (the anchor itself) and/or the columns whose label
equals row ``i``'s label. For large inputs it runs over row chunks inside a custom
:class:`torch.autograd.Function` that saves only the inputs and the ``O(N)`` statistics ``lse``; the backward
pass recomputes each chunk's logits and uses :math:`\\partial\\,\\mathrm{lse}_i / \\partial z_{ij} =
\\exp(z_{ij} - \\mathrm{lse}_i)`, so peak extra memory is ``O(chunk x M)`` and values and gradients equal the
dense computation up to floating-point summation order.
"""

from __future__ import annotations

import torch

from pairkit.errors import InputError

# Up to this many logits (64 MiB in float32) the dense path with ordinary autograd is used.
DENSE_ELEMENTS = 1 << 24

__all__: list[str] = []


def _excluded(
    start: int,
    stop: int,
    n_cols: int,
    device: torch.device,
    row_labels: torch.Tensor | None,
    col_labels: torch.Tensor | None,
    self_offset: int | None,
) -> torch.Tensor | None:
    """Boolean ``[stop - start, n_cols]`` mask of excluded logits (None when nothing is excluded)."""
    mask = None
    if row_labels is not None:
        mask = row_labels[start:stop, None] == col_labels[None, :]
    if self_offset is not None:
        rows = torch.arange(start, stop, device=device)
        cols = rows + self_offset
        keep = (cols >= 0) & (cols < n_cols)
        if mask is None:
            mask = torch.zeros(stop - start, n_cols, dtype=torch.bool, device=device)
        mask[(rows - start)[keep], cols[keep]] = True
    return mask


def _dense_row_logsumexp(q, k, scale, row_labels, col_labels, self_offset):
    logits = (q @ k.T) * scale
    mask = _excluded(0, q.shape[0], k.shape[0], q.device, row_labels, col_labels, self_offset)
    if mask is None:
        return torch.logsumexp(logits, dim=1)
    has_any = (~mask).any(dim=1)
    if bool(has_any.all()):
        return torch.logsumexp(logits.masked_fill(mask, float("-inf")), dim=1)
    # Rows with every column excluded get -inf; computing their lse on zeros keeps the gradient finite (0).
    logits = logits.masked_fill(mask | ~has_any[:, None], float("-inf"))
    logits = torch.where(has_any[:, None], logits, torch.zeros((), dtype=logits.dtype, device=logits.device))
    lse = torch.logsumexp(logits, dim=1)
    return torch.where(has_any, lse, torch.full_like(lse, float("-inf")))


class _ChunkedRowLogSumExp(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, scale, row_labels, col_labels, self_offset, chunk):
        n, m = q.shape[0], k.shape[0]
        out = torch.empty(n, dtype=q.dtype, device=q.device)
        s = float(scale)
        for start in range(0, n, chunk):
            stop = min(start + chunk, n)
            logits = torch.mm(q[start:stop], k.T).mul_(s)
            mask = _excluded(start, stop, m, q.device, row_labels, col_labels, self_offset)
            if mask is not None:
                logits.masked_fill_(mask, float("-inf"))
            out[start:stop] = torch.logsumexp(logits, dim=1)
        ctx.save_for_backward(q, k, scale, out, row_labels, col_labels)
        ctx.self_offset, ctx.chunk = self_offset, chunk
        return out

    @staticmethod
    def backward(ctx, grad_out):
        q, k, scale, lse, row_labels, col_labels = ctx.saved_tensors
        need_q, need_k, need_s = ctx.needs_input_grad[:3]
        n, m = q.shape[0], k.shape[0]
        s = float(scale)
        grad_q = torch.zeros_like(q) if need_q else None
        grad_k = torch.zeros_like(k) if need_k else None
        grad_s = torch.zeros((), dtype=q.dtype, device=q.device)
        # A row with nothing left (lse = -inf) contributes no gradient.
        safe_lse = torch.where(torch.isfinite(lse), lse, torch.zeros_like(lse))
        g = torch.where(torch.isfinite(lse), grad_out, torch.zeros_like(grad_out))
        for start in range(0, n, ctx.chunk):
            stop = min(start + ctx.chunk, n)
            sims = torch.mm(q[start:stop], k.T)
            w = sims * s
            mask = _excluded(start, stop, m, q.device, row_labels, col_labels, ctx.self_offset)
            if mask is not None:
                w.masked_fill_(mask, float("-inf"))
            # w <- g_i * softmax_ij, the gradient of sum_i g_i lse_i with respect to the logit z_ij
            w.sub_(safe_lse[start:stop, None]).exp_().mul_(g[start:stop, None])
            if need_s:
                grad_s += torch.dot(w.reshape(-1), sims.reshape(-1))
            del sims
            if need_q:
                grad_q[start:stop] = torch.mm(w, k).mul_(s)
            if need_k:
                grad_k.addmm_(w.T, q[start:stop], alpha=s)
        return grad_q, grad_k, (grad_s if need_s else None), None, None, None, None


def row_logsumexp(
    q: torch.Tensor,
    k: torch.Tensor,
    scale: torch.Tensor,
    *,
    row_labels: torch.Tensor | None = None,
    col_labels: torch.Tensor | None = None,
    self_offset: int | None = None,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Per-row log-sum-exp of ``scale * q @ k.T`` over the non-excluded columns (``-inf`` for empty rows).

    ``q`` [N, D], ``k`` [M, D], ``scale`` a 0-dim tensor (may require grad). Column ``j`` is excluded from row
    ``i`` when ``row_labels[i] == col_labels[j]`` (both given) or ``j == i + self_offset``. ``chunk_size=None``
    picks the dense path when ``N * M`` is at most :data:`DENSE_ELEMENTS` and chunks of about that many logits
    otherwise; an integer forces the chunked path with that many rows per chunk.
    """
    n, m = q.shape[0], k.shape[0]
    if chunk_size is None:
        if n * m <= DENSE_ELEMENTS:
            return _dense_row_logsumexp(q, k, scale, row_labels, col_labels, self_offset)
        chunk_size = max(1, DENSE_ELEMENTS // max(m, 1))
    elif isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise InputError(f"chunk_size must be a positive integer or None, got {chunk_size!r}")
    if n == 0:
        return q.new_zeros(0) + 0 * scale
    scale = torch.as_tensor(scale, dtype=q.dtype, device=q.device)
    return _ChunkedRowLogSumExp.apply(q, k, scale, row_labels, col_labels, self_offset, chunk_size)
