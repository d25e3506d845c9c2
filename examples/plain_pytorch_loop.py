"""Prune Once for All on a hand-written PyTorch loop: GMP masks, LR rewinding, exact-sparsity audit.

Run: python examples/plain_pytorch_loop.py  (a tiny BERT on random ids; seconds on a CPU)
"""

import torch
from transformers import BertConfig, BertForMaskedLM

from pruneofa import GMPSchedule, Sparsifier, lr_at
from pruneofa.config.schema import LRConfig, SparsityConfig

STEPS, ACCUM = 40, 2
torch.manual_seed(0)
model = BertForMaskedLM(BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                   intermediate_size=64, max_position_embeddings=32))
data = torch.randint(5, 100, (STEPS * ACCUM, 8, 16))  # [micro-batches, batch, length]

# Masks are persistent bool buffers beside each encoder Linear weight; gradient hooks zero masked grads.
sparsifier = Sparsifier(model, SparsityConfig(pattern="unstructured", allocation="uniform"))
schedule = GMPSchedule(initial_sparsity=0.0, final_sparsity=0.8, begin_step=0, end_step=30, frequency=10)
lr_cfg = LRConfig(peak=1e-3, warmup_steps=4, decay="linear", rewind=True)  # LR back to peak at each update
optimizer = torch.optim.AdamW(model.parameters(), lr=lr_cfg.peak, weight_decay=0.01)
sparsifier.bind_optimizer(optimizer)  # re-mask after every real step; clear moments of pruned entries

model.train()
for step in range(STEPS):  # `step` = completed optimizer steps, as in pruneofa's own loop
    sparsifier.on_step(step, schedule)  # at a GMP update step: masks recomputed at the scheduled sparsity
    lr = lr_at(step, lr_cfg, STEPS, schedule.update_steps())
    for group in optimizer.param_groups:
        group["lr"] = lr
    for micro in range(ACCUM):
        ids = data[step * ACCUM + micro]
        labels = torch.where(torch.rand(ids.shape) < 0.15, ids, -100)
        inputs = torch.where(labels != -100, 4, ids)  # id 4 plays [MASK]
        loss = model(input_ids=inputs, labels=labels).loss / ACCUM
        loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()  # the sparsifier's post-step hook puts masked weights back to exactly zero
    optimizer.zero_grad(set_to_none=True)
    if step % 10 == 0:
        print(f"step {step:3d}  loss {loss.item() * ACCUM:.3f}  lr {lr:.2e}  sparsity {sparsifier.sparsity:.3f}")

report = sparsifier.check(where="end of training")  # raises SparsityDriftError with a table on any drift
print(report.table())
