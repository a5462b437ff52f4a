"""Construction rules that generate: RISE self-edits, BMC pseudo-winners, DSTC self-tests, TPO topic rewrites."""


import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from pairkit.errors import InputError, PairkitWarning  # noqa: E402
from pairkit.train import HFSampler, TrainConfig, train_preference  # noqa: E402
from pairkit.train.construct import (  # noqa: E402
    bmc_pseudo_winners,
    dstc_self_tests,
    edited_fraction,
    rise_self_edits,
    tpo_topic_rewrites,
)
from tests.train.conftest import build_model  # noqa: E402


class Scripted:
    """A sampler whose k outputs for a prompt come from ``fn(prompt, j)``; it records every call."""

    def __init__(self, fn):
        self.fn, self.calls = fn, []

    def sample(self, prompts, *, k, max_new_tokens, temperature, top_p, seed):
        self.calls.append((list(prompts), k, seed))
        return [[self.fn(p, j) for j in range(k)] for p in prompts]

    def identity(self):
        return {"backend": "scripted"}


def test_rise_keeps_small_edits_and_says_how_many_it_left_out():
    rows = [{"prompt": "2+2?", "solution": "2 plus 2 is 4 so the answer is 4"},
            {"prompt": "3+3?", "solution": "3 plus 3 is 6"},
            {"prompt": "1+1?", "chosen": "one plus one is two"}]  # fmt: skip
    edits = {"2+2?": "2 plus 2 is 5 so the answer is 5", "3+3?": "3 plus 3 is 6", "1+1?": "totally different text"}
    sampler = Scripted(lambda p, j: " " + edits[p.split("\n")[0]] + " ")
    with pytest.warns(PairkitWarning, match=r"left out 2 of 3 rows \(edit empty, unchanged or > 0.3\)"):
        out = rise_self_edits(sampler, rows, seed=5)
    assert out == [{"prompt": "2+2?", "chosen": rows[0]["solution"], "rejected": edits["2+2?"],
                    "error": "calculation", "edited_fraction": 0.2}]  # fmt: skip
    (prompts, k, seed), = sampler.calls
    assert k == 1 and seed == 5 and "subtle substitution error" in prompts[1]
    assert "Correct solution:\n3 plus" in prompts[1]
    assert edited_fraction("a b c d", "a x c d") == 0.25 and edited_fraction("a b", "a b") == 0.0
    with pytest.raises(InputError, match="row 1 needs a non-empty 'solution' or 'chosen'"):
        rise_self_edits(sampler, [{"prompt": "p"}])


def test_bmc_pseudo_winner_replaces_the_winner_and_keeps_the_loser():
    rows = [{"prompt": "q1", "chosen": "good answer", "rejected": "bad answer"},
            {"prompt": "q2", "chosen": "fine", "rejected": "same"}]  # fmt: skip
    sampler = Scripted(lambda p, j: "better answer" if p.startswith("q1") else "same")
    with pytest.warns(PairkitWarning, match="left out 1 of 2 rows"):
        out = bmc_pseudo_winners(sampler, rows)
    assert out == [{"prompt": "q1", "chosen": "better answer", "rejected": "bad answer", "reference": "good answer"}]
    assert "Reference answer:\ngood answer" in sampler.calls[0][0][0]


def test_dstc_pairs_the_solutions_by_passed_self_tests_as_enumeration():
    """Solutions 'k=<v>' pass tests 'k>=<t>'; a test no solution passes is ignored; ties are left out."""
    sol = {"p1": ["k=3", "k=1", "k=2"], "p2": ["k=1", "k=1", "k=1"]}
    tst = {"p1": ["k>=1", "k>=3", "k>=9"], "p2": ["k>=1", "k>=5", "k>=0"]}

    def fn(prompt, j):
        name = prompt.split("\n")[0]
        return (tst if "test case" in prompt else sol)[name][j]

    def run(solution, test):
        return int(solution.split("=")[1]) >= int(test.split(">=")[1])

    with pytest.warns(PairkitWarning, match="left out 1 of 2 rows"):
        out = dstc_self_tests(Scripted(fn), ["p1", "p2"], run, solutions=3, tests=3)
    # enumeration: pass matrix over the tests some solution passes
    passed = np.array([[run(s, t) for t in tst["p1"]] for s in sol["p1"]])
    counts = passed[:, passed.any(0)].sum(1)
    best, worst = sol["p1"][int(counts.argmax())], sol["p1"][int(counts.argmin())]
    assert out == [{"prompt": "p1", "chosen": best, "rejected": worst,
                    "chosen_passed": 2, "rejected_passed": 1, "tests": ["k>=1", "k>=3"]}]  # fmt: skip


