"""Log-probabilities of completion tokens without the ``[batch, time, vocab]`` log-softmax.

Preference losses need :math:`\\log\\pi(y\\mid x) = \\sum_t \\log\\pi(y_t \\mid x, y_{<t})` over the
completion tokens only. Computing ``log_softmax(logits)`` first materialises (and keeps for backward) a tensor
of ``batch × time × vocab`` floats — 4 GiB at batch 8, length 1,024 and vocabulary 128,000 in float32.
Here the log-partition function is taken chunk by chunk over positions; only completion positions count.

* :func:`token_logps_from_logits` starts from existing logits and never builds their log-softmax; its
  backward writes :math:`\\partial\\ell/\\partial z = g\\,(\\mathbb{1}_{y} - \\operatorname{softmax}(z))`
  chunk by chunk into the one gradient buffer that autograd needs anyway.
* :func:`token_logps_from_hidden` starts from the final hidden states and the output projection (``lm_head``
  weight and optional bias): each chunk of logits is computed, reduced to ``[chunk]`` numbers and discarded,
  and recomputed in backward, so the full logits tensor never exists.

Values and gradients are exact (the same arithmetic as the naive formula, in float32 or float64 per chunk).
"""

from __future__ import annotations

import torch

from pairkit.errors import InputError

__all__ = [
    "completion_logps",
    "sequence_logps",
    "token_logps_from_hidden",
    "token_logps_from_logits",
]

IGNORE_INDEX = -100


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    # Half-precision logits lose the log-partition function to rounding: accumulate in float32.
    return torch.float64 if dtype == torch.float64 else torch.float32


def _select_positions(
    labels: torch.Tensor, mask: torch.Tensor | None, *, shift: bool, ignore_index: int, name: str
) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
    """Flat indices of the scored positions (into ``[batch * time]`` predictions) and their target tokens.

    With ``shift`` the prediction at position ``t`` scores token ``t + 1`` (causal LM); the returned values
    are placed at the label's position, so ``out[:, 0]`` is always 0.
    """
    if labels.dim() != 2:
        raise InputError(f"labels must have shape [batch, time], got {list(labels.shape)}")
    valid = labels != ignore_index
    if mask is not None:
        if mask.shape != labels.shape:
            raise InputError(f"mask shape {list(mask.shape)} must equal labels shape {list(labels.shape)}")
        valid = valid & mask.to(torch.bool)
    batch, time = labels.shape
    if shift:
        valid = valid.clone()
        valid[:, 0] = False
    label_pos = valid.reshape(-1).nonzero().squeeze(1)
    pred_pos = label_pos - 1 if shift else label_pos
    targets = labels.reshape(-1)[label_pos]
    return pred_pos, targets, (batch, time)


