"""``pairkit train {dpo,kto,listwise,reward,pmp,contrastive,...}``: train a local transformers model on preference data.

torch and transformers are imported inside the commands, so ``pairkit --help`` works without them.
"""

from __future__ import annotations

from pathlib import Path

import typer

from pairkit._optional import requires
from pairkit.cli._app import app
from pairkit.cli._common import console, reported_errors

train_app = typer.Typer(help="Train a model on preferences (needs the 'train' extra: torch, transformers).")
app.add_typer(train_app, name="train")

_MODEL = typer.Option(..., "--model", help="Local transformers model directory (config, weights, tokenizer).")
_DATA = typer.Option(..., "--data", help="JSON, JSONL(.gz) or Parquet file of training rows.")
_OUTPUT = typer.Option(Path("pairkit-train"), "--output", help="Directory for checkpoints, metrics and the model.")


_MAX_PROMPT = typer.Option(None, "--max-prompt-length", help="Cut prompts to their last N tokens.")
_MAX_COMPLETION = typer.Option(None, "--max-completion-length", help="Cut completions to their first N tokens.")
_DROPOUT = typer.Option(False, "--dropout", help="Keep the model's dropout on while training (off by default).")
_EPOCHS = typer.Option(1, "--epochs")
_GRAD_ACCUM = typer.Option(1, "--grad-accum", help="Micro-batches per step.")
_MAX_STEPS = typer.Option(None, "--max-steps")
_SAVE_EVERY = typer.Option(None, "--save-every", help="Checkpoint every N steps (and at the end).")
_SEED = typer.Option(0, "--seed")
_BF16 = typer.Option(False, "--bf16", help="bf16 autocast (CPU).")
_HELD_OUT = typer.Option(
    0.2, "--held-out", help="Fraction of rows kept out to report accuracy (split by prompt: no prompt in both)."
)
_EVAL_DATA = typer.Option(None, "--eval-data", help="Held-out rows to report accuracy on (no split).")
_RESUME = typer.Option(False, "--resume", help="Continue from the newest checkpoint in --output.")
_LOSS_OPTION = typer.Option(
    None, "--loss-option", help="KEY=VALUE option of the loss (e.g. label_smoothing=0.1), or LOSS.KEY=VALUE for one "
    "term of a sum only (e.g. sft.normalize=false); repeatable.",
)
_REWARD_LOSS = typer.Option("reward_bradley_terry", "--loss", help="Reward loss name or weighted sum.")
_REWARD_BATCH = typer.Option(8, "--batch-size")
_REWARD_LR = typer.Option(1e-5, "--lr")
_REWARD_MAX_LENGTH = typer.Option(512, "--max-length", help="Tokens per sequence; prompts are cut first.")


def _config(output, epochs, batch_size, grad_accum, lr, max_length, max_steps, save_every, seed, bf16, **extra):
    from pairkit.train import TrainConfig

    return TrainConfig(
        **extra,
        output_dir=str(output),
        epochs=epochs,
        batch_size=batch_size,
        grad_accum=grad_accum,
        lr=lr,
        max_length=max_length,
        max_steps=max_steps,
        save_every=save_every,
        seed=seed,
        bf16=bf16,
        progress=True,
    )


_WEIGHTS = ("*.safetensors", "*.safetensors.index.json", "pytorch_model*.bin", "pytorch_model.bin.index.json")
_TOKENIZER = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json", "vocab.txt")


def _check_model_dir(model_path: Path) -> None:
    """Name what a local model directory lacks instead of letting transformers guess (or ask a hub)."""
    from pairkit.errors import InputError

    where = f"--model {str(model_path)!r}"
    if not model_path.is_dir():
        raise InputError(f"{where} is not a local model directory (pairkit never downloads models)")
    if not (model_path / "config.json").is_file():
        raise InputError(f"{where} has no config.json; save the model with model.save_pretrained(DIR)")
    if not any(next(model_path.glob(g), None) for g in _WEIGHTS):
        raise InputError(f"{where} has a config but no weights (model.safetensors or pytorch_model.bin)")
    if not any((model_path / f).is_file() for f in _TOKENIZER):
        raise InputError(
            f"{where} has no tokenizer files ({', '.join(_TOKENIZER[:2])}, ...); "
            "save it there with tokenizer.save_pretrained(DIR)"
        )


def _from_pretrained(cls, model_path: Path, what: str, **kwargs):
    from pairkit.errors import InputError

    try:
        return cls.from_pretrained(model_path, local_files_only=True, **kwargs)
    except (OSError, ValueError, RuntimeError, KeyError, ImportError) as exc:
        # truncated safetensors, a damaged config or a tokenizer needing a missing package
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"--model {str(model_path)!r}: cannot load the {what}: {first[:200]}") from None
    except Exception as exc:  # safetensors' own error type does not derive from OSError
        if type(exc).__name__ != "SafetensorError":
            raise
        raise InputError(f"--model {str(model_path)!r}: the weights file is damaged ({exc})") from None


def _load_model(model_path: Path, kind: str = "causal", lora: int = 0):
    """Tokenizer and model from a local directory; ``kind`` 'causal' or 'reward' (one-score classifier)."""
    with requires("train", "pairkit train"):
        from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    _check_model_dir(model_path)
    tokenizer = _from_pretrained(AutoTokenizer, model_path, "tokenizer")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if kind == "reward":
        model = _from_pretrained(AutoModelForSequenceClassification, model_path, "model", num_labels=1)
    else:
        model = _from_pretrained(AutoModelForCausalLM, model_path, "model")
    if lora:
        with requires("train", "--lora"):
            import peft
        model = peft.get_peft_model(model, peft.LoraConfig(r=lora, lora_alpha=2 * lora, target_modules="all-linear"))
    return model, tokenizer


