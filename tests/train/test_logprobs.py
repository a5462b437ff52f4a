import pytest

torch = pytest.importorskip("torch")

from pairkit.errors import InputError  # noqa: E402
from pairkit.train.logprobs import (  # noqa: E402
    completion_logps,
    sequence_logps,
    token_logps_from_hidden,
    token_logps_from_logits,
)


def naive_token_logps(logits, labels, mask):
    """Obvious reference: full log_softmax, shift, gather, mask."""
    logp = torch.log_softmax(logits[:, :-1], dim=-1)
    tgt = labels[:, 1:].clamp_min(0)
    vals = logp.gather(-1, tgt[..., None]).squeeze(-1)
    m = mask[:, 1:] & (labels[:, 1:] != -100)
    out = torch.zeros(labels.shape, dtype=vals.dtype)
    out[:, 1:] = torch.where(m, vals, torch.zeros_like(vals))
    return out


def make_inputs(dtype, batch=3, time=7, hidden=5, vocab=11, seed=0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(batch, time, hidden, generator=g, dtype=dtype)
    w = torch.randn(vocab, hidden, generator=g, dtype=dtype)
    b = torch.randn(vocab, generator=g, dtype=dtype)
    labels = torch.randint(0, vocab, (batch, time), generator=g)
    labels[0, -2:] = -100  # padding
    mask = torch.rand(batch, time, generator=g) > 0.3
    return h, w, b, labels, mask


@pytest.mark.parametrize("chunk", [1, 4, 1000])
def test_hidden_matches_naive_float64_values_and_grads(chunk):
    h, w, b, labels, mask = make_inputs(torch.float64)
    for t in (h, w, b):
        t.requires_grad_(True)
    ours = token_logps_from_hidden(h, w, labels, bias=b, mask=mask, chunk_size=chunk)
    ref = naive_token_logps(h @ w.T + b, labels, mask)
    torch.testing.assert_close(ours, ref, atol=1e-10, rtol=0)
    coef = torch.randn(ours.shape, dtype=torch.float64)
    g_ours = torch.autograd.grad((ours * coef).sum(), (h, w, b))
    g_ref = torch.autograd.grad((ref * coef).sum(), (h, w, b))
    for a, r in zip(g_ours, g_ref):
        torch.testing.assert_close(a, r, atol=1e-10, rtol=0)


@pytest.mark.parametrize("chunk", [2, 1000])
def test_logits_matches_naive_float64_values_and_grads(chunk):
    h, w, b, labels, mask = make_inputs(torch.float64, seed=1)
    logits = (h @ w.T + b).detach().requires_grad_(True)
    ours = token_logps_from_logits(logits, labels, mask=mask, chunk_size=chunk)
    ref = naive_token_logps(logits, labels, mask)
    torch.testing.assert_close(ours, ref, atol=1e-10, rtol=0)
    coef = torch.randn(ours.shape, dtype=torch.float64)
    (g_ours,) = torch.autograd.grad((ours * coef).sum(), logits)
    (g_ref,) = torch.autograd.grad((ref * coef).sum(), logits)
    torch.testing.assert_close(g_ours, g_ref, atol=1e-10, rtol=0)


def test_float32_within_tolerance_of_float64_reference():
    h, w, b, labels, mask = make_inputs(torch.float64, batch=4, time=33, hidden=16, vocab=257, seed=2)
    ref = naive_token_logps(h @ w.T + b, labels, mask)
    h32, w32, b32 = (t.float().requires_grad_(True) for t in (h, w, b))
    ours = token_logps_from_hidden(h32, w32, labels, bias=b32, mask=mask, chunk_size=16)
    torch.testing.assert_close(ours.double(), ref, atol=1e-4, rtol=1e-5)
    from_logits = token_logps_from_logits((h32 @ w32.T + b32), labels, mask=mask, chunk_size=16)
    torch.testing.assert_close(from_logits.double(), ref, atol=1e-4, rtol=1e-5)
    ours.sum().backward()
    hd, wd, bd = (t.clone().requires_grad_(True) for t in (h, w, b))
    naive_token_logps(hd @ wd.T + bd, labels, mask).sum().backward()
    torch.testing.assert_close(w32.grad.double(), wd.grad, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(h32.grad.double(), hd.grad, atol=1e-4, rtol=1e-4)


def test_bf16_weights_accumulate_in_float32():
    h, w, b, labels, mask = make_inputs(torch.float64, seed=3)
    hb, wb = h.bfloat16(), w.bfloat16()
    ours = token_logps_from_hidden(hb, wb, labels, mask=mask)
    ref = naive_token_logps(hb.double() @ wb.double().T, labels, mask)
    assert ours.dtype == torch.float32
    torch.testing.assert_close(ours.double(), ref, atol=1e-4, rtol=1e-4)


def test_gradcheck_hidden_and_logits():
    h, w, b, labels, mask = make_inputs(torch.float64, batch=2, time=4, hidden=3, vocab=5, seed=4)
    for t in (h, w, b):
        t.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda h, w, b: token_logps_from_hidden(h, w, labels, bias=b, mask=mask, chunk_size=2), (h, w, b)
    )
    logits = torch.randn(2, 4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda z: token_logps_from_logits(z, labels, mask=mask, chunk_size=3), (logits,))


def test_no_shift_and_sequence_sums():
    h, w, b, labels, mask = make_inputs(torch.float64, seed=5)
    labels = labels.clamp_min(0)
    tok = token_logps_from_hidden(h, w, labels, mask=mask, shift=False)
    full = torch.log_softmax(h @ w.T, -1).gather(-1, labels[..., None]).squeeze(-1)
    torch.testing.assert_close(tok, torch.where(mask, full, torch.zeros_like(full)), atol=1e-12, rtol=0)
    torch.testing.assert_close(sequence_logps(tok), tok.sum(-1))
    avg = sequence_logps(tok, mask, average=True)
    torch.testing.assert_close(avg, tok.sum(-1) / mask.sum(-1).clamp_min(1))


def test_bad_input_raises():
    h, w, b, labels, mask = make_inputs(torch.float32)
    with pytest.raises(InputError, match="outside the vocabulary"):
        token_logps_from_hidden(h, w, labels.masked_fill(labels == -100, 99))
    with pytest.raises(InputError, match="weight must be"):
        token_logps_from_hidden(h, w.T, labels)
    with pytest.raises(InputError, match="chunk_size"):
        token_logps_from_logits(h @ w.T, labels, chunk_size=0)
    with pytest.raises(InputError, match="mask shape"):
        token_logps_from_logits(h @ w.T, labels, mask=mask[:, :2])


def test_completion_logps_matches_model_logits(tiny_lm):
    model, _ = tiny_lm
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, model.config.vocab_size, (2, 9), generator=g)
    attn = torch.ones_like(ids)
    attn[1, -3:] = 0
    comp = torch.zeros_like(ids, dtype=torch.bool)
    comp[:, 4:] = True
    comp &= attn.bool()
    ours = completion_logps(model, ids, attn, comp, chunk_size=3)
    logits = model(input_ids=ids, attention_mask=attn).logits.double()
    ref = naive_token_logps(logits, ids, comp)
    torch.testing.assert_close(ours.double(), ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("shift", [True, False])
def test_logits_unmasked_contiguous_rows_grads(shift):
    h, w, b, labels, _ = make_inputs(torch.float64, seed=6)
    labels = labels.clamp_min(0)
    logits = (h @ w.T).detach().requires_grad_(True)
    ours = token_logps_from_logits(logits, labels, shift=shift, chunk_size=5)
    full = torch.log_softmax(logits, -1)
    if shift:
        ref = torch.zeros_like(ours)
        ref[:, 1:] = full[:, :-1].gather(-1, labels[:, 1:, None]).squeeze(-1)
    else:
        ref = full.gather(-1, labels[..., None]).squeeze(-1)
    torch.testing.assert_close(ours, ref, atol=1e-12, rtol=0)
    coef = torch.randn(ours.shape, dtype=torch.float64)
    (g1,) = torch.autograd.grad((ours * coef).sum(), logits)
    (g2,) = torch.autograd.grad((ref * coef).sum(), logits)
    torch.testing.assert_close(g1, g2, atol=1e-12, rtol=0)
    torch.testing.assert_close(logits, h @ w.T)  # the saved logits were not modified in place
