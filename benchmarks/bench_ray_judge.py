"""Throughput of a tiny local Hugging Face judge: one process vs RayJudge actors on a local Ray cluster.

The judge is ``HFJudge`` over a randomly initialised GPT-2 built from a config (no download) with a character
tokenizer; the work is a round robin over ``--items`` answers (both orders), so every run asks the same
requests. Ray: ``ray.init(num_cpus=2)``, ``--actors`` actors of one CPU each, ``torch`` limited to one thread
per process in both settings. Judgments per second are wall-clock over the whole ``select`` call (after a
warm-up call that loads the model and starts the actors).

    python benchmarks/bench_ray_judge.py --items 8 --layers 2 --width 64
"""

from __future__ import annotations

import argparse
import os
import time


def make_judge(layers: int = 4, width: int = 128):
    """A tiny HFJudge: random GPT-2 from a config and a character-level tokenizer (no downloads)."""
    import torch
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers

    from pairkit.judges.local import HFJudge

    torch.set_num_threads(1)
    chars = sorted(set("".join(chr(c) for c in range(32, 127)) + "\n'’"))
    vocab = {"<pad>": 0, "<eos>": 1, **{ch: i + 2 for i, ch in enumerate(chars)}}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    core.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    tok = transformers.PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="<eos>")
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=len(vocab), n_positions=2048, n_embd=width, n_layer=layers, n_head=4)
    return HFJudge(transformers.GPT2LMHeadModel(config), tok, batch_size=8, template="pairwise")


def pool(items: int):
    from pairkit.select import Pool

    return Pool.single({f"m{k}": f"Answer {k}: " + "some text " * (3 + k % 5) for k in range(items)}, context="q?")


def timed(judge, items: int) -> tuple[float, int]:
    from pairkit.select import select

    t = time.perf_counter()
    sel = select("round_robin", judge, pool(items), policy="both_average")
    return time.perf_counter() - t, sel.calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=8)
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import functools

    import ray

    from pairkit.judges import RayJudge

    factory = functools.partial(make_judge, args.layers, args.width)
    timed(factory(), 4)  # warm-up (imports)
    local = [timed(factory(), args.items) for _ in range(args.repeats)]
    load_local = os.getloadavg()[0]
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    remote = RayJudge(factory, n_actors=args.actors)
    timed(remote, 4)  # warm-up: the actors load their model
    distributed = [timed(remote, args.items) for _ in range(args.repeats)]
    load_ray = os.getloadavg()[0]
    remote.shutdown()
    ray.shutdown()
    print("| setting | judgments | seconds (best of repeats) | judgments/s | load average (1 min) |")
    print("|---|---|---|---|---|")
    for label, runs, load in (("one process (HFJudge)", local, load_local),
                              (f"RayJudge, {args.actors} actors × 1 CPU", distributed, load_ray)):  # fmt: skip
        seconds, calls = min(runs)
        print(f"| {label} | {calls} | {seconds:.2f} | {calls / seconds:.1f} | {load:.2f} |")


if __name__ == "__main__":
    main()