def _finish(model, tokenizer, result, output: Path) -> None:
    from pairkit._io import atomic_directory
    from pairkit.train._fsdp import full_state_dict, is_sharded
    from pairkit.train._loop import rank_and_world

    state = full_state_dict(model) if is_sharded(model) else None  # FSDP: every process gathers the shards
    if rank_and_world()[0] != 0:  # data parallel (accelerate launch, torchrun): one process writes the model
        return
    final = output / "final"
    with atomic_directory(final) as tmp:  # a kill mid-save leaves the previous final model intact
        model.save_pretrained(tmp, state_dict=state)
        tokenizer.save_pretrained(tmp)
    last = result.history[-1] if result.history else {}
    shown = ", ".join(f"{k} {v:.4g}" for k, v in last.items() if k not in ("epoch", "step"))
    console.print(f"step {result.step}: {shown}")
    console.print(f"model saved to {final}; metrics in {output / 'metrics.jsonl'}")


def _preference_command(kind: str):
    def command(
        model: Path = _MODEL,
        data: Path = _DATA,
        loss: str = typer.Option(None, "--loss", help="Loss name or weighted sum, e.g. 'dpo+0.2*sft'."),
        beta: float = typer.Option(0.1, "--beta", help="KL strength beta."),
        loss_option: list[str] = _LOSS_OPTION,
        epochs: int = typer.Option(1, "--epochs"),
        batch_size: int = typer.Option(8, "--batch-size", help="Examples per optimiser step (all processes)."),
        grad_accum: int = typer.Option(1, "--grad-accum", help="Micro-batches per step."),
        lr: float = typer.Option(1e-6, "--lr"),
        max_length: int = typer.Option(512, "--max-length", help="Tokens per sequence; prompts are cut first."),
        max_prompt_length: int = _MAX_PROMPT,
        max_completion_length: int = _MAX_COMPLETION,
        dropout: bool = _DROPOUT,
        max_steps: int = typer.Option(None, "--max-steps"),
        save_every: int = typer.Option(None, "--save-every", help="Checkpoint every N steps (and at the end)."),
        seed: int = typer.Option(0, "--seed"),
        bf16: bool = typer.Option(False, "--bf16", help="bf16 autocast (CPU)."),
        lora: int = typer.Option(0, "--lora", help="LoRA rank (0 = full fine-tuning); the reference is the base."),
        output: Path = _OUTPUT,
        resume: bool = typer.Option(False, "--resume", help="Continue from the newest checkpoint in --output."),
    ) -> None:
        with reported_errors():
            _check_model_dir(model)  # before torch is imported: a mistyped path fails at once
            from pairkit.train import check_loss, train_listwise, train_preference, train_unpaired

            trainer, default_loss = {
                "dpo": (train_preference, "dpo"),
                "kto": (train_unpaired, "kto"),
                "listwise": (train_listwise, "lipo"),
            }[kind]
            config = _config(
                output, epochs, batch_size, grad_accum, lr, max_length, max_steps, save_every, seed, bf16,
                max_prompt_length=max_prompt_length, max_completion_length=max_completion_length, dropout=dropout,
            )  # fmt: skip
            family = ("preference", "preference_tree") if kind == "listwise" else "preference"
            checked = check_loss(loss or default_loss, beta=beta, family=family,
                                 loss_options=_key_values(loss_option, "--loss-option"))  # once, before the model loads
            net, tokenizer = _load_model(model, lora=lora)
            result = trainer(
                net,
                tokenizer,
                data,
                loss=checked,
                config=config,
                reference="adapter" if lora else "precompute",
                resume=resume,
            )
            _finish(net, tokenizer, result, output)

    command.__doc__ = {
        "dpo": "Pairwise preference optimisation (DPO and the other pairwise losses) on chosen/rejected data.",
        "kto": "Unpaired preference optimisation (KTO, APO-unpaired, ...) on desirable/undesirable labels.",
        "listwise": "Listwise preference optimisation (LiPO, DPO-PL, ...) on K scored responses per prompt.",
    }[kind]
    return command


for _kind in ("dpo", "kto", "listwise"):
    train_app.command(_kind)(_preference_command(_kind))


