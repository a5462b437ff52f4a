"""SparsePO with a learned token mask: the trainer's loss equals a direct computation from full softmaxes."""

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from pairkit.errors import InputError  # noqa: E402
from pairkit.train import SparseMaskHead, TrainConfig, train_preference  # noqa: E402
from pairkit.train._steps import encode as _encode  # noqa: E402
from tests.train.conftest import build_model  # noqa: E402

ROWS = [{"prompt": "say alpha", "chosen": " alpha good", "rejected": " bad no"},
        {"prompt": "say yes", "chosen": " yes", "rejected": " no no no"}]  # fmt: skip
BETA = 0.5


def _manual(policy, reference, head, tokenizer, config):
    """-log sigma(beta [sum m_c rho_c - sum m_r rho_r - (sum m_r D_r - sum m_c D_c)]), unpadded forward passes."""
    losses = []
    for row in ROWS:
        parts = []
        for text in (row["chosen"], row["rejected"]):
            p, c, _ = _encode(tokenizer, row["prompt"], [text], config)[0]
            ids = torch.tensor([p + c])
            out = policy.model(input_ids=ids).last_hidden_state[0]
            lp = torch.log_softmax(policy.lm_head(out)[:-1], -1)
            lq = torch.log_softmax(reference(input_ids=ids).logits[0, :-1], -1)
            tokens = ids[0, 1:, None]
            rho = (lp.gather(1, tokens) - lq.gather(1, tokens))[:, 0][len(p) - 1 :]
            kl = (lq.exp() * (lq - lp)).sum(-1)[len(p) - 1 :]
            m = torch.relu(head.proj(out[:-1]))[:, 0][len(p) - 1 :]
            parts.append(((m * rho).sum(), (m * kl).sum()))
        (rc, dc), (rr, dr) = parts
        losses.append(-torch.nn.functional.logsigmoid(BETA * (rc - rr - (dr - dc))))
    return torch.stack(losses).mean()


def test_learned_mask_loss_equals_the_direct_computation_and_the_head_learns(tokenizer):
    policy = build_model(tokenizer, seed=0, dtype=torch.float64)
    reference = build_model(tokenizer, seed=1, dtype=torch.float64).eval()  # another model: rho != 0
    head = SparseMaskHead(policy.config.hidden_size).double()
    torch.manual_seed(3)
    torch.nn.init.normal_(head.proj.weight, std=0.5)  # a non-trivial mask, some tokens at 0
    config = TrainConfig(batch_size=2, max_steps=1, lr=1e-2)
    with torch.no_grad():
        expected = _manual(policy, reference, head, tokenizer, config)
    before = head.proj.weight.detach().clone()
    res = train_preference(policy, tokenizer, ROWS, loss="sparse_po", beta=BETA, config=config, reference=reference,
                           mask_head=head)  # fmt: skip
    assert res.history[0]["loss"] == pytest.approx(float(expected), rel=1e-9)
    assert not torch.equal(head.proj.weight, before)  # trained through the loss
    assert "sparse_po_mask.proj.weight" in policy.state_dict()


def test_mask_starts_uniform_so_the_first_step_is_the_unmasked_loss(tokenizer):
    config = TrainConfig(batch_size=2, max_steps=1, lr=1e-2)
    reference = build_model(tokenizer, seed=1).eval()
    plain = train_preference(build_model(tokenizer), tokenizer, ROWS, loss="sparse_po", config=config,
                             reference=reference)  # fmt: skip
    model = build_model(tokenizer)
    masked = train_preference(model, tokenizer, ROWS, loss="sparse_po", config=config, reference=reference,
                              mask_head=SparseMaskHead(model.config.hidden_size))  # fmt: skip
    assert masked.history[0]["loss"] == pytest.approx(plain.history[0]["loss"], rel=1e-6)


def test_mask_head_needs_sparse_po(tokenizer):
    with pytest.raises(InputError, match="takes no token weights"):
        train_preference(build_model(tokenizer), tokenizer, ROWS, loss="dpo", mask_head=SparseMaskHead(32))
