"""Run by ``accelerate launch`` in tests/train/test_accelerate_online.py (two CPU processes, gloo).

Two rounds of online DPO in ``OUT/run``, stopped in round 2 by the judge failing on the main process (after the
round's samples were saved and 19 of its judgments cached), then resumed; every judge call is appended to
``OUT/calls.jsonl`` with the rank that made it. Then one round of each method of :data:`METHODS`. Each rank saves
its final weights and metrics rows to ``OUT/rank-R.pt``."""

import json
import os
import sys

import torch

from pairkit.judges import CallableJudge
from pairkit.train import OnlineConfig, TrainConfig, train_online

WORDS = "alpha beta gamma delta good bad yes no".split()
PROMPTS = [f"say {w}" for w in WORDS] * 2


def prefers_a(context, first, second):
    """More letters 'a' wins; equal counts tie (as tests/train/test_online.py's judge)."""
    a, b = first.count("a"), second.count("a")
    return 1.0 if a > b else 0.0 if a < b else 0.5


def logged(log, fail_at=None):
    """The judge, appending each call (with the calling process's rank) to ``log``; raises at call ``fail_at``."""
    calls = {"n": 0}

    def judge(context, first, second):
        calls["n"] += 1
        if calls["n"] == fail_at:
            raise KeyboardInterrupt
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(json.dumps([os.environ.get("RANK", "0"), context, first, second]) + "\n")
        return prefers_a(context, first, second)

    return CallableJudge(judge, judge_id="prefers_a")


def load(model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir).to(torch.float64)
    return model, AutoTokenizer.from_pretrained(model_dir)


def run(model_dir, out, judge=None, *, rounds=2, resume=False, method="online_dpo", prompts=PROMPTS, small=False,
        k=None, **kw):  # fmt: skip
    """``rounds`` of ``method`` from the saved tiny model (float64); ``small``: 4 prompts, 3 samples, batches of 6."""
    model, tok = load(model_dir)
    size = dict(prompts_per_round=4, k=k or 3, max_new_tokens=6) if small else dict(prompts_per_round=8, k=4,
                                                                                   max_new_tokens=8)  # fmt: skip
    online = OnlineConfig(rounds=rounds, per_prompt_seeds=True, **size)
    config = TrainConfig(lr=2e-2, batch_size=6 if small else 4, seed=0, output_dir=str(out) if out else None)
    hist = train_online(model, tok, prompts, judge, method=method, config=config, online=online, resume=resume,
                        **kw)  # fmt: skip
    return model, hist


def weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


PAIRS = [{"prompt": p, "chosen": "alpha alpha good", "rejected": "bad no"} for p in PROMPTS[:4]]
# one method per data parallel code path besides online_dpo's (the pairs of _train_round): the policy-gradient
# chunks (GRPO's token mean couples a chunk's sequences; P3O with a KL penalty), HyPO, SCIR, SPIN's mixture
# reference and step-DPO's judged tree
METHODS = {
    "grpo": {"method_options": {"aggregation": "token"}}, "p3o": {"beta": 0.05},
    "hypo": {"judge": None, "prompts": None, "data": PAIRS},
    "scir": {"judge": None, "prompts": PROMPTS[:2], "k": 2},
    "spin": {"judge": None, "prompts": None, "data": PAIRS, "method_options": {"alpha": 0.5}},
    "step_dpo": {"method_options": {"depth": 2, "delimiter": " "}},
}  # fmt: skip


def run_method(model_dir, method):
    kw = {"judge": CallableJudge(prefers_a), "rounds": 1, **METHODS[method]}
    model, hist = run(model_dir, None, kw.pop("judge"), method=method, small=True, **kw)
    return weights(model), [{k: v for k, v in row.items() if not k.startswith("time/")} for row in hist]


if __name__ == "__main__":
    out, model_dir = sys.argv[1], sys.argv[3]
    rank = int(os.environ["RANK"])
    stopped = False
    try:
        run(model_dir, f"{out}/run", logged(f"{out}/calls.jsonl", fail_at=48 + 20))
    except KeyboardInterrupt:
        stopped = True
    drawn = os.stat(f"{out}/run/samples/round-2.json").st_mtime_ns
    model, hist = run(model_dir, f"{out}/run", logged(f"{out}/calls.jsonl"), resume=True)
    redrawn = os.stat(f"{out}/run/samples/round-2.json").st_mtime_ns != drawn
    torch.save({"weights": weights(model), "history": hist, "stopped": stopped, "redrawn": redrawn,
                "methods": {method: run_method(model_dir, method) for method in METHODS}}, f"{out}/rank-{rank}.pt")
    torch.distributed.destroy_process_group()