@train_app.command("reward")
def reward(
    model: Path = _MODEL,
    data: Path = _DATA,
    loss: str = _REWARD_LOSS,
    loss_option: list[str] = _LOSS_OPTION,
    epochs: int = _EPOCHS,
    batch_size: int = _REWARD_BATCH,
    grad_accum: int = _GRAD_ACCUM,
    lr: float = _REWARD_LR,
    max_length: int = _REWARD_MAX_LENGTH,
    max_prompt_length: int = _MAX_PROMPT,
    max_completion_length: int = _MAX_COMPLETION,
    dropout: bool = _DROPOUT,
    max_steps: int = _MAX_STEPS,
    save_every: int = _SAVE_EVERY,
    seed: int = _SEED,
    bf16: bool = _BF16,
    held_out: float = _HELD_OUT,
    eval_data: Path = _EVAL_DATA,
    output: Path = _OUTPUT,
    resume: bool = _RESUME,
) -> None:
    """Reward model (sequence classifier with one output) on pairwise or K-wise preferences."""
    with reported_errors():
        _check_model_dir(model)  # before torch is imported: a mistyped path fails at once
        from pairkit.errors import InputError
        from pairkit.train import evaluate_reward_model, train_reward_model
        from pairkit.train.data import read_records

        if not 0 <= held_out < 1:
            raise InputError(f"--held-out must be in [0, 1), got {held_out}")
        options = _loss_options(loss_option, loss)
        config = _config(
            output, epochs, batch_size, grad_accum, lr, max_length, max_steps, save_every, seed, bf16,
            max_prompt_length=max_prompt_length, max_completion_length=max_completion_length, dropout=dropout,
        )  # fmt: skip
        net, tokenizer = _load_model(model, kind="reward")
        rows = read_records(data)
        keys = _prompt_keys(rows, str(data))  # validates every row, numbered as in the file
        if eval_data is not None:
            train_rows, test_rows = rows, read_records(eval_data)
            _prompt_keys(test_rows, str(eval_data))
        else:
            test_idx = _grouped_split(keys, held_out, seed)
            test_rows = [rows[i] for i in test_idx]
            held = set(test_idx.tolist())
            train_rows = [r for i, r in enumerate(rows) if i not in held]
        result = train_reward_model(net, train_rows, tokenizer=tokenizer, loss=loss, loss_options=options,
                                    config=config, resume=resume)  # fmt: skip
        _finish(net, tokenizer, result, output)
        if test_rows and "responses" not in test_rows[0]:
            res = evaluate_reward_model(net, test_rows, tokenizer=tokenizer, max_length=max_length)
            console.print(
                f"held-out accuracy {res['accuracy']:.3f} ({res['correct']}/{res['n']}, {res['ties']} ties), "
                f"95% CI [{res['ci_low']:.3f}, {res['ci_high']:.3f}], p vs chance {res['p_value']:.2g}"
            )


@train_app.command("pmp")
def pmp(
    model: Path = _MODEL,
    data: Path = typer.Option(
        ..., "--data", help="The PMP source: one answer, reply or edit per row (CSV, TSV, JSONL, JSON or Parquet)."
    ),
    source: str = typer.Option(..., "--source", help="stackexchange, reddit or wikipedia: how --data becomes pairs."),
    column: list[str] = typer.Option(
        None, "--column", help="OPTION=NAME: the file's column for one of the source's columns (e.g. answer=Body; "
        "accepted= when there is none); repeatable.",
    ),
    mode: str = typer.Option("binary", "--mode", help="binary (GOOD:/BAD: labels, the paper's PMP) or ranked."),
    pairs_per_question: int = typer.Option(
        None, "--pairs-per-question", help="At most N pairs per question/parent (a seeded sample; default all)."
    ),
    pattern: str = typer.Option(None, "--pattern", help="wikipedia with revert_comment=: the regex (default vandal)."),
    finetune_data: Path = typer.Option(
        None, "--finetune-data", help="Target preference pairs: fine-tune the PMP weights on them (then saved)."
    ),
    save_pairs: Path = typer.Option(None, "--save-pairs", help="Also write the PMP pairs to this JSONL file."),
    loss: str = _REWARD_LOSS,
    loss_option: list[str] = _LOSS_OPTION,
    epochs: int = _EPOCHS,
    batch_size: int = _REWARD_BATCH,
    grad_accum: int = _GRAD_ACCUM,
    lr: float = _REWARD_LR,
    max_length: int = _REWARD_MAX_LENGTH,
    max_steps: int = typer.Option(None, "--max-steps", help="Steps per stage."),
    save_every: int = _SAVE_EVERY,
    seed: int = _SEED,
    bf16: bool = _BF16,
    output: Path = _OUTPUT,
) -> None:
    """Preference-model pre-training (Askell et al. 2021): a reward model on pairs built from Stack Exchange answers,
    Reddit replies or Wikipedia edits, then optionally fine-tuned on the target preferences."""
    with reported_errors():
        _check_model_dir(model)  # before torch is imported: a mistyped path fails at once
        import json

        from pairkit._io import atomic_write_text
        from pairkit.train import pretrain_preference_model, read_pmp_pairs, train_reward_model
        from pairkit.train.data import read_records

        columns = {k: v or None for k, v in _key_values(column, "--column", numbers=False).items()}
        loss_options = _loss_options(loss_option, loss)
        options = {"mode": mode, "pairs_per_question": pairs_per_question, "pattern": pattern}
        if pairs_per_question is not None:
            options["seed"] = seed
        pairs = read_pmp_pairs(data, source, columns=columns, **options)
        finetune = read_records(finetune_data, what="--finetune-data") if finetune_data is not None else None
        console.print(f"{len(pairs)} PMP pairs from {data} ({source}, {mode})")
        if save_pairs is not None:
            atomic_write_text(save_pairs, "".join(json.dumps(r) + "\n" for r in pairs.to_dict(orient="records")))
        stage = _config(output / "pmp" if finetune is not None else output, epochs, batch_size, grad_accum, lr,
                        max_length, max_steps, save_every, seed, bf16)  # fmt: skip
        net, tokenizer = _load_model(model, kind="reward")
        rows = pairs.to_dict(orient="records")
        if finetune is None:
            result = train_reward_model(net, rows, tokenizer=tokenizer, loss=loss, loss_options=loss_options,
                                        config=stage)  # fmt: skip
        else:
            config = _config(output, epochs, batch_size, grad_accum, lr, max_length, max_steps, save_every, seed, bf16)
            first, result = pretrain_preference_model(net, tokenizer, rows, finetune, loss=loss,
                                                      loss_options=loss_options, pmp_config=stage,
                                                      config=config)  # fmt: skip
            console.print(f"PMP stage: {first.step} steps, metrics in {output / 'pmp' / 'metrics.jsonl'}")
        _finish(net, tokenizer, result, output)


