"""Started by tests/test_distributed.py under ``mpiexec -n 2`` (not a test module itself).

    mpi_train.py train TRAIN_JSON MODEL_JSON   # a data-parallel run; every rank saves its parameters
    mpi_train.py lonely-error                  # rank 1 fails alone while rank 0 waits in a collective
    mpi_train.py devices TRAIN_JSON MODEL_JSON N_DEVICES host|loopback
        # a run on the strict stand-in device with N stand-in devices per machine; "loopback": it offers
        # an all-reduce on the device (MPI on the stand-in's own buffer). Every rank saves its
        # parameters and {device, path, log} as JSON
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
elif sys.argv[1] == "devices":
    from minihyena.backends import get_backend, register_backend
    from minihyena.testing import STRICT_TARGET

    register_backend("strict", STRICT_TARGET)
    strict = get_backend("strict")
    strict.n_devices = int(sys.argv[4])
    if sys.argv[5] == "loopback":
        def loopback(comm, flat):  # summed in place in the device array's own buffer
            comm.comm.Allreduce(comm.MPI.IN_PLACE, flat._a, op=comm.MPI.SUM)

        strict.loopback = loopback
    cfg = TrainConfig(**json.loads(sys.argv[2]))
    lines = []
    trainer = Trainer(cfg, HyenaConfig(**json.loads(sys.argv[3])), log=lines.append)
    trainer.run(progress=False)
    np.savez(f"{cfg.out}/rank{comm.rank}.npz", **trainer.model.state_dict())
    with open(f"{cfg.out}/rank{comm.rank}.json", "w") as f:
        json.dump({"device": strict.device_index, "path": comm.gradient_path, "log": lines}, f)
elif sys.argv[1] == "lonely-error":
    if comm.rank == 1:
        sys.exit(stop_on_error(comm, ValueError("only rank 1 failed"), timeout=0.5))
    comm.mean(1.0)  # never completes: rank 1 does not join
