"""Peak memory (RSS) of a one-epoch LeNet-5 training run, each side in its own process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "mnist-sample"

CNNLAB = """
import numpy as np
from cnnlab import models, nn, optim, init
from cnnlab.data import DataLoader, load_dataset
init.manual_seed(0)
ds = load_dataset("mnist", "train", {data!r})
model = models.lenet5(); model[0].needs_input_grad = False
loss_fn = nn.CrossEntropyLoss(); opt = optim.Adam(model.parameters(), lr=1e-3)
for x, y in DataLoader(ds, batch_size=64, seed=0).epoch_batches(0):
    model.zero_grad(); loss_fn(model(x), y); model.backward(loss_fn.backward()); opt.step()
"""

TORCH = """
import torch
torch.set_num_threads(2)
from cnnlab.data import DataLoader, load_dataset
import sys; sys.path.insert(0, {here!r})
from lenet_bench import torch_lenet5
torch.manual_seed(0)
ds = load_dataset("mnist", "train", {data!r})
model = torch_lenet5(); opt = torch.optim.Adam(model.parameters(), lr=1e-3)
for x, y in DataLoader(ds, batch_size=64, seed=0).epoch_batches(0):
    opt.zero_grad()
    torch.nn.functional.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(y)).backward()
    opt.step()
"""


# VmHWM of this process's own memory map: ru_maxrss would include the parent's peak,
# which a child inherits at fork on Linux
REPORT = """
for line in open("/proc/self/status"):
    if line.startswith("VmHWM:"):
        print("PEAK_RSS_KB", line.split()[1])
"""


def peak_rss_mb(code: str) -> float:
    """Run ``code`` in a fresh interpreter; its peak RSS in MB."""
    out = subprocess.run(
        [sys.executable, "-c", code + REPORT], check=True, capture_output=True, text=True
    ).stdout
    kb = [int(line.split()[1]) for line in out.splitlines() if line.startswith("PEAK_RSS_KB")]
    return sum(kb) / 1024


def run(quick: bool = False) -> list[str]:
    here = str(Path(__file__).resolve().parent)
    theirs = peak_rss_mb(TORCH.format(data=str(DATA), here=here))
    ours = peak_rss_mb(CNNLAB.format(data=str(DATA)))
    ratio = ours / theirs
    mark = "✓" if ratio <= 1.5 else "✗"
    rows = [
        "| one-epoch LeNet-5 run (6,000 images, batch 64), one process | cnnlab MB "
        "| torch MB | ratio |",
        "|---|---|---|---|",
        f"| peak RSS | {ours:.0f} | {theirs:.0f} | {ratio:.2f} {mark} (≤ 1.5) |",
    ]
    print(rows[-1], flush=True)
    return rows