@train_app.command("contrastive")
def contrastive(
    model: Path = _MODEL,
    data: Path = _DATA,
    loss: str = typer.Option("infonce", "--loss", help="Contrastive/metric loss name or weighted sum."),
    loss_option: list[str] = typer.Option(
        None, "--loss-option", help="KEY=VALUE option of the loss (e.g. temperature=0.05), or LOSS.KEY=VALUE "
        "for one term of a sum only (e.g. info_nce.temperature=0.05); repeatable."
    ),
    centers_per_class: int = typer.Option(10, "--centers-per-class", help="SoftTriple's centres per class."),
    regression_loss: str = typer.Option(
        "l1", "--regression-loss", help="l1 or mse: the regression head's loss (text/target rows with ConR)."
    ),
    epochs: int = _EPOCHS,
    batch_size: int = typer.Option(32, "--batch-size", help="Rows per step: the in-batch negatives."),
    lr: float = typer.Option(2e-5, "--lr"),
    max_length: int = typer.Option(128, "--max-length", help="Tokens per text (cut from the right)."),
    dropout: bool = _DROPOUT,
    max_steps: int = _MAX_STEPS,
    save_every: int = _SAVE_EVERY,
    seed: int = _SEED,
    bf16: bool = _BF16,
    output: Path = _OUTPUT,
    resume: bool = _RESUME,
) -> None:
    """Sentence encoder (mean pooling) on anchor/positive pairs, multi-view rows, text/label or text/target rows."""
    with reported_errors():
        _check_model_dir(model)  # before torch is imported: a mistyped path fails at once
        with requires("train", "pairkit train contrastive"):
            from transformers import AutoModel, AutoTokenizer
        from pairkit.train import train_contrastive
        from pairkit.train._loop import atomic_save, rank_and_world

        options = _key_values(loss_option, "--loss-option")
        config = _config(output, epochs, batch_size, 1, lr, max_length, max_steps, save_every, seed, bf16,
                         dropout=dropout)  # fmt: skip
        tokenizer = _from_pretrained(AutoTokenizer, model, "tokenizer")
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        net = _from_pretrained(AutoModel, model, "model")
        result = train_contrastive(net, data, tokenizer=tokenizer, loss=loss, loss_options=options, config=config,
                                   centers_per_class=centers_per_class, regression_loss=regression_loss,
                                   resume=resume)  # fmt: skip
        _finish(net, tokenizer, result, output)
        if result.proxies and rank_and_world()[0] == 0:
            atomic_save(result.proxies, output / "final" / "proxies.pt")
            console.print(f"learned proxies saved to {output / 'final' / 'proxies.pt'}")
        if result.regression_head is not None and rank_and_world()[0] == 0:
            atomic_save(result.regression_head.state_dict(), output / "final" / "regression_head.pt")
            console.print(f"regression head saved to {output / 'final' / 'regression_head.pt'}")


@train_app.command("semi-supervised")
def semi_supervised(
    model: Path = _MODEL,
    labeled: Path = typer.Option(..., "--labeled", help="Rows with 'text' and 'label' (JSON, JSONL or Parquet)."),
    unlabeled: Path = typer.Option(..., "--unlabeled", help="Rows with 'text' (no label needed)."),
    loss: str = typer.Option("fixmatch_loss", "--loss", help="Consistency loss name or weighted sum."),
    loss_option: list[str] = typer.Option(
        None, "--loss-option", help="KEY=VALUE option of the loss (e.g. threshold=0.9), or LOSS.KEY=VALUE "
        "for one term of a sum only (e.g. fixmatch_loss.temperature=0.5); repeatable."
    ),
    ratio: int = typer.Option(7, "--ratio", help="μ: unlabelled rows per labelled row in a step (FixMatch's 7)."),
    bank_size: int = typer.Option(1024, "--bank-size", help="SimMatchV2's memory bank entries (m)."),
    ema_decay: float = typer.Option(0.999, "--ema-decay", help="SimMatchV2's EMA teacher decay m (0: the model)."),
    projection: int = typer.Option(128, "--projection", help="SimMatchV2's projection width (0: no projection)."),
    aux_head: str = typer.Option("mlp", "--aux-head", help="ShrinkMatch's auxiliary head: 'mlp' or 'shared'."),
    epochs: int = _EPOCHS,
    batch_size: int = typer.Option(16, "--batch-size", help="Labelled rows per step."),
    lr: float = typer.Option(2e-5, "--lr"),
    max_length: int = typer.Option(128, "--max-length", help="Tokens per text (cut from the right)."),
    max_steps: int = _MAX_STEPS,
    save_every: int = _SAVE_EVERY,
    seed: int = _SEED,
    output: Path = _OUTPUT,
    resume: bool = _RESUME,
) -> None:
    """Text classifier from labelled and unlabelled rows: an encoder (mean pooling), a linear head, consistency losses
    between the text and its token-dropout/span-masked view."""
    with reported_errors():
        _check_model_dir(model)
        with requires("train", "pairkit train semi-supervised"):
            from transformers import AutoModel, AutoTokenizer
        from pairkit.train import train_semi_supervised
        from pairkit.train._loop import atomic_save, rank_and_world

        config = _config(output, epochs, batch_size, 1, lr, max_length, max_steps, save_every, seed, False)
        tokenizer = _from_pretrained(AutoTokenizer, model, "tokenizer")
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        net = _from_pretrained(AutoModel, model, "model")
        result = train_semi_supervised(net, labeled, unlabeled, tokenizer=tokenizer, loss=loss, ratio=ratio,
                                       loss_options=_key_values(loss_option, "--loss-option"), bank_size=bank_size,
                                       ema_decay=ema_decay, projection=projection or None, aux_head=aux_head,
                                       config=config, resume=resume)  # fmt: skip
        _finish(net, tokenizer, result, output)
        if rank_and_world()[0] == 0:  # data parallel: one process writes
            atomic_save(result.heads["classifier"].state_dict(), output / "final" / "classifier_head.pt")
            console.print(f"classifier head saved to {output / 'final' / 'classifier_head.pt'}")


