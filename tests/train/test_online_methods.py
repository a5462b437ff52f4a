"""The online methods in the loop: the first update of each equals an independent computation of its paper's
objective (per-sequence forward passes without padding, full-vocabulary softmax, explicit loops), and the
loop's bookkeeping (self-judging cache identity, consistency, SPIN's mixture reference, resume checks)."""

import json
import math
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from pairkit.errors import InputError, PairkitWarning  # noqa: E402
from pairkit.judges import CallableJudge  # noqa: E402
from pairkit.train import HFSampler, OnlineConfig, TrainConfig, rate_samples, train_online  # noqa: E402
from pairkit.train import online as online_mod  # noqa: E402
from pairkit.train._steps import encode as _encode  # noqa: E402
from pairkit.train.online import judge_samples  # noqa: E402
from pairkit.train.policy_gradient import win_rates  # noqa: E402
from tests.train.conftest import build_model  # noqa: E402
from tests.train.test_online import PROMPTS, prefers_a  # noqa: E402

BETA = 0.1


def by_text(context, first, second):
    """A deterministic judge that rarely ties: the text whose characters sum higher (mod 97) wins."""
    a, b = sum(map(ord, first)) % 97, sum(map(ord, second)) % 97
    return 1.0 if a > b else 0.0 if a < b else 0.5


class _Recorder(torch.optim.AdamW):
    """AdamW that keeps the gradients of its first step, and the weights and gradients of its ``at``-th step."""

    first = None
    at, weights, grads, steps = 2, None, None, 0

    def step(self, closure=None):
        params = [p for g in self.param_groups for p in g["params"]]
        _Recorder.steps += 1
        if _Recorder.first is None:
            _Recorder.first = [p.grad.detach().clone() for p in params]
        if _Recorder.steps == _Recorder.at:
            _Recorder.weights = [p.detach().clone() for p in params]
            _Recorder.grads = [p.grad.detach().clone() for p in params]
        return super().step(closure)


def _token_logps(model, tokenizer, prompt, completion, config):
    """Completion token log-probs from one unpadded forward pass and the full softmax (no pairkit log-prob code)."""
    p, c, _ = _encode(tokenizer, prompt, [completion], config)[0]
    ids = torch.tensor([p + c])
    logits = model(input_ids=ids).logits[0].double()
    lp = torch.log_softmax(logits[:-1], -1)
    return lp.gather(1, ids[0, 1:, None])[:, 0][len(p) - 1 :], logits[len(p) - 1 : -1]


def _ref_loss(method, policy, initial, tokenizer, prompts, samples, ratings, decisions, config):
    """The method's objective at the first step of a round (sampling policy = ``policy``), from loops."""
    n, k = ratings.shape
    pairs = [(i, j) for i in range(n) for j in range(k)]
    tok = {(i, j): _token_logps(policy, tokenizer, prompts[i], samples[i][j], config) for i, j in pairs}
    ref = {key: _token_logps(initial, tokenizer, prompts[key[0]], samples[key[0]][key[1]], config) for key in tok}
    # RLOO and P3O put the KL in the reward: r - beta * sum_t (log pi_old - log pi_ref), pi_old = policy
    penalised = np.array([[ratings[i, j] - BETA * float((tok[i, j][0] - ref[i, j][0]).sum().detach()) for j in range(k)]
                          for i in range(n)])  # fmt: skip
    terms = []
    if method == "grpo":
        for i in range(n):
            r = list(ratings[i])
            mean = sum(r) / k
            std = math.sqrt(sum((x - mean) ** 2 for x in r) / (k - 1))
            for j in range(k):
                lp, d = tok[i, j][0], ref[i, j][0].detach() - tok[i, j][0]
                ratio = torch.exp(lp - lp.detach())
                terms.append((-ratio * (r[j] - mean) / (std + 1e-4) + BETA * (torch.exp(d) - d - 1)).mean())
    elif method == "rloo":
        for i in range(n):
            for j in range(k):
                adv = penalised[i, j] - (penalised[i].sum() - penalised[i, j]) / (k - 1)
                s = tok[i, j][0].sum()
                terms.append(-torch.exp(s - s.detach()) * adv)
    elif method == "p3o":
        for i in range(n):
            for a in range(k):
                for b in range(a + 1, k):
                    sa, sb = tok[i, a][0].sum(), tok[i, b][0].sum()
                    rho = torch.exp((sa - sa.detach()) - (sb - sb.detach()))
                    terms.append(-rho * (penalised[i, a] - penalised[i, b]) / 2)
    elif method == "sppo":  # the reference is the round's sampling policy
        wr = win_rates(decisions, n, k)
        for i in range(n):
            if wr[i].max() == wr[i].min():
                continue
            for j in (int(np.argmax(wr[i])), int(np.argmin(wr[i]))):
                s = tok[i, j][0].sum()
                terms.append((s - s.detach() - (wr[i, j] - 0.5) / BETA) ** 2)
    elif method == "superhf":
        for i in range(n):
            j = int(np.argmax(ratings[i]))
            lp, logits = tok[i, j]
            q, logp = torch.log_softmax(ref[i, j][1].detach(), -1), torch.log_softmax(logits, -1)
            kl = (q.exp() * (q - logp)).sum(-1)  # KL(pi_ref || pi) per position
            terms.append(-lp.mean() + BETA * kl.mean())
    return torch.stack(terms).mean()


