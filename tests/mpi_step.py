"""One training step's forward and backward of a model through ``ShardedModel``, run
under ``mpiexec`` by ``test_distributed.py``; rank 0 saves the loss, the gradients and
the state dict to ``OUT`` (an ``.npz``).

Usage: ``mpiexec -n N python mpi_step.py MODEL BATCH OUT``
"""

from __future__ import annotations

import sys

import numpy as np

from cnnlab import init, models, nn
from cnnlab.distributed import ShardedModel, world

name, batch, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
init.manual_seed(0)
model = models.build(name, dtype="float64")
rng = np.random.default_rng(1)
x = rng.standard_normal((batch, 1, 28, 28))
y = rng.integers(0, 10, batch)
runner = ShardedModel(model, world())
loss_fn = nn.CrossEntropyLoss()
model.zero_grad()
loss = loss_fn(runner(x), y)
runner.backward(loss_fn.backward())
if world().rank == 0:
    arrays = {"loss": np.array(loss)}
    arrays.update({"grad." + k: p.grad for k, p in model.named_parameters()})
    arrays.update({"state." + k: v for k, v in model.state_dict().items()})
    np.savez(out, **arrays)