def _prompt_keys(rows, source: str) -> list[str]:
    """One key per row naming its prompt (after validating every row of ``source``)."""
    import json

    from pairkit.train.data import to_listwise, to_pairs

    normalised = to_listwise(rows, source=source) if "responses" in rows[0] else to_pairs(rows, source=source)
    return [json.dumps(r["prompt"], sort_keys=True) for r in normalised]


def _grouped_split(keys: list[str], fraction: float, seed: int):
    """Row indices of a held-out set of about ``fraction`` of the rows, whole prompts at a time."""
    import numpy as np
    import pandas as pd

    codes, uniques = pd.factorize(pd.Series(keys))
    order = np.random.default_rng(seed).permutation(len(uniques))
    sizes = np.bincount(codes, minlength=len(uniques))[order]
    n_groups = int(np.searchsorted(np.cumsum(sizes), round(fraction * len(keys)), side="left")) + 1
    chosen = order[:n_groups] if fraction > 0 else order[:0]
    return np.flatnonzero(np.isin(codes, chosen))


@train_app.command("online")
def online(
    model: Path = _MODEL,
    prompts: Path = typer.Option(
        None, "--prompts", help="JSON/JSONL/Parquet rows with a 'prompt' (text or messages); spin/hypo use --data."
    ),
    judge: str = typer.Option(
        None,
        "--judge",
        help="Judge config JSON file (as for 'pairkit judge'), or MODULE:FUNCTION for a Python judge "
        "(not needed by self_rewarding, cream, scir, spin, hypo).",
    ),
    method: str = typer.Option(
        "online_dpo",
        "--method",
        help="online_dpo, iterative_dpo, self_rewarding, cream, scir, spin, sppo, superhf, hypo, p3o, rloo, grpo, "
        "step_dpo.",
    ),
    data: Path = typer.Option(
        None, "--data", help="spin: rows of prompt and reference answer ('chosen'); hypo: offline preference pairs."
    ),
    method_option: list[str] = typer.Option(
        None, "--method-option", help="KEY=VALUE option of the method (e.g. epsilon_high=0.28 for grpo); repeatable."
    ),
    loss: str = typer.Option("dpo", "--loss", help="Pairwise loss name or weighted sum."),
    loss_option: list[str] = _LOSS_OPTION,
    beta: float = typer.Option(0.1, "--beta"),
    samples: int = typer.Option(4, "--samples", help="Completions sampled per prompt."),
    rounds: int = typer.Option(10, "--rounds"),
    prompts_per_round: int = typer.Option(8, "--prompts-per-round"),
    max_new_tokens: int = typer.Option(64, "--max-new-tokens"),
    temperature: float = typer.Option(1.0, "--temperature"),
    top_p: float = typer.Option(1.0, "--top-p"),
    strategy: str = typer.Option("round_robin", "--strategy", help="Selection strategy over each prompt's samples."),
    position_policy: str = typer.Option("random", "--position-policy"),
    pairs: str = typer.Option(None, "--pairs", help="best_vs_worst or all (default: the method's)."),
    budget: int = typer.Option(None, "--budget", help="Judge calls for the whole run."),
    eval_prompts: Path = typer.Option(None, "--eval-prompts", help="Prompts for the win rate against the start."),
    eval_every: int = typer.Option(0, "--eval-every", help="Rounds between win-rate measurements (0: never)."),
    per_prompt_seeds: bool = typer.Option(
        False, "--per-prompt-seeds", help="Sample each prompt alone with its own seed: the same samples with any "
        "number of processes; under accelerate launch each process then samples its share of a round.",
    ),
    fsdp_sampling: str = typer.Option(
        "synced", "--fsdp-sampling", help="Under accelerate launch --use_fsdp: 'synced' samples from the sharded "
        "policy in step (less memory), 'gathered' from a full copy of it made each round (faster).",
    ),
    batch_size: int = typer.Option(8, "--batch-size", help="Examples per optimiser step (all processes)."),
    lr: float = typer.Option(1e-6, "--lr"),
    max_length: int = typer.Option(512, "--max-length"),
    seed: int = typer.Option(0, "--seed"),
    output: Path = _OUTPUT,
    resume: bool = typer.Option(False, "--resume", help="Continue after the last finished round in --output."),
) -> None:
    """Online / iterative preference optimisation: the policy samples, the judge compares, the policy learns."""
    with reported_errors():
        _check_model_dir(model)  # before torch is imported: a mistyped path fails at once
        from pairkit.errors import InputError
        from pairkit.train import OnlineConfig, TrainConfig, train_online

        config = TrainConfig(output_dir=str(output), batch_size=batch_size, lr=lr, max_length=max_length, seed=seed)
        online_config = OnlineConfig(
            rounds=rounds, prompts_per_round=prompts_per_round, k=samples, max_new_tokens=max_new_tokens,
            temperature=temperature, top_p=top_p, strategy=strategy, position_policy=position_policy, pairs=pairs,
            eval_every=eval_every, per_prompt_seeds=per_prompt_seeds, fsdp_sampling=fsdp_sampling,
        )  # fmt: skip
        from pairkit.train._online_methods import method_options as check_method_options
        from pairkit.train.online import METHODS, check_method_loss

        if method not in METHODS:  # checked before the model is loaded
            raise InputError(f"unknown method {method!r}; available: {', '.join(sorted(METHODS))}")
        options = _key_values(method_option)
        check_method_options(method, options)
        check_method_loss(method, loss)
        loss_options = _loss_options(loss_option, loss)
        comparator = _judge(judge) if judge is not None else None
        if prompts is None and data is None:
            raise InputError("give --prompts (or --data for spin and hypo)")
        prompt_rows = _prompts(prompts) if prompts is not None else None
        evals = _prompts(eval_prompts) if eval_prompts is not None else None
        net, tokenizer = _load_model(model)
        with _round_progress(rounds) as report:
            history = train_online(
                net, tokenizer, prompt_rows, comparator, method=method, loss=loss, beta=beta, config=config,
                online=online_config, eval_prompts=evals, budget=budget, resume=resume, callback=report,
                data=str(data) if data is not None else None, method_options=options, loss_options=loss_options,
            )  # fmt: skip
        _finish(net, tokenizer, _Rounds(history), output)


