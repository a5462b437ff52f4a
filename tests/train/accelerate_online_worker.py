"""Run by ``accelerate launch`` in tests/train/test_accelerate_online.py (two CPU processes, gloo).

Two rounds of online DPO in ``OUT/run``, stopped in round 2 by the judge failing on the main process (after the
round's samples were saved and 19 of its judgments cached), then resumed; every judge call is appended to
``OUT/calls.jsonl`` with the rank that made it. Then one round of each method of :data:`METHODS`. Each rank saves
its final weights and metrics rows to ``OUT/rank-R.pt``.

Mode ``fsdp`` (under ``--use_fsdp``, for tests/train/test_accelerate_online_fsdp.py): the same stopped and resumed
online DPO run with the policy sharded, then the runs of :data:`FSDP_RUNS` (uneven shares, batched sampling in
every process, iterative DPO with a win rate, every other method); each rank saves the gathered weights and the
placement and local shape of every parameter."""

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
        k=None, per_prompt=True, eval_every=0, prompts_per_round=None, batch_size=None, fsdp_sampling="synced",
        **kw):  # fmt: skip
    """``rounds`` of ``method`` from the saved tiny model (float64); ``small``: 4 prompts, 3 samples, batches of 6."""
    model, tok = load(model_dir)
    size = dict(prompts_per_round=4, k=k or 3, max_new_tokens=6) if small else dict(prompts_per_round=8, k=4,
                                                                                   max_new_tokens=8)  # fmt: skip
    size["prompts_per_round"] = prompts_per_round or size["prompts_per_round"]
    online = OnlineConfig(rounds=rounds, per_prompt_seeds=per_prompt, eval_every=eval_every,
                          fsdp_sampling=fsdp_sampling, **size)  # fmt: skip
    config = TrainConfig(lr=2e-2, batch_size=batch_size or (6 if small else 4), seed=0,
                         output_dir=str(out) if out else None)  # fmt: skip
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
    # batch-coupled losses, computed on the gathered minibatch (each process's share alone gives other weights):
    # Dr. DPO's soft minimum once the policy has moved (round 2), the SFT term's token mean over chosen answers of
    # different lengths
    "online_dpo+dr_dpo": {"method": "online_dpo", "rounds": 2, "loss": "dr_dpo", "loss_options": {"beta_prime": 0.05}},
    "hypo+sft": {"method": "hypo", "judge": None, "prompts": None, "loss": "dpo+0.5*sft",
                 "data": [{"prompt": p, "chosen": "alpha " * (1 + 3 * i) + "good", "rejected": "bad no"}
                          for i, p in enumerate(PROMPTS[:4])]},
}  # fmt: skip


def run_method(model_dir, method, runs=METHODS):
    kw = {"judge": CallableJudge(prefers_a), "rounds": 1, **runs[method]}
    kw.setdefault("method", method)
    model, hist = run(model_dir, None, kw.pop("judge"), small=True, **kw)
    return whole_weights(model), [{k: v for k, v in row.items() if not k.startswith("time/")} for row in hist]


def whole_weights(model):
    """The whole weights, gathered when FSDP sharded the model."""
    from pairkit.train import full_state_dict

    return full_state_dict(model)


# under FSDP: the paths besides the per-prompt sampled online DPO run: uneven shares (3 prompts: one process makes
# a dropped sampling call; batches of 2 of 3 pairs: one process runs a weight-0 step), batched sampling in every
# process (with the reference moved every round and an evaluation win rate), SPIN's earlier iterates and mixture
# reference, step-DPO, CREAM (the policy as judge, its previous iterate too, a self-judged win rate), SCIR, HyPO and
# the policy-gradient methods (3 chunks of GRPO and P3O: one process runs an extra pass before training and a
# weight-0 share)
FSDP_RUNS = {
    "uneven": {"method": "online_dpo", "prompts_per_round": 3, "batch_size": 2, "rounds": 2},
    "gathered": {"method": "online_dpo", "prompts_per_round": 3, "rounds": 2, "fsdp_sampling": "gathered"},
    "batched_iterative": {"method": "iterative_dpo", "per_prompt": False, "rounds": 2, "eval_every": 1,
                          "eval_prompts": PROMPTS[4:7]},
    "spin": {"judge": None, "prompts": None, "data": PAIRS, "rounds": 2,
             "method_options": {"alpha": 0.5, "history": 2}},
    "step_dpo": {"method_options": {"depth": 2, "delimiter": " "}},
    "cream": {"judge": None, "rounds": 2, "eval_every": 2, "eval_prompts": PROMPTS[4:7]},
    "scir": {"judge": None, "prompts": PROMPTS[:3], "k": 3, "batch_size": 11},  # 12 pairs: batches of 11 and 1
    "hypo": {"judge": None, "prompts": None, "data": PAIRS[:3], "batch_size": 3},
    "grpo": {"method_options": {"aggregation": "token"}, "prompts_per_round": 3, "batch_size": 3},
    "p3o": {"beta": 0.05, "prompts_per_round": 3, "batch_size": 3},
    "rloo": {"beta": 0.05}, "sppo": {}, "superhf": {"beta": 0.05, "prompts_per_round": 3},
}  # fmt: skip


def stopped_and_resumed(out, model_dir):
    """Two rounds of online DPO in ``OUT/run`` stopped in round 2 by the judge and resumed: the resumed model, its
    metrics rows, and whether the run stopped and whether round 2 was sampled again."""
    stopped = False
    try:
        run(model_dir, f"{out}/run", logged(f"{out}/calls.jsonl", fail_at=48 + 20))
    except KeyboardInterrupt:
        stopped = True
    drawn = os.stat(f"{out}/run/samples/round-2.json").st_mtime_ns
    model, hist = run(model_dir, f"{out}/run", logged(f"{out}/calls.jsonl"), resume=True)
    redrawn = os.stat(f"{out}/run/samples/round-2.json").st_mtime_ns != drawn
    return model, {"history": hist, "stopped": stopped, "redrawn": redrawn}


def fsdp_main(out, model_dir):
    model, saved = stopped_and_resumed(out, model_dir)
    saved["shards"] = {name: (str(p.placements), tuple(p.to_local().shape), tuple(p.shape))
                       for name, p in model.named_parameters()}  # fmt: skip
    saved["weights"] = whole_weights(model)
    saved["runs"] = {name: run_method(model_dir, name, FSDP_RUNS) for name in FSDP_RUNS}
    return saved


if __name__ == "__main__":
    out, model_dir = sys.argv[1], sys.argv[3]
    rank = int(os.environ["RANK"])
    if sys.argv[2] == "fsdp":
        saved = fsdp_main(out, model_dir)
    else:
        model, saved = stopped_and_resumed(out, model_dir)
        saved["weights"] = weights(model)
        saved["methods"] = {method: run_method(model_dir, method) for method in METHODS}
    torch.save(saved, f"{out}/rank-{rank}.pt")
    torch.distributed.destroy_process_group()