def _copy_weights(tokenizer, weights):
    model = build_model(tokenizer, seed=0, dtype=torch.float64)
    with torch.no_grad():
        for p, w in zip(model.parameters(), weights):
            p.copy_(w)
    return model


def _assert_grads(mine, loss, model):
    grads = torch.autograd.grad(loss, list(model.parameters()), allow_unused=True)
    for m, ref in zip(mine, grads):
        torch.testing.assert_close(m, ref if ref is not None else torch.zeros_like(m), rtol=1e-7, atol=1e-10)
    assert any(g.abs().sum() > 0 for g in mine)


@pytest.mark.parametrize("method", ["grpo", "rloo", "p3o", "sppo", "superhf"])
def test_round_update_is_the_gradient_of_the_papers_objective(method, tokenizer, tmp_path, monkeypatch):
    """Round 2's update: the policy has moved from the initial reference, so the KL terms have gradients."""
    monkeypatch.setattr(torch.optim, "AdamW", _Recorder)
    _Recorder.first, _Recorder.steps = None, 0
    model = build_model(tokenizer, seed=0, dtype=torch.float64)
    initial = build_model(tokenizer, seed=0, dtype=torch.float64)
    config = TrainConfig(lr=1e-2, batch_size=64, max_grad_norm=None, output_dir=str(tmp_path))
    cfg = OnlineConfig(rounds=2, prompts_per_round=2, k=3, max_new_tokens=6)
    train_online(model, tokenizer, PROMPTS[:2], CallableJudge(by_text), method=method, beta=BETA, config=config,
                 online=cfg)  # fmt: skip
    order = np.random.default_rng(0).permutation(2)
    prompts = [PROMPTS[:2][i] for i in order]
    samples = json.loads((tmp_path / "samples" / "round-2.json").read_text())["samples"]
    sel = judge_samples(CallableJudge(by_text), prompts, samples, seed=0)
    ratings = rate_samples(sel, 2, 3)
    assert np.ptp(ratings) > 0  # the judge separated some samples: the objective is not trivially zero
    policy = _copy_weights(tokenizer, _Recorder.weights)
    loss = _ref_loss(method, policy, initial, tokenizer, prompts, samples, ratings, sel.decisions, config)
    _assert_grads(_Recorder.grads, loss, policy)