def _scatter_back(values: torch.Tensor, label_pos: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    out = values.new_zeros(shape[0] * shape[1])
    return out.index_copy(0, label_pos, values).reshape(shape)


class _LogitsLogps(torch.autograd.Function):
    """``z[n, y_n] - logsumexp(z[n])`` for selected rows of flat logits, chunked in forward and backward."""

    @staticmethod
    def forward(ctx, flat_logits, rows, targets, chunk_size):
        cdtype = _compute_dtype(flat_logits.dtype)
        out = torch.empty(rows.numel(), dtype=cdtype, device=flat_logits.device)
        lse = torch.empty_like(out)
        for start in range(0, rows.numel(), chunk_size):
            sl = slice(start, start + chunk_size)
            z = _rows(flat_logits, rows[sl]).to(cdtype)
            lse[sl] = torch.logsumexp(z, dim=-1)
            out[sl] = z.gather(1, targets[sl, None]).squeeze(1) - lse[sl]
        ctx.save_for_backward(flat_logits, rows, targets, lse)
        ctx.chunk_size = chunk_size
        return out

    @staticmethod
    def backward(ctx, grad_out):
        flat_logits, rows, targets, lse = ctx.saved_tensors
        grad = torch.zeros_like(flat_logits)
        cdtype = lse.dtype
        for start in range(0, rows.numel(), ctx.chunk_size):
            sl = slice(start, start + ctx.chunk_size)
            r = rows[sl]
            z = _rows(flat_logits, r).to(cdtype)
            g = grad_out[sl, None].to(cdtype)
            gz = (z - lse[sl, None]).exp_().mul_(-g)  # z may be a view of the saved logits: not in place
            gz.scatter_add_(1, targets[sl, None], g)
            if _contiguous(r):
                grad[int(r[0]) : int(r[-1]) + 1] = gz  # each row is scored once: plain copy, no index_add
            else:
                grad.index_add_(0, r, gz.to(grad.dtype))
        return grad, None, None, None


def _contiguous(rows: torch.Tensor) -> bool:
    return rows.numel() > 0 and int(rows[-1]) - int(rows[0]) + 1 == rows.numel()


def _rows(flat: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """The selected rows of ``flat``: a view when they are a contiguous range (no copy of chunk × vocab)."""
    if _contiguous(rows):
        return flat[int(rows[0]) : int(rows[-1]) + 1]
    return flat.index_select(0, rows)


class _HiddenLogps(torch.autograd.Function):
    """Like :class:`_LogitsLogps` for ``z = h W^T + b``, recomputing each chunk of logits in backward."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, chunk_size):
        cdtype = _compute_dtype(weight.dtype)
        out = torch.empty(hidden.shape[0], dtype=cdtype, device=hidden.device)
        lse = torch.empty_like(out)
        for start in range(0, hidden.shape[0], chunk_size):
            sl = slice(start, start + chunk_size)
            z = _chunk_logits(hidden[sl], weight, bias, cdtype)
            lse[sl] = torch.logsumexp(z, dim=-1)
            out[sl] = z.gather(1, targets[sl, None]).squeeze(1) - lse[sl]
        ctx.save_for_backward(hidden, weight, bias, targets, lse)
        ctx.chunk_size = chunk_size
        return out

    @staticmethod
    def backward(ctx, grad_out):
        hidden, weight, bias, targets, lse = ctx.saved_tensors
        cdtype = lse.dtype
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        grad_h = torch.empty_like(hidden) if need_h else None
        grad_w = torch.zeros(weight.shape, dtype=cdtype, device=weight.device) if need_w else None
        grad_b = torch.zeros(weight.shape[0], dtype=cdtype, device=weight.device) if need_b else None
        w = weight.to(cdtype)
        for start in range(0, hidden.shape[0], ctx.chunk_size):
            sl = slice(start, start + ctx.chunk_size)
            h = hidden[sl].to(cdtype)
            z = _chunk_logits(h, w, bias, cdtype)
            g = grad_out[sl, None].to(cdtype)
            gz = torch.exp(z.sub_(lse[sl, None])).mul_(-g)
            gz.scatter_add_(1, targets[sl, None], g)
            if need_h:
                grad_h[sl] = (gz @ w).to(hidden.dtype)
            if need_w:
                grad_w.addmm_(gz.T, h)
            if need_b:
                grad_b += gz.sum(0)
        grad_w = grad_w.to(weight.dtype) if need_w else None
        grad_b = grad_b.to(bias.dtype) if need_b else None
        return grad_h, grad_w, grad_b, None, None


def _chunk_logits(h, weight, bias, cdtype):
    z = h.to(cdtype) @ weight.to(cdtype).T
    if bias is not None:
        z += bias.to(cdtype)
    return z


def token_logps_from_logits(
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    shift: bool = True,
    chunk_size: int = 1024,
    ignore_index: int = IGNORE_INDEX,
) -> torch.Tensor:
    """Per-token log-probabilities of ``labels`` under ``logits``, chunked over positions.

    .. math::

        \\ell_{b,t} = z_{b,t-1,y_{b,t}} - \\log\\sum_v \\exp z_{b,t-1,v}
        \\quad\\text{for masked-in } t \\ge 1,\\qquad \\ell_{b,t} = 0 \\text{ elsewhere}

    (without ``shift``, the prediction at ``t`` scores ``y_{b,t}``). The log-softmax over the vocabulary is
    never materialised: at most ``chunk_size × vocab`` values are live at once in forward and backward.
    The causal-LM factorisation is from Radford et al. (2018), "Improving Language Understanding by
    Generative Pre-Training".

    Args:
        logits: ``[batch, time, vocab]`` (any float dtype; chunks are evaluated in float32, or float64).
        labels: ``[batch, time]`` token ids; ``ignore_index`` entries score 0.
        mask: optional ``[batch, time]`` bool completion mask over the labels.
        shift: causal-LM alignment (prediction ``t - 1`` scores label ``t``).
        chunk_size: positions evaluated together.

    Returns:
        ``[batch, time]`` log-probabilities aligned with ``labels`` (float32, or float64 for float64 input).
    """
    if logits.dim() != 3 or logits.shape[:2] != labels.shape:
        raise InputError(
            f"logits must be [batch, time, vocab] matching labels [batch, time]; got logits "
            f"{list(logits.shape)} and labels {list(labels.shape)}"
        )
    _check_chunk(chunk_size)
    pred_pos, targets, shape = _select_positions(labels, mask, shift=shift, ignore_index=ignore_index, name="labels")
    _check_targets(targets, logits.shape[-1])
    flat = logits.reshape(-1, logits.shape[-1])
    values = _LogitsLogps.apply(flat, pred_pos, targets, chunk_size)
    return _scatter_back(values, pred_pos + 1 if shift else pred_pos, shape)


def token_logps_from_hidden(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    *,
    bias: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    shift: bool = True,
    chunk_size: int = 1024,
    ignore_index: int = IGNORE_INDEX,
) -> torch.Tensor:
    """Per-token log-probabilities from final hidden states and the output projection, chunked.

    .. math::

        z_{b,t} = W h_{b,t} + c,\\qquad
        \\ell_{b,t} = z_{b,t-1,y_{b,t}} - \\log\\sum_v \\exp z_{b,t-1,v}

    The logits of a chunk of positions exist only inside the chunk's forward step and are recomputed in
    backward (gradient checkpointing, Chen et al. (2016), "Training Deep Nets with Sublinear Memory Cost"),
    so memory is ``O(chunk_size × vocab)`` instead of ``O(batch × time × vocab)``. Only masked-in
    positions are evaluated.

    Args:
        hidden: ``[batch, time, hidden]`` final hidden states (after the last norm).
        weight: ``[vocab, hidden]`` output projection (``lm_head.weight``).
        labels: ``[batch, time]`` token ids; ``ignore_index`` entries score 0.
        bias: optional ``[vocab]`` output bias.
        mask: optional ``[batch, time]`` bool completion mask over the labels.

    Returns:
        ``[batch, time]`` log-probabilities aligned with ``labels`` (0 where not scored).
    """
    if hidden.dim() != 3 or hidden.shape[:2] != labels.shape:
        raise InputError(
            f"hidden must be [batch, time, hidden] matching labels [batch, time]; got hidden "
            f"{list(hidden.shape)} and labels {list(labels.shape)}"
        )
    if weight.dim() != 2 or weight.shape[1] != hidden.shape[-1]:
        raise InputError(f"weight must be [vocab, {hidden.shape[-1]}], got {list(weight.shape)}")
    if bias is not None and bias.shape != (weight.shape[0],):
        raise InputError(f"bias must be [{weight.shape[0]}], got {list(bias.shape)}")
    _check_chunk(chunk_size)
    pred_pos, targets, shape = _select_positions(labels, mask, shift=shift, ignore_index=ignore_index, name="labels")
    _check_targets(targets, weight.shape[0])
    h = hidden.reshape(-1, hidden.shape[-1]).index_select(0, pred_pos)
    values = _HiddenLogps.apply(h, weight, bias, targets, chunk_size)
    return _scatter_back(values, pred_pos + 1 if shift else pred_pos, shape)


def sequence_logps(
    token_logps: torch.Tensor, mask: torch.Tensor | None = None, *, average: bool = False
) -> torch.Tensor:
    """Sum (or mean, for length-normalised losses such as SimPO) of per-token log-probabilities.

    .. math::

        \\log\\pi(y\\mid x) = \\sum_{t \\in \\text{completion}} \\ell_t,\\qquad
        \\text{average: } \\frac{1}{|y|}\\sum_t \\ell_t

    Args:
        token_logps: ``[batch, time]`` from :func:`token_logps_from_logits` / :func:`token_logps_from_hidden`.
        mask: ``[batch, time]`` bool; positions that were scored (the shifted completion mask).
        average: divide by the number of scored tokens (Meng et al. (2024), "SimPO: Simple Preference
            Optimization with a Reference-Free Reward").

    Returns:
        ``[batch]``.
    """
    total = token_logps.sum(-1)
    if not average:
        return total
    if mask is None:
        raise InputError("sequence_logps(average=True) needs the mask of scored tokens")
    count = mask.sum(-1).clamp_min(1).to(total.dtype)
    return total / count


def completion_logps(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    completion_mask: torch.Tensor,
    *,
    chunk_size: int = 1024,
) -> torch.Tensor:
    """Per-token log-probabilities of completion tokens under a transformers causal LM, never building logits.

    .. math::

        \\ell_{b,t} = \\log\\operatorname{softmax}(W h_{b,t-1} + c)_{y_{b,t}} \\cdot m_{b,t}

    Runs the decoder (``model.get_decoder()``) for the final hidden states and applies
    :func:`token_logps_from_hidden` with ``model.get_output_embeddings()``. Models that transform logits
    after the projection (final-logit soft-capping, logit scaling) fall back to the model's logits and
    :func:`token_logps_from_logits`.

    Args:
        input_ids, attention_mask, completion_mask: ``[batch, time]``; the last marks scored tokens.

    Returns:
        ``[batch, time]``.
    """
    config = getattr(model, "config", None)
    transformed = any(
        getattr(config, key, None) not in (None, 1.0) for key in ("final_logit_softcapping", "logit_scale")
    )
    head = model.get_output_embeddings() if not transformed else None
    decoder = model.get_decoder() if hasattr(model, "get_decoder") and head is not None else None
    if decoder is None or decoder is model or not isinstance(getattr(head, "weight", None), torch.Tensor):
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
        return token_logps_from_logits(logits, input_ids, mask=completion_mask, chunk_size=chunk_size)
    from pairkit.train._inputs import without_cache

    hidden = decoder(input_ids=input_ids, attention_mask=attention_mask, **without_cache(decoder)).last_hidden_state
    return token_logps_from_hidden(
        hidden,
        head.weight,
        input_ids,
        bias=getattr(head, "bias", None),
        mask=completion_mask,
        chunk_size=chunk_size,
    )


def _check_chunk(chunk_size: int) -> None:
    if int(chunk_size) < 1:
        raise InputError(f"chunk_size must be a positive integer, got {chunk_size!r}")


def _check_targets(targets: torch.Tensor, vocab: int) -> None:
    if targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= vocab):
        bad = targets[(targets < 0) | (targets >= vocab)][0].item()
        raise InputError(
            f"labels contain token id {bad} outside the vocabulary [0, {vocab}); "
            f"mark padding with ignore_index={IGNORE_INDEX} or mask=False"
        )
