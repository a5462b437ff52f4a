"""Contrastive training with a memory-bounded loss: NT-Xent over a large batch in chunks.

A small encoder learns to map two noisy views of the same point together and different points apart. The loss is
computed in chunks of 256 rows with a recomputing backward pass, so the batch × batch similarity matrix never
exists in memory at once — and the value and gradients equal the unchunked loss.
"""

import torch

import pairkit.losses as L

torch.manual_seed(0)
points = torch.randn(2048, 32)
encoder = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 16))
optimiser = torch.optim.Adam(encoder.parameters(), lr=1e-2)
labels = torch.arange(len(points)).repeat(2)  # the two views of point i share label i

for step in range(30):
    views = torch.cat([points + 0.1 * torch.randn_like(points), points + 0.1 * torch.randn_like(points)])
    loss = L.ntxent(encoder(views), labels, temperature=0.1, chunk_size=256)
    optimiser.zero_grad()
    loss.backward()
    optimiser.step()
    if step % 10 == 0:
        print(f"step {step:2d}  loss {loss.item():.3f}")

with torch.no_grad():
    full = L.ntxent(encoder(views), labels, temperature=0.1)
    chunked = L.ntxent(encoder(views), labels, temperature=0.1, chunk_size=256)
print(f"final loss {full.item():.3f}; chunked equals unchunked: {torch.allclose(full, chunked, atol=1e-5)}")
