"""Tiny random Hugging Face models and a character tokenizer, built from configs with no download.

For examples, tests and a first try of the local judges and trainers on a machine without model weights: every
function here builds a model of a few thousand parameters with fixed seeds, so its outputs are reproducible (and
meaningless — the weights are random). With a real model, pass ``AutoModel….from_pretrained(…)`` and its tokenizer
wherever these are used.

>>> from pairkit.testing import tiny_causal_lm
>>> model, tokenizer = tiny_causal_lm()
>>> tokenizer.decode(tokenizer.encode("A>B"))
'A>B'
"""

from __future__ import annotations

from pairkit._optional import requires

__all__ = ["char_tokenizer", "tiny_causal_lm", "tiny_pair_classifier", "tiny_seq2seq"]

_CHARS = "".join(chr(c) for c in range(32, 127)) + "\n"


def char_tokenizer(words: tuple[str, ...] = ()):
    """A fast tokenizer with one token per printable ASCII character (plus ``words`` as whole tokens).

    Special tokens: ``<pad>`` (0), ``</s>`` (end and separator), ``<unk>``, ``<cls>``. Pre-tokenisation splits text
    into characters, except that each of ``words`` that appears between spaces is one token (``true``/``false`` for
    a seq2seq judge's targets).

    >>> from pairkit.testing import char_tokenizer
    >>> tok = char_tokenizer(words=("true",))
    >>> tok.convert_ids_to_tokens(tok.encode("is true"))
    ['i', 's', ' ', 'true']
    """
    with requires("train", "the tiny test models"):
        import transformers
        from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    special = ["<pad>", "</s>", "<unk>", "<cls>"]
    vocab = {tok: k for k, tok in enumerate([*special, *words, *_CHARS])}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    pattern = "|".join(f"(?<![^ ]){w}(?![^ \\n])" for w in sorted(words, key=len, reverse=True))
    splits = [pre_tokenizers.Split(Regex(pattern), behavior="isolated")] if words else []
    # characters one by one, but never inside a whole word: split the words off first, then the rest
    core.pre_tokenizer = pre_tokenizers.Sequence(
        [*splits, pre_tokenizers.Split(Regex(f"(?:{pattern})|[\\s\\S]" if words else "[\\s\\S]"), behavior="isolated")]
    )
    core.decoder = decoders.Fuse()  # decode to the text itself, not tokens joined by spaces
    return transformers.PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="</s>",
                                                unk_token="<unk>", sep_token="</s>", cls_token="<cls>")


def tiny_causal_lm(seed: int = 0, *, tokenizer=None):
    """A one-layer GPT-2 (16-dimensional) with random weights, in eval mode, and its tokenizer.

    >>> from pairkit.testing import tiny_causal_lm
    >>> model, tokenizer = tiny_causal_lm(seed=1)
    >>> model.config.n_layer, model.training
    (1, False)
    """
    with requires("train", "the tiny test models"):
        import torch
        import transformers

    tokenizer = tokenizer if tokenizer is not None else char_tokenizer()
    torch.manual_seed(seed)
    config = transformers.GPT2Config(vocab_size=len(tokenizer), n_positions=2048, n_embd=16, n_layer=1, n_head=2,
                                     pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                                     bos_token_id=tokenizer.eos_token_id)
    return transformers.GPT2LMHeadModel(config).eval(), tokenizer


def tiny_seq2seq(seed: int = 0, *, words: tuple[str, ...] = ("true", "false")):
    """A one-layer T5 with random weights, in eval mode, and a tokenizer with ``words`` as whole tokens.

    >>> from pairkit.testing import tiny_seq2seq
    >>> model, tokenizer = tiny_seq2seq()
    >>> model.config.is_encoder_decoder
    True
    """
    with requires("train", "the tiny test models"):
        import torch
        import transformers

    tokenizer = char_tokenizer(words)
    torch.manual_seed(seed)
    config = transformers.T5Config(vocab_size=len(tokenizer), d_model=16, d_ff=32, d_kv=8, num_layers=1,
                                   num_heads=2, decoder_start_token_id=tokenizer.pad_token_id,
                                   pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    return transformers.T5ForConditionalGeneration(config).eval(), tokenizer


def tiny_pair_classifier(num_labels: int = 3, seed: int = 0):
    """A one-layer BERT sequence classifier (labels: first better, second better[, tie]) and its tokenizer.

    >>> from pairkit.testing import tiny_pair_classifier
    >>> model, tokenizer = tiny_pair_classifier(num_labels=2)
    >>> model.config.num_labels
    2
    """
    with requires("train", "the tiny test models"):
        import torch
        import transformers

    tokenizer = char_tokenizer()
    torch.manual_seed(seed)
    config = transformers.BertConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=32, max_position_embeddings=1024,
                                     num_labels=num_labels, pad_token_id=tokenizer.pad_token_id)
    return transformers.BertForSequenceClassification(config).eval(), tokenizer
