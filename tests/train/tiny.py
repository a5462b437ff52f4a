"""A transformers-free causal LM and character tokenizer: cheap to import in spawned worker processes."""

import torch


class CharTokenizer:
    chat_template = None
    pad_token_id, eos_token_id = 0, 1

    def __call__(self, text, add_special_tokens=True):
        return {"input_ids": [2 + (ord(ch) % 60) for ch in text]}


class _Decoder(torch.nn.Module):
    def __init__(self, vocab, hidden):
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, hidden)
        self.mix = torch.nn.Linear(2 * hidden, hidden)

    def forward(self, input_ids, attention_mask):
        e = self.embed(input_ids)
        prev = torch.nn.functional.pad(e, (0, 0, 1, 0))[:, :-1]  # causal: position t sees tokens t and t-1
        out = torch.tanh(self.mix(torch.cat([e, prev], -1)))
        return type("Out", (), {"last_hidden_state": out})()


class TinyCausalLM(torch.nn.Module):
    def __init__(self, vocab=64, hidden=16, seed=0, dtype=torch.float64):
        super().__init__()
        torch.manual_seed(seed)
        self.decoder = _Decoder(vocab, hidden)
        self.head = torch.nn.Linear(hidden, vocab)
        self.to(dtype)

    def get_decoder(self):
        return self.decoder

    def get_output_embeddings(self):
        return self.head