def test_hypo_update_is_dpo_on_offline_pairs_plus_the_score_function_kl(tokenizer, monkeypatch):
    """Round 2's update (the policy has moved away from the reference, so the KL term has a gradient)."""
    monkeypatch.setattr(torch.optim, "AdamW", _Recorder)
    _Recorder.first, _Recorder.steps = None, 0
    model = build_model(tokenizer, seed=0, dtype=torch.float64)
    reference = build_model(tokenizer, seed=0, dtype=torch.float64)
    data = [{"prompt": "say alpha", "chosen": "alpha alpha", "rejected": "bad"},
            {"prompt": "say no", "chosen": "no", "rejected": "yes yes"}]  # fmt: skip
    config = TrainConfig(lr=1e-2, batch_size=8, max_grad_norm=None)
    drawn = []
    real = online_mod.sample_completions

    def keep(*a, **kw):
        drawn.append(real(*a, **kw))
        return drawn[-1]

    monkeypatch.setattr(online_mod, "sample_completions", keep)
    train_online(model, tokenizer, None, method="hypo", data=data, beta=BETA, method_options={"kl_weight": 0.5},
                 config=config, online=OnlineConfig(rounds=2, prompts_per_round=2, k=2, max_new_tokens=5))  # fmt: skip
    policy = _copy_weights(tokenizer, _Recorder.weights)
    order = np.random.default_rng(0).permutation(2)
    rows = [data[order[(2 + i) % 2]] for i in range(2)]  # round 2's prompts
    terms = []
    for r, ss in zip(rows, drawn[1]):

        def ratio(text, prompt=r["prompt"]):
            lp = _token_logps(policy, tokenizer, prompt, text, config)[0].sum()
            return lp, lp - _token_logps(reference, tokenizer, prompt, text, config)[0].sum().detach()

        (_, c), (_, rj) = ratio(r["chosen"]), ratio(r["rejected"])
        dpo = -torch.nn.functional.logsigmoid(BETA * (c - rj))
        kl = 0
        for s in ss:
            lp, log_ratio = ratio(s)
            kl = kl + log_ratio.detach() * lp / len(ss)  # grad E_pi[log pi/pi_ref] = E_pi[(log pi/pi_ref) grad log pi]
        terms.append(dpo + 0.5 * kl)
    _assert_grads(_Recorder.grads, torch.stack(terms).mean(), policy)


SPIN_DATA = [{"prompt": p, "chosen": "alpha alpha good"} for p in PROMPTS[:4]]


def _spin(tokenizer, alpha, rounds=2):
    model = build_model(tokenizer, seed=0)
    return train_online(model, tokenizer, None, method="spin", data=SPIN_DATA, method_options={"alpha": alpha},
                        config=TrainConfig(lr=2e-2, batch_size=8),
                        online=OnlineConfig(rounds=rounds, prompts_per_round=4, k=1, max_new_tokens=6))  # fmt: skip


