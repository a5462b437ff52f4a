"""One online round, time per phase: pairkit's loop (online DPO and GRPO) against TRL's GRPOTrainer, CPU.

A tiny Llama built from a config (2 layers, hidden 32, a 400-token BPE vocabulary trained here; no downloads),
8 prompts per round, 4 samples each, 16 new tokens. pairkit's judge is a scripted pairwise comparator (more
letters "a" wins, all pairs within a prompt: 48 judgments per round); TRL's GRPO gets the equivalent pointwise
reward (the count of "a"). Both take one optimiser step per round with the same batch (32 sequences), the same
learning rate, no KL term, dropout off. Reported: median seconds per round over rounds 2..R (round 1 includes
warm-up) — for pairkit split into generate, judge, fit (per-prompt Bradley–Terry ratings) and train — and TRL's
seconds per step (generation, reward and update together: its trainer does not time phases). "wall" is the
median wall-clock time of a round (for pairkit it also includes the per-round KL metric: a policy and a reference
pass over the samples).

    python benchmarks/bench_online.py [--rounds 4]

``--curve`` instead draws the proof that the loop learns: the judge-measured win rate of the policy against its
initial self on held-out prompts, against the judge calls spent on training, for online DPO (Guo et al. 2024),
iterative DPO (Xiong et al. 2024), SPPO (Wu et al. 2024) and offline DPO on pairs sampled from the initial policy
only (the same loop with an ``HFSampler`` over a frozen copy of the starting model), all at the same judge-call
budget per round (8 prompts × all 6 pairs of 4 samples). The win rate is measured by a separate judge object (its
calls are not counted), with 4 samples per held-out prompt, both orders shown; mean over seeds.

    python benchmarks/bench_online.py --curve [--rounds 12 --seeds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import warnings

import torch

WORDS = "alpha beta gamma delta good bad yes no banana papaya".split()
PROMPTS = [f"say {w}" for w in WORDS[:8]]


def tiny_model_and_tokenizer(seed: int = 0, corpus: str = ""):
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<pad>", "<unk>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())  # fmt: skip
    tok.train_from_iterator([" ".join(WORDS) + corpus] * 50, trainer)
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>",
                                                bos_token="<s>", eos_token="</s>")  # fmt: skip
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(vocab_size=len(fast), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                                      pad_token_id=fast.pad_token_id, bos_token_id=fast.bos_token_id,
                                      eos_token_id=fast.eos_token_id)  # fmt: skip
    return transformers.LlamaForCausalLM(config), fast


def prefers_a(context, first, second):
    a, b = first.count("a"), second.count("a")
    return 1.0 if a > b else 0.0 if a < b else 0.5


def run_pairkit(method: str, rounds: int) -> dict[str, float]:
    from pairkit.judges import CallableJudge
    from pairkit.train import OnlineConfig, TrainConfig, train_online

    model, tok = tiny_model_and_tokenizer()
    online = OnlineConfig(rounds=rounds, prompts_per_round=8, k=4, max_new_tokens=16)
    stamps = [time.perf_counter()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hist = train_online(model, tok, PROMPTS, CallableJudge(prefers_a), method=method, beta=0.1 if method != "grpo"
                            else 0.0, config=TrainConfig(lr=1e-3, batch_size=32), online=online,
                            callback=lambda row: stamps.append(time.perf_counter()))  # fmt: skip
    rows = hist[1:] if len(hist) > 1 else hist
    out = {k: statistics.median(r.get(k, 0.0) for r in rows) for k in ("time/generate", "time/judge", "time/fit",
                                                                      "time/train")}  # fmt: skip
    # the whole round, wall clock: also the per-round KL metric (a policy and a reference pass) and bookkeeping
    out["total"] = statistics.median(b - a for a, b in list(zip(stamps, stamps[1:]))[1:])
    out["judge_calls"] = statistics.median(r["judge_calls"] for r in rows)
    return out


def run_trl(rounds: int) -> dict[str, float] | str:
    try:
        from datasets import Dataset
        from trl import GRPOConfig, GRPOTrainer
    except ImportError as exc:  # pragma: no cover - optional peer
        return f"not runnable: {exc}"
    model, tok = tiny_model_and_tokenizer()

    def count_a(completions, **kwargs):
        return [float(c.count("a")) for c in completions]

    with tempfile.TemporaryDirectory() as tmp:
        args = GRPOConfig(output_dir=tmp, per_device_train_batch_size=32, num_generations=4, max_completion_length=16,
                          max_steps=rounds, learning_rate=1e-3, beta=0.0, use_cpu=True, report_to=[],
                          save_strategy="no", logging_steps=1, temperature=1.0, top_k=0, top_p=1.0,
                          disable_dropout=True)  # fmt: skip
        data = Dataset.from_dict({"prompt": PROMPTS * 4})
        trainer = GRPOTrainer(model=model, reward_funcs=count_a, args=args, train_dataset=data, processing_class=tok)
        stamps = []

        class Clock:
            def on_step_end(self, *a, **k):
                stamps.append(time.perf_counter())

        from transformers import TrainerCallback

        trainer.add_callback(type("StepClock", (TrainerCallback,), {"on_step_end": Clock.on_step_end})())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer.train()
    steps = [b - a for a, b in zip(stamps, stamps[1:])]
    return {"total": statistics.median(steps) if steps else float("nan")}


EVAL = [f"{v} {w}" for v in ("tell", "write", "give", "show") for w in WORDS[:8]]
CURVE_METHODS = ("online_dpo", "iterative_dpo", "sppo", "offline_dpo")


def run_curve(method: str, rounds: int, seed: int, eval_every: int) -> list[tuple[int, float]]:
    """(cumulative training judge calls, win rate vs the initial policy) after round 0, eval_every, …, rounds."""
    from pairkit.judges import CallableJudge
    from pairkit.train import HFSampler, OnlineConfig, TrainConfig, train_online
    from pairkit.train.online import _frozen, win_rate

    model, tok = tiny_model_and_tokenizer(seed)
    initial = _frozen(model)
    online = OnlineConfig(rounds=rounds, prompts_per_round=8, k=4, max_new_tokens=8)
    scorer = CallableJudge(prefers_a)  # a separate object: evaluation calls are not training calls
    points, calls = [(0, 0.5)], [0]  # round 0: the policy is its initial self (identical samples: 0.5 exactly)

    def after_round(row):
        calls[0] += row["judge_calls"]
        if row["round"] % eval_every == 0:
            wr = win_rate(model, initial, tok, EVAL * 4, scorer, online=online, seed=10_000 + seed)
            points.append((calls[0], wr))

    kw = {"method": "online_dpo", "sampler": HFSampler(_frozen(model), tok)} if method == "offline_dpo" else {
        "method": method}  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train_online(model, tok, PROMPTS, CallableJudge(prefers_a), beta=0.1 if method != "sppo" else 1.0,
                     config=TrainConfig(lr=2e-2, batch_size=8, seed=seed), online=online, callback=after_round,
                     **kw)  # fmt: skip
    return points


def curve(rounds: int, seeds: int, eval_every: int, out_png: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    print(f"load average before: {os.getloadavg()[0]:.2f}")
    results, seconds = {}, {}
    for m in CURVE_METHODS:
        clock = time.perf_counter()
        runs = [run_curve(m, rounds, s, eval_every) for s in range(seeds)]
        seconds[m] = time.perf_counter() - clock
        calls = np.mean([[c for c, _ in r] for r in runs], axis=0)
        wins = np.array([[w for _, w in r] for r in runs])
        results[m] = (calls, wins.mean(0), wins.std(0))
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    fig, ax = plt.subplots(figsize=(6, 4))
    for m, (c, w, sd) in results.items():
        ax.errorbar(c, w, yerr=sd, marker="o", capsize=3, label=m)
    ax.axhline(0.5, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("judge calls spent on training")
    ax.set_ylabel("judge win rate vs the initial policy")
    ax.set_title(f"tiny Llama, rule judge (more 'a' wins), mean ± sd of {seeds} seeds")
    ax.set_ylim(0.3, 1.02)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_png, dpi=120)
    print(f"saved {out_png}")
    head = " | ".join(f"round {r}" for r in range(0, rounds + 1, eval_every))
    print(f"| method | {head} | judge calls | s ({seeds} seeds) |")
    print("|---|" + "---|" * (rounds // eval_every + 3))
    for m, (c, w, sd) in results.items():
        cells = " | ".join(f"{a:.2f} ± {b:.2f}" for a, b in zip(w, sd))
        print(f"| {m} | {cells} | {c[-1]:.0f} | {seconds[m]:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--curve", action="store_true", help="win rate against judge calls, four methods")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--eval-every", type=int, default=3)
    parser.add_argument("--png", default=os.path.join(os.path.dirname(__file__), "results", "online_win_rate.png"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.curve:
        curve(args.rounds, args.seeds, args.eval_every, args.png)
        return
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    rows = {f"pairkit {m}": run_pairkit(m, args.rounds) for m in ("online_dpo", "grpo")}
    rows["TRL GRPOTrainer"] = run_trl(args.rounds)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    print("| run | generate s | judge s | fit s | train s | wall s/round | judge calls/round |")
    print("|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        if isinstance(r, str):
            print(f"| {name} | {r} |")
            continue
        cells = [f"{r[k]:.3f}" if k in r else "—" for k in ("time/generate", "time/judge", "time/fit", "time/train")]
        print(f"| {name} | {' | '.join(cells)} | {r['total']:.3f} | {r.get('judge_calls', '—')} |")


if __name__ == "__main__":
    main()
