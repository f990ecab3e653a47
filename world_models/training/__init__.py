"""The one trainer every world model uses, split by concern.

- :mod:`~world_models.training.trainer`: :func:`train`, :func:`train_grid` and the training loop;
- :mod:`~world_models.training.config`: :class:`TrainConfig`, errors, config files, a resumed run's configs;
- :mod:`~world_models.training.data`: batches, held-out windows, start contexts;
- :mod:`~world_models.training.runlog`: ``run.json``, ``train_log.csv``, TensorBoard, rollout pictures;
- :mod:`~world_models.training.weights`: ``init_from`` (grown inputs) and random states;
- :mod:`~world_models.training.distributed`: DDP under ``torchrun``, the device, the adversary's step.
"""

from world_models.training.config import RESUMABLE, TrainConfig, TrainError, TrainingDiverged, config_file
from world_models.training.trainer import train, train_grid

__all__ = ["RESUMABLE", "TrainConfig", "TrainError", "TrainingDiverged", "config_file", "train", "train_grid"]