class _Rounds:
    def __init__(self, history):
        self.history, self.step = history, len(history)


def _round_progress(rounds: int):
    import contextlib

    with requires("train", "the progress bar"):
        from tqdm.auto import tqdm
    from pairkit.train._loop import init_distributed

    main = init_distributed()[0] == 0  # data parallel: one bar, the main process's

    @contextlib.contextmanager
    def bar():
        with tqdm(total=rounds, desc="rounds", dynamic_ncols=True, disable=not main) as t:

            def report(row):
                t.update(1)
                t.set_postfix({k: f"{row[k]:.3g}" for k in ("loss", "win_rate", "judge_calls") if k in row})

            yield report

    return bar()


def _prompts(path: Path) -> list:
    from pairkit.errors import InputError
    from pairkit.train.data import read_records

    rows = read_records(path)
    missing = next((i for i, r in enumerate(rows, start=1) if "prompt" not in r), None)
    if missing is not None:
        raise InputError(f"{path}, row {missing}: needs a 'prompt' (text or chat messages)")
    return [r["prompt"] for r in rows]


def _key_values(items: list[str] | None, flag: str = "--method-option", numbers: bool = True) -> dict:
    """``["a=0.1", "b=joint"]`` → ``{"a": 0.1, "b": "joint"}`` (numbers parsed unless ``numbers`` is False; bad
    items named)."""
    from pairkit.errors import InputError

    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"{flag} {item!r}: give KEY=VALUE")
        if not numbers:
            out[key] = value
            continue
        try:
            out[key] = float(value)
        except ValueError:
            out[key] = value
    return out


def _loss_options(items: list[str] | None, loss: str) -> dict:
    """``--loss-option`` items parsed and checked against the losses of ``loss`` before any model loads."""
    from pairkit.train._loop import check_options, parse_loss_spec

    return check_options([name for name, _ in parse_loss_spec(loss)], _key_values(items, "--loss-option"))


def _attack_options(items: list[str] | None) -> dict:
    """``--adversarial steps=10`` → ``{"adversarial_steps": 10}``, each value checked by its declared option."""
    from pairkit.errors import InputError
    from pairkit.train.pairwise_judge import ATTACK_OPTIONS

    declared = {o.name.removeprefix("adversarial_"): o for o in ATTACK_OPTIONS}
    out = {}
    for key, text in _key_values(items, "--adversarial", numbers=False).items():
        if key not in declared:
            raise InputError(f"--adversarial {key!r}: not an attack option; they are {', '.join(declared)}")
        out[declared[key].name] = declared[key].parse(text, where="--adversarial ")
    return out


def _judge(spec: str):
    """A comparator from a judge config file, or a ``module:function`` returning p(first is better)."""
    import importlib
    import json

    from pairkit.errors import InputError
    from pairkit.judges import CallableJudge, judge_from_config

    path = Path(spec)
    if path.suffix == ".json" or path.exists():
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"--judge {spec!r}: cannot read the judge config ({exc})") from None
        return judge_from_config(config, source=spec)
    module, _, name = spec.partition(":")
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        raise InputError(f"--judge {spec!r}: neither a judge config file nor an importable MODULE:FUNCTION") from None
    return CallableJudge(fn, judge_id=spec)