def test_spin_trains_the_data_answer_over_the_policys_own_sample_and_its_mixture_reference(tokenizer):
    plain, mixed = _spin(tokenizer, 0.0), _spin(tokenizer, 1.0)
    # no judge is asked; the reference is the round's starting policy, so a one-step round starts at ln 2 …
    assert all(h["judge_calls"] == 0 and h["pairs"] == 4 for h in plain)
    assert [h["loss"] for h in plain] == pytest.approx([math.log(2)] * 2, abs=1e-6)
    # … unless the reference is the geometric mixture with the initial policy (Alami et al.): equal in round 1,
    # different once the policy has moved
    assert mixed[0]["loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert abs(mixed[1]["loss"] - math.log(2)) > 1e-4


def test_self_rewarding_judges_with_the_current_policy_and_never_reuses_an_old_policys_verdicts(tokenizer, tmp_path):
    from pairkit.train import SelfJudge

    model = build_model(tokenizer, seed=0)
    before = SelfJudge(model, tokenizer).judge_id
    hist = train_online(model, tokenizer, PROMPTS[:4], method="self_rewarding",
                        config=TrainConfig(lr=2e-2, batch_size=8, output_dir=str(tmp_path)),
                        online=OnlineConfig(rounds=2, prompts_per_round=4, k=3, max_new_tokens=6))  # fmt: skip
    assert SelfJudge(model, tokenizer).judge_id != before
    assert [h["judge_calls"] for h in hist] == [12, 12] and all(h["judge_cache_hits"] == 0 for h in hist)


def test_cream_smooths_the_labels_by_the_rank_consistency_of_the_two_iterates(tokenizer, monkeypatch):
    def fewer_a(context, first, second):
        return 1.0 - prefers_a(context, first, second)

    def run(disagree):
        model = build_model(tokenizer, seed=0)

        def fake_self_judge(m, tok, **kw):  # the current policy prefers 'a'; the previous iterate agrees or not
            return CallableJudge(prefers_a if m is model or not disagree else fewer_a, judge_id=f"j{id(m)}")

        monkeypatch.setattr(online_mod, "SelfJudge", fake_self_judge)
        return train_online(model, tokenizer, PROMPTS[:4], method="cream",
                            config=TrainConfig(lr=2e-2, batch_size=8),
                            online=OnlineConfig(rounds=2, prompts_per_round=4, k=4, max_new_tokens=8,
                                                epochs=2))  # fmt: skip

    agree, disagree = run(False), run(True)
    assert agree[0]["consistency"] == 1.0 and disagree[0]["consistency"] == 1.0  # round 1: no previous iterate
    assert agree[1]["consistency"] == 1.0 and disagree[1]["consistency"] < 0.5
    # C = 1 is DPO; C < 1/2 trains the reversed preference more than the judged one (the pair is reversed,
    # with eps = C): the margin of the reversed pair goes up
    assert agree[1]["labels_reversed"] == 0.0 and disagree[1]["labels_reversed"] == 1.0
    assert agree[1]["rewards/margin"] > 0 and disagree[1]["rewards/margin"] > 0
    assert disagree[1]["judge_calls"] == 2 * agree[0]["judge_calls"]  # both iterates judged the round's samples


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "grpo", "judge": None}, "needs a judge"),
        ({"method": "spin"}, "needs data: a reference answer"),
        ({"method": "grpo", "method_options": {"epsilon": 0.1}}, "has no option 'epsilon'"),
        ({"method": "grpo", "method_options": {"epsilon_low": float("nan")}}, "epsilon_low must be"),
        ({"method": "p3o", "method_options": {"clipping": "both"}}, "clipping must be one of"),
        ({"method": "rloo", "online": OnlineConfig(k=1)}, "k must be at least 2"),
        ({"method": "cream", "loss": "ipo"}, "give loss='dpo'"),
        ({"method": "scir", "loss": "ipo"}, "'scir' trains its own DPO and consistency loss; give loss='dpo'"),
        ({"method": "scir", "online": OnlineConfig(k=1)}, "k must be at least 2"),
        ({"method": "scir", "method_options": {"threshold": 0.7}}, "threshold must be"),
        ({"method": "online_dpo", "data": SPIN_DATA}, "takes no data"),
        ({"method": "nope"}, "unknown method"),
        ({"method": "online_dpo", "beta": 0.0}, r"beta must be a finite number in \(0, inf\)"),
        ({"method": "grpo", "beta": -0.1}, r"beta must be a finite number in \[0, inf\)"),
    ],
)
def test_method_errors_name_the_problem(tokenizer, kwargs, message):
    kwargs = {"judge": CallableJudge(prefers_a), **kwargs}
    with pytest.raises(InputError, match=message):
        train_online(build_model(tokenizer), tokenizer, PROMPTS[:2], **kwargs)


def test_resume_refuses_other_prompts_model_or_method(tokenizer, tmp_path):
    cfg = OnlineConfig(rounds=1, prompts_per_round=2, k=2, max_new_tokens=4)
    config = TrainConfig(lr=1e-2, output_dir=str(tmp_path))
    judge = CallableJudge(prefers_a)
    train_online(build_model(tokenizer), tokenizer, PROMPTS[:2], judge, config=config, online=cfg)
    again = dataclasses_replace(cfg, rounds=2)
    with pytest.raises(InputError, match="its prompts .* differ from the ones it started with"):
        train_online(build_model(tokenizer), tokenizer, PROMPTS[2:4], judge, config=config, online=again, resume=True)
    with pytest.raises(InputError, match="its starting model"):
        train_online(build_model(tokenizer, seed=1), tokenizer, PROMPTS[:2], judge, config=config, online=again,
                     resume=True)  # fmt: skip
    with pytest.raises(InputError, match=r"its method differ.*'online_dpo' then, 'grpo' now"):
        train_online(build_model(tokenizer), tokenizer, PROMPTS[:2], judge, method="grpo", config=config,
                     online=again, resume=True)  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PairkitWarning)  # the tiny policy may give no pair in a round
        hist = train_online(build_model(tokenizer), tokenizer, PROMPTS[:2], judge, config=config, online=again,
                            resume=True)  # fmt: skip
    assert [h["round"] for h in hist] == [1, 2]


