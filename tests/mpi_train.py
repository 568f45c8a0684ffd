"""Started by tests/test_distributed.py under ``mpiexec -n 2`` (not a test module itself).

    mpi_train.py train TRAIN_JSON MODEL_JSON   # a data-parallel run; every rank saves its parameters
    mpi_train.py lonely-error                  # rank 1 fails alone while rank 0 waits in a collective
"""
import json
import sys

import numpy as np

from minihyena.distributed import stop_on_error, world
from minihyena.nn import HyenaConfig
from minihyena.train import TrainConfig, Trainer

comm = world()
if comm.size != 2:
    sys.exit(f"expected 2 MPI processes, got {comm.size}")
if sys.argv[1] == "train":
    cfg = TrainConfig(**json.loads(sys.argv[2]))
    trainer = Trainer(cfg, HyenaConfig(**json.loads(sys.argv[3])), log=lambda *a: None)
    trainer.run(progress=False)
    np.savez(f"{cfg.out}/rank{comm.rank}.npz", **trainer.model.state_dict())
elif sys.argv[1] == "lonely-error":
    if comm.rank == 1:
        sys.exit(stop_on_error(comm, ValueError("only rank 1 failed"), timeout=0.5))
    comm.mean(1.0)  # never completes: rank 1 does not join