@train_app.command("pairwise-judge")
def pairwise_judge(
    model: Path = _MODEL,
    data: Path = _DATA,
    symmetry: float = typer.Option(1.0, "--symmetry", help="Weight of the order-symmetry term (0 = none)."),
    ties: str = typer.Option("keep", "--ties", help="keep (a third class when the data has ties) or drop."),
    verdict_head: bool = typer.Option(
        False, "--verdict-head", help="MODEL is a causal LM: its next-token logits of A / B / tie are the verdict."
    ),
    loss: str = typer.Option(
        "cross_entropy", "--loss", help="Classification loss on the verdict logits (e.g. adversarial_comp_sum)."
    ),
    loss_option: list[str] = typer.Option(
        None, "--loss-option", help="KEY=VALUE option of the loss (e.g. rho=2), or LOSS.KEY=VALUE "
        "for one term of a sum only (e.g. adversarial_comp_sum.rho=2); repeatable."
    ),
    adversarial: list[str] = typer.Option(
        None, "--adversarial", help="KEY=VALUE of the embedding attack for smooth_adversarial_comp_sum: epsilon, "
        "steps (PGD; 1 = FGSM), step_size, norm (inf or 2), random_start; repeatable.",
    ),
    epochs: int = _EPOCHS,
    batch_size: int = typer.Option(16, "--batch-size", help="Comparisons per step (each in both orders)."),
    grad_accum: int = _GRAD_ACCUM,
    lr: float = typer.Option(2e-5, "--lr"),
    max_length: int = typer.Option(512, "--max-length", help="Tokens per (context, A, B); the context is cut first."),
    max_steps: int = _MAX_STEPS,
    save_every: int = _SAVE_EVERY,
    seed: int = _SEED,
    bf16: bool = _BF16,
    held_out: float = _HELD_OUT,
    eval_data: Path = _EVAL_DATA,
    output: Path = _OUTPUT,
    resume: bool = _RESUME,
) -> None:
    """Pairwise judge (cross-encoder over context, A and B) from votes; loads as a 'huggingface' judge."""
    with reported_errors():
        _check_model_dir(model)  # before torch is imported: a mistyped path fails at once
        import json

        with requires("train", "pairkit train pairwise-judge"):
            from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

        from pairkit.errors import InputError
        from pairkit.train import (
            evaluate_pairwise_judge,
            read_pairwise_judgments,
            save_pairwise_judge,
            train_pairwise_judge,
        )

        if not 0 <= held_out < 1:
            raise InputError(f"--held-out must be in [0, 1), got {held_out}")
        attack = _attack_options(adversarial)
        config = _config(output, epochs, batch_size, grad_accum, lr, max_length, max_steps, save_every, seed, bf16)
        rows = read_pairwise_judgments(data, ties=ties)
        if eval_data is not None:
            train_rows, test_rows = rows, read_pairwise_judgments(eval_data, ties=ties)
        else:
            test_idx = set(_grouped_split([r["context"] for r in rows], held_out, seed).tolist())
            test_rows = [r for i, r in enumerate(rows) if i in test_idx]
            train_rows = [r for i, r in enumerate(rows) if i not in test_idx]
        if not train_rows:
            raise InputError(f"{data}: no comparisons left for training after the --held-out split")
        labels = 3 if any(r["label"] == 2 for r in rows + test_rows) else 2
        tokenizer = _from_pretrained(AutoTokenizer, model, "tokenizer")
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        verdicts = None
        if verdict_head:
            from pairkit.judges.pairwise_classifier import VERDICTS

            verdicts = VERDICTS[:labels]
            net = _from_pretrained(AutoModelForCausalLM, model, "model")
        else:
            net = _from_pretrained(
                AutoModelForSequenceClassification, model, "model", num_labels=labels, ignore_mismatched_sizes=True
            )
        result = train_pairwise_judge(
            net, tokenizer, train_rows, symmetry=symmetry, ties=ties, verdicts=verdicts, config=config, resume=resume,
            loss=loss, loss_options=_key_values(loss_option, "--loss-option"), **attack,
        )  # fmt: skip
        res = (
            evaluate_pairwise_judge(net, tokenizer, test_rows, max_length=max_length, verdicts=verdicts)
            if test_rows
            else None
        )
        final = save_pairwise_judge(net, tokenizer, output, max_length=max_length, metrics=res, verdicts=verdicts)
        last = result.history[-1] if result.history else {}
        shown = ", ".join(f"{k} {v:.4g}" for k, v in last.items() if k not in ("epoch", "step"))
        console.print(f"step {result.step}: {shown}")
        if res is not None:
            from pairkit._io import atomic_write_text

            atomic_write_text(output / "eval.json", json.dumps(res, indent=2) + "\n")
            console.print(
                f"held-out accuracy {res['accuracy']:.3f} ({res['correct']}/{res['n']}, {res['ties']} ties), "
                f"95% CI [{res['ci_low']:.3f}, {res['ci_high']:.3f}], chance {res['chance']:.2f}, "
                f"p {res['p_value']:.2g}; position consistency {res['position_consistency']:.3f}"
            )
        console.print(f"judge saved to {final}; use it with --judge {output / 'judge.json'}")