def test_samples_are_cached_by_the_policys_weights(tokenizer, tmp_path, monkeypatch):
    model = build_model(tokenizer)
    drawn = []
    real = online_mod.sample_completions
    monkeypatch.setattr(online_mod, "sample_completions", lambda *a, **kw: drawn.append(1) or real(*a, **kw))
    cfg = OnlineConfig(k=2, max_new_tokens=4)
    (tmp_path / "samples").mkdir()
    sampler = HFSampler(model, tokenizer)
    first = online_mod._samples(sampler, PROMPTS[:2], cfg, 0, 0, tmp_path)
    assert online_mod._samples(sampler, PROMPTS[:2], cfg, 0, 0, tmp_path) == first and len(drawn) == 1
    with torch.no_grad():
        next(model.parameters())[0, 0] += 1.0  # another policy: its samples are drawn, not read back
    online_mod._samples(sampler, PROMPTS[:2], cfg, 0, 0, tmp_path)
    assert len(drawn) == 2


def dataclasses_replace(obj, **kw):
    import dataclasses

    return dataclasses.replace(obj, **kw)


def test_cli_runs_grpo_and_spin(tmp_path, model_dir):
    from typer.testing import CliRunner

    from pairkit.cli import app
    from tests.train.conftest import write_jsonl

    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": p} for p in PROMPTS[:2]])
    data = write_jsonl(tmp_path / "data.jsonl", [{"prompt": p, "chosen": "alpha good"} for p in PROMPTS[:2]])
    common = ["train", "online", "--model", str(model_dir), "--samples", "2", "--prompts-per-round", "2",
              "--max-new-tokens", "4", "--rounds", "1", "--lr", "1e-2"]  # fmt: skip
    res = CliRunner().invoke(app, [*common, "--prompts", str(prompts), "--judge", "tests.train.test_online:prefers_a",
                                   "--method", "grpo", "--method-option", "epsilon_high=0.28",
                                   "--output", str(tmp_path / "g")])  # fmt: skip
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(app, [*common, "--data", str(data), "--method", "spin", "--output", str(tmp_path / "s")])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "s" / "metrics.jsonl").read_text())["pairs"] == 2
    bad = CliRunner().invoke(app, [*common, "--prompts", str(prompts), "--method", "rloo", "--output", str(tmp_path)])
    assert bad.exit_code == 2 and "needs a judge" in bad.output
    bad = CliRunner().invoke(app, [*common, "--prompts", str(prompts), "--method", "grpo", "--judge",
                                   "tests.train.test_online:prefers_a", "--method-option", "eps"])  # fmt: skip
    assert bad.exit_code == 2 and "give KEY=VALUE" in bad.output


def test_step_dpo_pairs_are_sibling_steps_in_the_context_of_the_chosen_path(tokenizer, monkeypatch):
    from pairkit.train.online import _step_tree

    def scripted(sampler, contexts, online, seed, rnd, out_dir, step):
        # k continuations per context; "stop" prompts answer in one step (no delimiter: the node closes)
        return [[("a" * (j + 1) + f"{step}" + ("." if c.startswith("stop") else " next")) for j in range(online.k)]
                for c in contexts]  # fmt: skip

    monkeypatch.setattr(online_mod, "_samples", scripted)
    seen = []

    def judge(context, first, second):
        seen.append(context)
        return prefers_a(context, first, second)

    cfg = OnlineConfig(k=3)
    rows, counts, first = _step_tree(None, ["go:", "stop:"], CallableJudge(judge), cfg,
                                     {"depth": 3, "delimiter": " "}, 0, 0, None)  # fmt: skip
    assert [(r["prompt"], r["chosen"], r["rejected"]) for r in rows] == [
        ("go:", "aaa1 ", "a1 "), ("stop:", "aaa1.", "a1."),
        ("go:aaa1 ", "aaa2 ", "a2 "),
        ("go:aaa1 aaa2 ", "aaa3 ", "a3 "),
    ]  # fmt: skip
    assert first == [["a1 ", "aa1 ", "aaa1 "], ["a1.", "aa1.", "aaa1."]]
    assert set(seen) == {"go:", "stop:", "go:aaa1 ", "go:aaa1 aaa2 "}  # siblings judged in their own context
    assert counts == {"prompts_without_pair": 0, "identical_or_empty_pairs": 0}
    with pytest.raises(InputError, match="step_dpo extends text prompts"):
        _step_tree(None, [[{"role": "user", "content": "hi"}]], CallableJudge(judge), cfg,
                   {"depth": 1, "delimiter": " "}, 0, 0, None)  # fmt: skip


