"""Training engine: one loop for pre-training and fine-tuning (`train` in `hiclr/engine/loop.py`,
the task contract `Task` in `hiclr/engine/task.py`).

The linear probe (`hiclr.eval.linear.fit_linear`) keeps a short SGD loop of its own, on purpose:
it trains one linear layer on cached features held on the device, where an epoch is a few index
gathers and matmuls; checkpoints, resume, DDP, autocast and the per-step bookkeeping of this
engine would cost more than the probe itself and add nothing to a run of seconds.
"""

from hiclr.engine.checkpoint import atomic_save, capture_rng, load_checkpoint, restore_rng
from hiclr.engine.compiling import COMPILE_MODES, captures_cuda_graphs, compile_module, compile_options
from hiclr.engine.device import place_data, resolve_device, resolve_precision
from hiclr.engine.distributed import DistInfo, is_main_process, setup_distributed
from hiclr.engine.finite import NonFiniteLoss
from hiclr.engine.loop import train
from hiclr.engine.schedule import build_optimizer, build_scheduler, lr_factor_fn
from hiclr.engine.seeding import derive_seed, seed_everything
from hiclr.engine.signals import Interrupted
from hiclr.engine.task import Batch, Task, TrainData, TrainResult

__all__ = [
    "COMPILE_MODES",
    "captures_cuda_graphs",
    "compile_module",
    "compile_options",
    "Batch",
    "DistInfo",
    "Interrupted",
    "NonFiniteLoss",
    "Task",
    "TrainData",
    "TrainResult",
    "atomic_save",
    "build_optimizer",
    "build_scheduler",
    "capture_rng",
    "derive_seed",
    "is_main_process",
    "load_checkpoint",
    "lr_factor_fn",
    "place_data",
    "resolve_device",
    "resolve_precision",
    "restore_rng",
    "seed_everything",
    "setup_distributed",
    "train",
]