@train_app.command("distill-ranker")
def distill_ranker(
    model: Path = _MODEL,
    data: Path = typer.Option(..., "--data", help="Lists to rank: {query, candidates: [...]} per row."),
    teacher: str = typer.Option(..., "--teacher", help="The pairwise teacher: a judge config file or MODULE:FUNCTION."),
    yes_no: bool = typer.Option(
        False, "--yes-no", help="MODEL is a causal LM scored by its Yes/No next-token logits (else 1-label classifier)."
    ),
    words: str = typer.Option("Yes,No", "--words", help="With --yes-no: the two words, comma-separated."),
    sigma: float = typer.Option(1.0, "--sigma", help="RankNet's sigma."),
    epochs: int = _EPOCHS,
    batch_size: int = typer.Option(8, "--batch-size", help="Lists per step."),
    grad_accum: int = _GRAD_ACCUM,
    lr: float = typer.Option(2e-5, "--lr"),
    max_length: int = typer.Option(512, "--max-length", help="Tokens per (query, candidate)."),
    max_steps: int = _MAX_STEPS,
    save_every: int = _SAVE_EVERY,
    seed: int = _SEED,
    bf16: bool = _BF16,
    held_out: float = _HELD_OUT,
    output: Path = _OUTPUT,
    resume: bool = _RESUME,
) -> None:
    """Instruction distillation: a pointwise ranker trained on a pairwise teacher's ordering of each list."""
    with reported_errors():
        _check_model_dir(model)
        import json

        with requires("train", "pairkit train distill-ranker"):
            from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

        from pairkit._io import atomic_write_text
        from pairkit.errors import InputError
        from pairkit.train import (
            evaluate_pointwise_ranker,
            read_ranking_lists,
            save_pointwise_ranker,
            teacher_scores,
            train_instruction_distillation,
        )

        if not 0 <= held_out < 1:
            raise InputError(f"--held-out must be in [0, 1), got {held_out}")
        config = _config(output, epochs, batch_size, grad_accum, lr, max_length, max_steps, save_every, seed, bf16)
        rows = read_ranking_lists(data)
        tokenizer = _from_pretrained(AutoTokenizer, model, "tokenizer")
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        pair = tuple(w.strip() for w in words.split(","))
        if yes_no:  # before the teacher runs: the words must be two distinct tokens of this tokenizer
            from pairkit.judges.pairwise_classifier import verdict_token_ids

            if len(pair) != 2:
                raise InputError(f"--words must be two comma-separated words, got {words!r}")
            verdict_token_ids(tokenizer, pair)
        judge = _judge(teacher)
        for r, t in zip(rows, teacher_scores(judge, rows)):
            r["teacher_scores"] = t.tolist()
        test_idx = set(_grouped_split([r["query"] for r in rows], held_out, seed).tolist())
        train_rows = [r for i, r in enumerate(rows) if i not in test_idx]
        test_rows = [r for i, r in enumerate(rows) if i in test_idx]
        if not train_rows:
            raise InputError(f"{data}: no lists left for training after the --held-out split")
        words = pair if yes_no else None
        if yes_no:
            net = _from_pretrained(AutoModelForCausalLM, model, "model")
        else:
            net = _from_pretrained(
                AutoModelForSequenceClassification, model, "model", num_labels=1, ignore_mismatched_sizes=True
            )
        result = train_instruction_distillation(
            net, tokenizer, train_rows, yes_no=words, sigma=sigma, config=config, resume=resume
        )
        res = (
            evaluate_pointwise_ranker(net, tokenizer, test_rows, yes_no=words, max_length=max_length)
            if test_rows
            else None
        )
        final = save_pointwise_ranker(net, tokenizer, output, yes_no=words, metrics=res)
        last = result.history[-1] if result.history else {}
        console.print(f"step {result.step}: " + ", ".join(f"{k} {v:.4g}" for k, v in last.items() if k != "step"))
        if res is not None:
            atomic_write_text(output / "eval.json", json.dumps(res, indent=2) + "\n")
            console.print(
                f"held-out agreement with the teacher {res['agreement']:.3f} on {res['lists']} lists "
                f"({res['student_calls']} student calls instead of {res['teacher_calls']} teacher calls)"
            )
        console.print(f"pointwise ranker saved to {final}")


@train_app.command("distill")
def distill(
    student: Path = typer.Option(..., "--student", help="Local transformers model directory of the student (trained)."),
    teacher: Path = typer.Option(
        None, "--teacher", help="Local model directory of the frozen teacher (not needed by PS-KD, USKD, MCMI)."
    ),
    data: Path = typer.Option(
        ..., "--data", help="Rows: text/label (sequence classifiers) or prompt/completion, optional spans (causal LMs)."
    ),
    loss: str = typer.Option("hinton_kd_loss", "--loss", help="Distill/divergence loss name or weighted sum."),
    loss_option: list[str] = typer.Option(
        None, "--loss-option", help="KEY=VALUE option of the loss (e.g. temperature=2), or LOSS.KEY=VALUE "
        "for one term of a sum only (e.g. hinton_kd_loss.temperature=4); repeatable."
    ),
    student_layer: str = typer.Option(None, "--student-layer", help="Submodule whose output is the feature."),
    teacher_layer: str = typer.Option(None, "--teacher-layer", help="The teacher's feature submodule."),
    novel_classes: int = typer.Option(None, "--novel-classes", help="Outputs of the novel-class head (Cr-KD)."),
    epochs: int = _EPOCHS,
    batch_size: int = typer.Option(8, "--batch-size"),
    grad_accum: int = _GRAD_ACCUM,
    lr: float = typer.Option(2e-5, "--lr"),
    max_length: int = typer.Option(512, "--max-length", help="Tokens per row."),
    dropout: bool = _DROPOUT,
    max_steps: int = _MAX_STEPS,
    save_every: int = _SAVE_EVERY,
    seed: int = _SEED,
    bf16: bool = _BF16,
    output: Path = _OUTPUT,
    resume: bool = _RESUME,
) -> None:
    """Knowledge distillation: a student trained on a frozen teacher's outputs with any distill/divergence loss."""
    with reported_errors():
        for path in (student, teacher) if teacher is not None else (student,):
            _check_model_dir(path)
        with requires("train", "pairkit train distill"):
            from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer
        from pairkit.train import train_distillation
        from pairkit.train._loop import atomic_save, rank_and_world
        from pairkit.train.data import read_records

        rows = read_records(data)
        kind = AutoModelForCausalLM if rows and "completion" in rows[0] else AutoModelForSequenceClassification
        config = _config(output, epochs, batch_size, grad_accum, lr, max_length, max_steps, save_every, seed, bf16,
                         dropout=dropout)  # fmt: skip
        tokenizer = _from_pretrained(AutoTokenizer, student, "tokenizer")
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        net = _from_pretrained(kind, student, "model")
        frozen = _from_pretrained(kind, teacher, "teacher model") if teacher is not None else None
        result = train_distillation(net, frozen, rows, tokenizer=tokenizer, loss=loss,
                                    loss_options=_key_values(loss_option, "--loss-option"), config=config,
                                    student_layer=student_layer, teacher_layer=teacher_layer,
                                    novel_classes=novel_classes, resume=resume)  # fmt: skip
        _finish(net, tokenizer, result, output)
        extra = {k: v.state_dict() for k, v in (result.heads or {}).items()} | (result.proxies or {})
        if extra and rank_and_world()[0] == 0:
            atomic_save(extra, output / "final" / "distill_heads.pt")
            console.print(f"trained heads/prototypes saved to {output / 'final' / 'distill_heads.pt'}")