def test_tpo_overwrites_every_topic_with_its_best_and_worst_candidate():
    rows = [{"prompt": "describe", "response": "A red car. A big tree."}, {"prompt": "x", "response": "Same."}]
    alts = {"A red car.": ["A blue car.", "A good red car."], "A big tree.": ["A tree.", "A good good tree."],
            "Same.": ["Same.", "Same."]}  # fmt: skip

    def fn(prompt, j):
        sentence = prompt.split("Rewrite the next sentence: ")[1].split("\n")[0]
        return alts[sentence][j]

    score = lambda prompt, s: s.count("good") - 0.1 * len(s)  # noqa: E731
    with pytest.warns(PairkitWarning, match="left out 1 of 2 rows"):
        out = tpo_topic_rewrites(Scripted(fn), rows, score, k=2)
    # brute force over each topic's candidates (the original included)
    chosen, rejected = [], []
    for sent in ("A red car.", "A big tree."):
        cands = [sent, *alts[sent]]
        chosen.append(max(cands, key=lambda c: score("", c)))
        rejected.append(min(cands, key=lambda c: score("", c)))
    assert out == [{"prompt": "describe", "chosen": " ".join(chosen), "rejected": " ".join(rejected),
                    "topics_changed": 2}]  # fmt: skip


def test_rules_run_on_the_hf_sampler_of_the_online_loop_and_feed_the_trainer(tokenizer):
    """A tiny Llama from a config: seeded generation is repeatable, and the rows train with the paired losses."""
    model = build_model(tokenizer, seed=3)
    sampler = HFSampler(model, tokenizer)
    rows = [{"prompt": f"say {w}", "chosen": f"{w} good", "rejected": f"{w} bad"} for w in ("alpha", "beta", "gamma")]
    kwargs = dict(max_new_tokens=6, seed=11)
    with _no_warning_check():
        a = bmc_pseudo_winners(sampler, rows, **kwargs)
        b = bmc_pseudo_winners(sampler, rows, **kwargs)
    assert a == b and len(a) >= 1
    res = train_preference(model, tokenizer, a, loss="bmc", config=TrainConfig(batch_size=len(a), max_steps=1))
    assert np.isfinite(res.history[0]["loss"])
    edits = rise_self_edits(sampler, [{"prompt": r["prompt"], "solution": r["chosen"]} for r in rows],
                            max_edit_fraction=1.0, **kwargs)  # fmt: skip
    assert all(e["rejected"] != e["chosen"] for e in edits)
    if edits:
        config = TrainConfig(batch_size=len(edits), max_steps=1)
        res = train_preference(model, tokenizer, edits, loss="rise", config=config)
        assert np.isfinite(res.history[0]["loss"])


class _no_warning_check:
    def __enter__(self):
        import warnings

        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore", PairkitWarning)

    def __exit__(self, *exc):
        self._w.__exit__(*exc)


def test_bad_arguments_are_named():
    s = Scripted(lambda p, j: "x")
    with pytest.raises(InputError, match="max_edit_fraction"):
        rise_self_edits(s, [], max_edit_fraction=0)
    with pytest.raises(InputError, match="solutions >= 2"):
        dstc_self_tests(s, ["p"], lambda a, b: True, solutions=1)
    with pytest.raises(InputError, match="sampler must have sample"):
        bmc_pseudo_winners(object(), [{"prompt": "p", "chosen": "a", "rejected": "b"}])
    bad = Scripted(lambda p, j: "x")
    bad.sample = lambda prompts, **kw: [["x"]]
    with pytest.raises(InputError, match="expected 1 each"):
        bmc_pseudo_winners(bad, [{"prompt": "p", "chosen": "a", "rejected": "b"}] * 2)
