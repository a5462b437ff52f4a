"""The unsupervised probe trainer: CCS finds a planted direction, restarts keep the best, a frozen LM's states."""

import pytest

torch = pytest.importorskip("torch")

from pairkit import losses  # noqa: E402
from pairkit.errors import InputError  # noqa: E402
from pairkit.train import TrainConfig, fit_probe, train_probe  # noqa: E402
from tests.train.conftest import build_model  # noqa: E402

FAST = TrainConfig(epochs=150, batch_size=400, lr=1e-2, weight_decay=0.01, schedule="constant", max_grad_norm=None)


def planted(n=400, d=12, seed=0, strength=2.0):
    """Contrast pairs whose truth is written along one direction v; the two sets have their own offsets."""
    g = torch.Generator().manual_seed(seed)
    v = torch.nn.functional.normalize(torch.randn(d, generator=g), dim=0)
    y = (torch.rand(n, generator=g) < 0.5).double()
    sign = (2 * y - 1)[:, None]
    pos = torch.randn(n, d, generator=g, dtype=torch.float64) + strength * sign * v + 3.0
    neg = torch.randn(n, d, generator=g, dtype=torch.float64) - strength * sign * v - 1.0
    return pos, neg, y, v


def test_ccs_finds_the_planted_direction():
    pos, neg, y, v = planted()
    res = fit_probe(pos, neg, y, restarts=3, config=FAST)
    assert res.accuracy >= 0.9
    w = res.probe.weight[0].detach()
    assert abs(torch.nn.functional.cosine_similarity(w, v, dim=0)) > 0.8
    # the reported accuracy is max(acc, 1 - acc) of the probe's own answers
    acc = float(((res.confidence(pos, neg) > 0.5).double() == y).double().mean())
    assert res.accuracy == pytest.approx(max(acc, 1 - acc))
    assert res.loss < 0.25  # better than the trivial probe p = 1/2 (loss 1/4)


def test_restarts_keep_the_lowest_loss_and_report_it():
    pos, neg, y, _ = planted(n=120, d=30, strength=0.3, seed=1)  # weak signal: restarts end in different places
    config = TrainConfig(epochs=20, batch_size=120, lr=1e-2, schedule="constant", max_grad_norm=None)
    res = fit_probe(pos, neg, y, restarts=4, config=config)
    assert len(res.restart_losses) == 4 and len(set(res.restart_losses)) > 1
    assert res.loss == min(res.restart_losses) and res.restart == res.restart_losses.index(res.loss)
    xp, xn = (pos - res.means[0]) / res.stds[0], (neg - res.means[1]) / res.stds[1]
    with torch.no_grad():
        value = losses.ccs_loss(res.probe(xp)[:, 0], res.probe(xn)[:, 0])
    assert float(value) == pytest.approx(res.loss, rel=1e-12)
    # the same seed gives the same restarts
    again = fit_probe(pos, neg, y, restarts=4, config=config)
    assert again.restart_losses == res.restart_losses


@pytest.mark.parametrize("name", sorted({s.name for s in losses.specs()
                                         if {i.name for i in s.input_specs if i.required}
                                         <= {"positive_logits", "negative_logits"}}))  # fmt: skip
def test_every_contrast_pair_loss_trains_through_the_probe(name):
    pos, neg, y, _ = planted(n=200, seed=2)
    config = TrainConfig(epochs=40, batch_size=200, lr=1e-2, schedule="constant", max_grad_norm=None)
    res = fit_probe(pos, neg, y, loss=name, restarts=1, config=config)
    assert res.history[-1]["loss"] < res.history[0]["loss"]


def test_a_loss_needing_other_inputs_is_refused():
    pos, neg, _, _ = planted(n=20)
    with pytest.raises(InputError, match="contrast pairs"):
        fit_probe(pos, neg, loss="dpo", restarts=1)


def test_train_probe_on_a_frozen_tiny_lm(tokenizer, tmp_path):
    model = build_model(tokenizer, seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rows = [{"positive": f"Is {a} bigger than {b}? Yes", "negative": f"Is {a} bigger than {b}? No",
             "label": int(a > b)} for a in range(6) for b in range(6) if a != b]  # fmt: skip
    config = TrainConfig(epochs=20, batch_size=len(rows), lr=1e-2, schedule="constant", max_grad_norm=None,
                         output_dir=str(tmp_path / "probe"))  # fmt: skip
    res = train_probe(model, tokenizer, rows, layer=-1, restarts=2, config=config)
    assert res.layer == "model.layers.1"
    assert 0.5 <= res.accuracy <= 1.0 and len(res.history) == 20
    assert (tmp_path / "probe" / "restart-1" / "metrics.jsonl").exists()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the LM stays frozen
    res0 = train_probe(model, tokenizer, rows, layer="model.layers.0", restarts=1, config=config)
    assert res0.layer == "model.layers.0"
    with pytest.raises(InputError, match="out of range"):
        train_probe(model, tokenizer, rows, layer=5, restarts=1, config=config)
    with pytest.raises(InputError, match="give all or none"):
        train_probe(model, tokenizer, [*rows[:3], {"positive": "a", "negative": "b"}], restarts=1, config=config)
