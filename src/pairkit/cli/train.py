"""``pairkit train {dpo,kto,listwise,reward}``: train a local transformers model on preference data.

torch and transformers are imported inside the commands, so ``pairkit --help`` works without them.
"""

from __future__ import annotations

from pathlib import Path

import typer

from pairkit.cli._app import app
from pairkit.cli._common import console, reported_errors

train_app = typer.Typer(help="Train a model on preferences (needs the 'train' extra: torch, transformers).")
app.add_typer(train_app, name="train")

_MODEL = typer.Option(..., "--model", help="Local transformers model directory (config, weights, tokenizer).")
_DATA = typer.Option(..., "--data", help="JSON, JSONL(.gz) or Parquet file of training rows.")
_OUTPUT = typer.Option(Path("pairkit-train"), "--output", help="Directory for checkpoints, metrics and the model.")


def _config(output, epochs, batch_size, grad_accum, lr, max_length, max_steps, save_every, seed, bf16):
    from pairkit.train import TrainConfig

    return TrainConfig(
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


def _load_causal_lm(model_path: Path, lora: int):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from pairkit.errors import InputError

    if not model_path.is_dir():
        raise InputError(f"--model {str(model_path)!r} is not a local model directory")
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(model_path)
    if lora:
        import peft

        model = peft.get_peft_model(model, peft.LoraConfig(r=lora, lora_alpha=2 * lora, target_modules="all-linear"))
    return model, tokenizer


def _finish(model, tokenizer, result, output: Path) -> None:
    final = output / "final"
    model.save_pretrained(final)
    tokenizer.save_pretrained(final)
    last = result.history[-1] if result.history else {}
    shown = ", ".join(f"{k} {v:.4g}" for k, v in last.items() if k not in ("epoch",))
    console.print(f"step {result.step}: {shown}")
    console.print(f"model saved to {final}; metrics in {output / 'metrics.jsonl'}")


def _preference_command(kind: str):
    def command(
        model: Path = _MODEL,
        data: Path = _DATA,
        loss: str = typer.Option(None, "--loss", help="Loss name or weighted sum, e.g. 'dpo+0.2*sft'."),
        beta: float = typer.Option(0.1, "--beta", help="KL strength beta."),
        epochs: int = typer.Option(1, "--epochs"),
        batch_size: int = typer.Option(8, "--batch-size", help="Examples per optimiser step (all processes)."),
        grad_accum: int = typer.Option(1, "--grad-accum", help="Micro-batches per step."),
        lr: float = typer.Option(1e-6, "--lr"),
        max_length: int = typer.Option(512, "--max-length"),
        max_steps: int = typer.Option(None, "--max-steps"),
        save_every: int = typer.Option(None, "--save-every", help="Checkpoint every N steps (and at the end)."),
        seed: int = typer.Option(0, "--seed"),
        bf16: bool = typer.Option(False, "--bf16", help="bf16 autocast (CPU)."),
        lora: int = typer.Option(0, "--lora", help="LoRA rank (0 = full fine-tuning); the reference is the base."),
        output: Path = _OUTPUT,
        resume: bool = typer.Option(False, "--resume", help="Continue from the newest checkpoint in --output."),
    ) -> None:
        with reported_errors():
            from pairkit.train import train_listwise, train_preference, train_unpaired

            trainer, default_loss = {
                "dpo": (train_preference, "dpo"),
                "kto": (train_unpaired, "kto"),
                "listwise": (train_listwise, "lipo"),
            }[kind]
            net, tokenizer = _load_causal_lm(model, lora)
            config = _config(output, epochs, batch_size, grad_accum, lr, max_length, max_steps, save_every, seed, bf16)
            result = trainer(
                net,
                tokenizer,
                data,
                loss=loss or default_loss,
                beta=beta,
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
    loss: str = typer.Option("reward_bradley_terry", "--loss", help="Reward loss name or weighted sum."),
    epochs: int = typer.Option(1, "--epochs"),
    batch_size: int = typer.Option(8, "--batch-size"),
    grad_accum: int = typer.Option(1, "--grad-accum"),
    lr: float = typer.Option(1e-5, "--lr"),
    max_length: int = typer.Option(512, "--max-length"),
    max_steps: int = typer.Option(None, "--max-steps"),
    save_every: int = typer.Option(None, "--save-every"),
    seed: int = typer.Option(0, "--seed"),
    bf16: bool = typer.Option(False, "--bf16"),
    held_out: float = typer.Option(0.2, "--held-out", help="Fraction of pairs kept out to report accuracy."),
    output: Path = _OUTPUT,
    resume: bool = typer.Option(False, "--resume"),
) -> None:
    """Reward model (sequence classifier with one output) on pairwise or K-wise preferences."""
    with reported_errors():
        import numpy as np
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from pairkit.errors import InputError
        from pairkit.train import evaluate_reward_model, train_reward_model
        from pairkit.train.data import read_records

        if not 0 <= held_out < 1:
            raise InputError(f"--held-out must be in [0, 1), got {held_out}")
        tokenizer = AutoTokenizer.from_pretrained(model)
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        net = AutoModelForSequenceClassification.from_pretrained(model, num_labels=1)
        rows = read_records(data)
        perm = np.random.default_rng(seed).permutation(len(rows))
        k = int(round(held_out * len(rows)))
        test_rows, train_rows = [rows[i] for i in perm[:k]], [rows[i] for i in perm[k:]]
        config = _config(output, epochs, batch_size, grad_accum, lr, max_length, max_steps, save_every, seed, bf16)
        result = train_reward_model(net, train_rows, tokenizer=tokenizer, loss=loss, config=config, resume=resume)
        _finish(net, tokenizer, result, output)
        if test_rows and "responses" not in test_rows[0]:
            res = evaluate_reward_model(net, test_rows, tokenizer=tokenizer, max_length=max_length)
            console.print(
                f"held-out accuracy {res['accuracy']:.3f} ({res['correct']}/{res['n']}), "
                f"95% CI [{res['ci_low']:.3f}, {res['ci_high']:.3f}], p vs chance {res['p_value']:.2g}"
            )