def test_step_dpo_trains_in_the_loop(tokenizer):
    hist = train_online(build_model(tokenizer), tokenizer, PROMPTS[:4], CallableJudge(prefers_a), method="step_dpo",
                        method_options={"depth": 2, "delimiter": " "}, config=TrainConfig(lr=1e-2, batch_size=8),
                        online=OnlineConfig(rounds=1, prompts_per_round=4, k=3, max_new_tokens=6,
                                            temperature=1.5))  # fmt: skip
    assert hist[0]["pairs"] > 0 and hist[0]["loss"] == pytest.approx(math.log(2), abs=0.05)
    with pytest.raises(InputError, match="depth must be an integer"):
        train_online(build_model(tokenizer), tokenizer, PROMPTS[:2], CallableJudge(prefers_a), method="step_dpo",
                     method_options={"depth": 1.5})  # fmt: skip


@pytest.mark.parametrize("method", ["grpo", "rloo", "p3o", "superhf"])
def test_policy_gradient_methods_run_without_a_kl_term(tokenizer, method):
    hist = train_online(build_model(tokenizer), tokenizer, PROMPTS[:2], CallableJudge(prefers_a), method=method,
                        beta=0.0, config=TrainConfig(lr=1e-2, batch_size=3),
                        online=OnlineConfig(rounds=1, prompts_per_round=2, k=3, max_new_tokens=4))  # fmt: skip
    assert math.isfinite(hist[0]["loss"]) and hist[0]["trained_sequences"] > 0


@pytest.mark.parametrize(("method", "beta"), [("grpo", 0.0), ("rloo", 0.0), ("sppo", 1.0)])
def test_judged_sample_methods_raise_the_judge_win_rate(tokenizer, method, beta):
    """Fixed seeds, the scripted judge of the online DPO test: measured 1.0 after 10 rounds for all three."""
    from tests.train.test_online import EVAL

    hist = train_online(build_model(tokenizer), tokenizer, PROMPTS, CallableJudge(prefers_a), method=method,
                        beta=beta, config=TrainConfig(lr=2e-2, batch_size=8, seed=0), eval_prompts=EVAL,
                        online=OnlineConfig(rounds=10, prompts_per_round=8, k=4, max_new_tokens=8,
                                            eval_every=10))  # fmt: skip
    assert hist[-1]["win_rate"] >= 0.8


