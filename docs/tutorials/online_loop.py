"""An online preference loop: the policy samples, a judge compares, ratings build the pairs, DPO learns.

Each round the policy writes 4 answers to each of 8 prompts; a pairkit comparator judges every pair of answers
(sides drawn at random, so a position bias cannot favour a sample); a Bradley–Terry fit of those judgments rates
the samples of each prompt; the best and worst become a DPO pair, and the policy takes a step. The judge here is
a script with a preference anyone can check — more letters "a" win — so the win rate against the initial policy
shows whether the loop learned what the judge wants. Swap in any judge (``OpenAIJudge``, ``HFJudge``, a
``pairkit train pairwise-judge`` model) and the loop is the same; ``pairkit train online`` runs it from the
command line, resumable after a kill without drawing a sample or paying a judge call twice.
"""

import json
import sys
from pathlib import Path

import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from pairkit.judges import CallableJudge
from pairkit.train import OnlineConfig, TrainConfig, train_online

data = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data") / "preference_pairs/dpo_en_demo.json"
rows = json.loads(data.read_text())
prompts = [row["conversations"][-1]["value"][:60] for row in rows[:16]]  # real prompts, cut short
eval_prompts = [row["conversations"][-1]["value"][:60] for row in rows[16:32]]

# A tiny causal LM built from a config and a tokenizer trained here: nothing is downloaded.
bpe = Tokenizer(models.BPE(unk_token="<unk>"))
bpe.pre_tokenizer, bpe.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
bpe.train_from_iterator(
    [row["chosen"]["value"][:400] for row in rows[:100]] + ["a a a alpha banana"] * 10,
    trainers.BpeTrainer(vocab_size=400, special_tokens=["<pad>", "<unk>", "<s>", "</s>"],
                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()),
)
tokenizer = transformers.PreTrainedTokenizerFast(
    tokenizer_object=bpe, pad_token="<pad>", unk_token="<unk>", bos_token="<s>", eos_token="</s>"
)
transformers.set_seed(0)
policy = transformers.LlamaForCausalLM(transformers.LlamaConfig(
    vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=2, max_position_embeddings=256, pad_token_id=tokenizer.pad_token_id,
    bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=False,
))


def more_as_win(context: str, first: str, second: str) -> float:
    """P(first answer better): 1 if it has more letters 'a', 0 if fewer, 1/2 if as many."""
    a, b = first.count("a"), second.count("a")
    return 1.0 if a > b else 0.0 if a < b else 0.5


history = train_online(
    policy, tokenizer, prompts, CallableJudge(more_as_win, judge_id="more-a"),
    method="online_dpo", loss="dpo", beta=0.1,
    config=TrainConfig(lr=2e-2, batch_size=8, seed=0),
    online=OnlineConfig(rounds=10, prompts_per_round=8, k=4, max_new_tokens=8, eval_every=5),
    eval_prompts=eval_prompts,
)
for h in history:
    win = f"  win rate vs the initial policy {h['win_rate']:.2f}" if "win_rate" in h else ""
    print(f"round {h['round']:2d}: loss {h['loss']:.3f}, {h['judge_calls']} judge calls{win}")
assert history[-1]["win_rate"] > 0.5
