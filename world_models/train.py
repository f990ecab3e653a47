"""``world_models.train``, as before the trainer was split by concern (:mod:`world_models.training`): the names
that commands, tests and users import from here."""

from world_models.training import RESUMABLE, TrainConfig, TrainError, TrainingDiverged, config_file, train, train_grid

__all__ = ["RESUMABLE", "TrainConfig", "TrainError", "TrainingDiverged", "config_file", "train", "train_grid"]