def _scir_ref_loss(policy, initial, tokenizer, prompts, samples, config, lam=1.0, tau=0.0):
    """SCIR's objective from loops: unpadded per-sequence forward passes, the full softmax, one pair at a time."""
    from pairkit.judges import HFJudge
    from pairkit.judges.base import Request

    judge = HFJudge(policy, tokenizer, template="tiny")

    def seq_lp(model, prompt_ids, completion_ids):
        ids = torch.tensor([prompt_ids + completion_ids])
        lp = torch.log_softmax(model(input_ids=ids).logits[0].double(), -1)
        return sum(lp[len(prompt_ids) - 1 + t, c] for t, c in enumerate(completion_ids))

    def logp(model, n, j):
        p, c, _ = _encode(tokenizer, prompts[n], [samples[n][j]], config)[0]
        return seq_lp(model, p, c)

    terms, agreed = [], 0
    for n, ss in enumerate(samples):
        for i in range(len(ss)):
            for j in range(i + 1, len(ss)):
                if not ss[i] or not ss[j] or ss[i] == ss[j]:
                    continue
                r1 = BETA * (logp(policy, n, i) - logp(initial, n, i).detach())
                r2 = BETA * (logp(policy, n, j) - logp(initial, n, j).detach())
                ll = {}
                for order in ("ab", "ba"):
                    text = judge.prompt(Request(prompts[n], ss[i], ss[j], order=order))
                    ids = tokenizer.encode(text, add_special_tokens=False)
                    for v in ("A", "B"):
                        ll[order, v] = seq_lp(policy, ids, tokenizer.encode(v + "]]", add_special_tokens=False))
                first = 1 / (1 + torch.exp(ll["ab", "B"] - ll["ab", "A"]))  # P(y_i) shown first
                second = 1 / (1 + torch.exp(ll["ba", "A"] - ll["ba", "B"]))  # P(y_i) shown second
                p_g = (first + second) / 2
                p_d = 1 / (1 + torch.exp(-(r1 - r2)))
                loss = lam * (p_g - p_d) * (torch.log(p_g / (1 - p_g)) - torch.log(p_d / (1 - p_d)))
                mean = float((p_g + p_d).detach() / 2)
                if (float(p_g.detach()) - 0.5) * (float(p_d.detach()) - 0.5) > 0 and abs(mean - 0.5) >= tau:
                    agreed += 1
                    winner, loser = (r1, r2) if mean > 0.5 else (r2, r1)
                    loss = loss - torch.log(1 / (1 + torch.exp(-(winner - loser))))
                terms.append(loss)
    return torch.stack(terms).mean(), agreed, len(terms)


def test_scir_update_is_the_gradient_of_consistency_plus_dpo_on_agreeing_pairs(tokenizer, tmp_path, monkeypatch):
    """Step 2 of round 1 (second epoch): the policy has moved from the reference, so the implicit reward is no
    longer 1/2 and the DPO term trains the pairs where both internal rewards agree. A short judge prompt keeps
    the test fast (the method's ``template`` option names it)."""
    from pairkit.judges.prompts import TEMPLATES, PromptTemplate

    monkeypatch.setitem(TEMPLATES, "tiny", PromptTemplate("tiny", "1", "Judge: [[A]], [[B]] or [[C]].",
                                                          "{question}|{answer_a}|{answer_b}"))  # fmt: skip
    monkeypatch.setattr(torch.optim, "AdamW", _Recorder)
    _Recorder.first, _Recorder.steps = None, 0
    model = build_model(tokenizer, seed=0, dtype=torch.float64)
    initial = build_model(tokenizer, seed=0, dtype=torch.float64)
    config = TrainConfig(lr=5e-2, batch_size=64, max_grad_norm=None, output_dir=str(tmp_path))
    hist = train_online(model, tokenizer, PROMPTS[:2], method="scir", beta=BETA, config=config,
                        method_options={"template": "tiny"},
                        online=OnlineConfig(rounds=1, prompts_per_round=2, k=2, max_new_tokens=6))  # fmt: skip
    assert hist[0]["judge_calls"] == 0 and hist[0]["pairs"] > 0
    order = np.random.default_rng(0).permutation(2)
    prompts = [PROMPTS[:2][i] for i in order]
    samples = json.loads((tmp_path / "samples" / "round-1.json").read_text())["samples"]
    policy = _copy_weights(tokenizer, _Recorder.weights)
    loss, agreed, total = _scir_ref_loss(policy, initial, tokenizer, prompts, samples, config)
    assert 0 < agreed  # the DPO term is in the gradient being compared
    _assert_grads(_Recorder.grads, loss, policy)
    # the first step: the policy is the reference (p_D = 1/2), no pair agrees, only the consistency term
    first, agreed0, _ = _scir_ref_loss(initial, initial, tokenizer, prompts, samples, config)
    assert agreed0 == 0
    _assert_grads(_Recorder.first, first, initial)


