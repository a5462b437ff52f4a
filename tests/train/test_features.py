"""collect_hidden_states on tiny Hugging Face models built from configs (no downloads)."""

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import pairkit.losses as L  # noqa: E402
from pairkit.errors import InputError  # noqa: E402
from pairkit.train import collect_hidden_states  # noqa: E402


def _gpt2(seed=0, n_embd=16):
    torch.manual_seed(seed)
    config = transformers.GPT2Config(vocab_size=40, n_embd=n_embd, n_layer=2, n_head=2, n_positions=32)
    return transformers.GPT2LMHeadModel(config).eval()


def test_collected_states_equal_output_hidden_states():
    model = _gpt2()
    ids = torch.randint(0, 40, (3, 7), generator=torch.Generator().manual_seed(1))
    model(input_ids=ids, output_hidden_states=True)  # transformers installs hooks of its own on a first call
    hooks_before = dict(model.transformer.h[0]._forward_hooks)
    out, states = collect_hidden_states(model, ["transformer.h.0", "transformer.ln_f"], input_ids=ids,
                                        output_hidden_states=True)  # fmt: skip
    assert list(states) == ["transformer.h.0", "transformer.ln_f"]
    # hidden_states[1] is block 0's output; the last entry is after the final layer norm
    torch.testing.assert_close(states["transformer.h.0"], out.hidden_states[1])
    torch.testing.assert_close(states["transformer.ln_f"], out.hidden_states[-1])
    assert dict(model.transformer.h[0]._forward_hooks) == hooks_before  # ours removed


def test_feature_distillation_trains_through_collected_states():
    student, teacher = _gpt2(0, n_embd=8), _gpt2(1, n_embd=16)
    ids = torch.randint(0, 40, (4, 5), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        _, t = collect_hidden_states(teacher, ["transformer.h.1"], input_ids=ids)
    _, s = collect_hidden_states(student, ["transformer.h.1"], input_ids=ids)
    loss = L.rkd_distance_loss(s["transformer.h.1"].mean(1), t["transformer.h.1"].mean(1))
    loss.backward()
    assert student.transformer.h[0].attn.c_attn.weight.grad.abs().sum() > 0


def test_unknown_names_raise_with_hints():
    model = _gpt2()
    with pytest.raises(InputError, match="closest: transformer.h.1"):
        collect_hidden_states(model, ["transformer.h.l"], input_ids=torch.zeros(1, 2, dtype=torch.long))
    with pytest.raises(InputError, match="distinct"):
        collect_hidden_states(model, ["transformer.h.1"] * 2, input_ids=torch.zeros(1, 2, dtype=torch.long))
