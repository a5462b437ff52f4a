"""Data parallel (full replicas) against FSDP2 in pairkit's trainer: seconds per DPO step and memory per process.

Run under two processes (gloo on CPU), once per mode and model size::

    MALLOC_MMAP_THRESHOLD_=131072 torchrun --nproc_per_node 2 benchmarks/bench_fsdp.py big fsdp
    MALLOC_MMAP_THRESHOLD_=131072 torchrun --nproc_per_node 2 benchmarks/bench_fsdp.py big ddp

Modes: ``ddp`` (full replicas), ``fsdp``, and FSDP with one of accelerate's options set the way ``accelerate launch``
sets it (``FSDP_*`` variables): ``offload`` (``--fsdp_offload_params true``), ``checkpoint``
(``--fsdp_activation_checkpointing true``), ``keep`` (``--fsdp_reshard_after_forward false``).

A third argument ``online`` runs the online loop instead (:func:`~pairkit.train.train_online`, online DPO with a
rule judge: 2 rounds of 4 prompts, 4 samples of 8 tokens each, per-prompt seeds): the time is the second round's
(sampling in step with ``synced_gpus`` under FSDP, judging on rank 0, training), and the reference is a full frozen
copy in each process in both modes; mode ``gathered`` is FSDP sampling from a full copy gathered once per round
(``--fsdp-sampling gathered``)::

    MALLOC_MMAP_THRESHOLD_=131072 torchrun --nproc_per_node 2 benchmarks/bench_fsdp.py big fsdp online

Sizes: ``tiny`` (GPT-2, 16 wide, 1 layer, 9k parameters), ``wide`` (256, 4 layers, 3.3M), ``big`` (768, 8 layers,
57M); the character vocabulary of :mod:`pairkit.testing`. 5 steps of batch 8 (4 pairs per process); the time is
the mean of steps 3..5. Each process prints one JSON line: its peak resident memory, the bytes of the parameters
it holds, and the step time. glibc keeps freed buffers of FSDP's gathers in its heap unless
``MALLOC_MMAP_THRESHOLD_`` is fixed; without it the peak RSS does not show the sharding.
"""

import json
import os
import resource
import sys
import time

import torch
import transformers

from pairkit.testing import char_tokenizer
from pairkit.train import TrainConfig, train_preference

SIZES = {"tiny": (16, 1), "wide": (256, 4), "big": (768, 8)}
OPTIONS = {"offload": "FSDP_OFFLOAD_PARAMS", "checkpoint": "FSDP_ACTIVATION_CHECKPOINTING",
           "keep": "FSDP_RESHARD_AFTER_FORWARD"}  # fmt: skip


def _pairs(n):
    words = ["red", "blue", "green", "cat", "dog", "sun", "moon", "tree"]
    return [{"prompt": f"say {words[i % 8]}", "chosen": f" {words[i % 8]} {words[i % 8]}",
             "rejected": f" {words[(i + 3) % 8]} {words[(i + 3) % 8]}"} for i in range(n)]  # fmt: skip


def _online(model, tok, config, stamps, sampling="synced") -> None:
    from pairkit.judges import CallableJudge
    from pairkit.train import OnlineConfig, train_online

    def judge(context, first, second):  # more letters 'e' wins
        return 1.0 if first.count("e") > second.count("e") else 0.0 if first.count("e") < second.count("e") else 0.5

    online = OnlineConfig(rounds=2, prompts_per_round=4, k=4, max_new_tokens=8, per_prompt_seeds=True,
                          fsdp_sampling=sampling)  # fmt: skip
    prompts = [p["prompt"] for p in _pairs(8)]
    train_online(model, tok, prompts, CallableJudge(judge), config=config, online=online,
                 callback=lambda row: stamps.append(time.perf_counter()))  # fmt: skip


def main(size: str = "tiny", mode: str = "fsdp", loop: str = "dpo") -> None:
    tok = char_tokenizer()
    torch.manual_seed(0)
    width, layers = SIZES[size]
    config = transformers.GPT2Config(vocab_size=len(tok), n_positions=256, n_embd=width, n_layer=layers, n_head=2,
                                     pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)  # fmt: skip
    model = transformers.GPT2LMHeadModel(config)
    rss_before = os.sysconf("SC_PAGE_SIZE") * int(open("/proc/self/statm").read().split()[1]) / 2**20  # noqa: SIM115
    stamps = []
    if mode in OPTIONS:
        os.environ[OPTIONS[mode]] = "false" if mode == "keep" else "true"
    config = TrainConfig(batch_size=8, max_steps=5, lr=1e-3, fsdp=mode != "ddp")
    clock = time.perf_counter()
    if loop == "online":
        _online(model, tok, config, stamps, "gathered" if mode == "gathered" else "synced")
        stamps.insert(0, clock)  # step_s is then the second round's time
    else:
        train_preference(model, tok, _pairs(64), config=config, callback=lambda row: stamps.append(time.perf_counter()))
    held = sum((p.to_local() if hasattr(p, "to_local") else p).numel() * p.element_size() for p in model.parameters())
    print(json.dumps({
        "size": size, "mode": mode, "loop": loop, "rank": torch.distributed.get_rank(),
        "step_s": round((stamps[-1] - stamps[1]) / (len(stamps) - 2), 3),
        "rss_before_MB": round(rss_before),
        "peak_rss_MB": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "param_kB_held": round(held / 1024, 1),
    }), flush=True)  # fmt: skip
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:4])