def test_scir_loss_options_filter_and_weigh():
    from pairkit.train._online_methods import scir_loss

    margin = torch.tensor([0.4, -0.4, 0.02], dtype=torch.float64)
    ll = torch.log(torch.tensor([[0.8, 0.2, 0.2, 0.8], [0.8, 0.2, 0.2, 0.8], [0.55, 0.45, 0.45, 0.55]],
                                dtype=torch.float64))  # fmt: skip
    loss, stats = scir_loss(margin, ll)
    assert stats["consistent"].tolist() == [1.0, 0.0, 1.0]  # the second pair's rewards disagree
    _, strict = scir_loss(margin, ll, threshold=0.1)
    assert strict["consistent"].tolist() == [1.0, 0.0, 0.0]  # the third is not confident enough
    only_dpo, _ = scir_loss(margin, ll, consistency_weight=0.0)
    assert only_dpo[1] == 0 and only_dpo[0] == pytest.approx(math.log1p(math.exp(-0.4)))


@pytest.mark.parametrize("history", [0, 2])
def test_spin_history_samples_each_prompts_opponent_from_an_earlier_iterate(tokenizer, tmp_path, monkeypatch, history):
    """Alami et al.'s fictitious play: in round 4, prompt i's rejected sample comes from the iterate the loop drew
    for it, among all four (history 0) or the last two (history 2); a resumed run samples the same."""
    from pairkit.train._steps import weights_fingerprint

    used = []
    real = online_mod.sample_completions
    monkeypatch.setattr(online_mod, "sample_completions", lambda m, tok, prompts, **kw: used.append(
        (weights_fingerprint(m), list(prompts))) or real(m, tok, prompts, **kw))  # fmt: skip
    model = build_model(tokenizer, seed=0)
    starts = [weights_fingerprint(model)]

    def run(m, rounds, resume=False, out=tmp_path):
        return train_online(m, tokenizer, None, method="spin", data=SPIN_DATA, method_options={"history": history},
                            config=TrainConfig(lr=5e-2, batch_size=8, output_dir=str(out)), resume=resume,
                            callback=lambda row: starts.append(weights_fingerprint(m)),
                            online=OnlineConfig(rounds=rounds, prompts_per_round=4, k=1, max_new_tokens=6))  # fmt: skip

    hist = run(model, 4)
    assert len(set(starts)) == 5  # every round moved the policy
    keep = starts[:4] if history == 0 else starts[2:4]
    choices = np.random.default_rng([0, 3, 41]).integers(len(keep), size=4)
    order = np.random.default_rng(0).permutation(4)
    prompts = [SPIN_DATA[i]["prompt"] for i in order]
    round4 = {p: fp for fp, ps in used[-len(set(choices)):] for p in ps}
    assert round4 == {p: keep[c] for p, c in zip(prompts, choices)}
    assert hist[-1]["opponent_mean_age"] == pytest.approx(np.mean(len(keep) - 1 - choices))
    # a run killed after round 2 and resumed draws the same round-4 samples
    other = tmp_path / "resumed"
    run(build_model(tokenizer, seed=0), 2, out=other)
    run(build_model(tokenizer, seed=0), 4, resume=True, out=other)
    assert (other / "samples" / "round-4.json").read_text() == (tmp_path / "samples" / "round-4.json").read_text()


def test_spin_history_needs_the_policy_as_sampler(tokenizer):
    from pairkit.train import HFSampler

    model = build_model(tokenizer)
    with pytest.raises(InputError, match="cannot be combined with a given sampler"):
        train_online(model, tokenizer, None, method="spin", data=SPIN_DATA, method_options={"history": 0},
                     sampler=HFSampler(model, tokenizer))  # fmt: skip


def test_cli_refuses_a_loss_scir_does_not_train_before_loading_the_model(tmp_path):
    from typer.testing import CliRunner

    from pairkit.cli import app

    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"prompt": "say a"}))
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "config.json").write_text("{}")  # no model type, empty weights: loading it would fail
    (tmp_path / "empty" / "model.safetensors").write_bytes(b"")
    (tmp_path / "empty" / "tokenizer.json").write_text("{}")
    result = CliRunner().invoke(app, ["train", "online", "--model", str(tmp_path / "empty"), "--prompts",
                                      str(prompts), "--method", "scir", "--loss", "ipo"])  # fmt: skip
    assert result.exit_code != 0 and "give loss='dpo', not 'ipo'" in result.output
    assert "empty" not in result.output  # the (empty) model directory was never read
