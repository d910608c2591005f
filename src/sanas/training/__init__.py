"""Training: datasets and splits in memory, device-side augmentation, the DARTS recipe, final training.

>>> from sanas import get_space
>>> from sanas.training import Recipe, evaluate_candidate, prepare_data
>>> space = get_space("DartsSpace", layers=3, filter_num=[4, 8, 16], init_channels=4, auxiliary=False)
>>> data = prepare_data("synthetic", train_size=40, test_size=10)
>>> evaluate_candidate(space.init_tokens(), space, data, Recipe(retain_epoch=2, batch_size=16, device="cpu"),
...                    progress="none").status
'ok'
"""

from sanas.training.augment import Augment, normalize
from sanas.training.candidate import CandidateResult, evaluate_candidate
from sanas.training.data import (
    DATASETS,
    Dataset,
    DatasetError,
    TrainingData,
    load_dataset,
    prepare_data,
    split_data,
)
from sanas.training.final import FinalResult, export_onnx, load_model, train_final
from sanas.training.recipe import Recipe
from sanas.training.trainer import EpochMetrics, Trainer, TrainingFailed

__all__ = [
    "DATASETS",
    "Augment",
    "CandidateResult",
    "Dataset",
    "DatasetError",
    "EpochMetrics",
    "FinalResult",
    "Recipe",
    "Trainer",
    "TrainingData",
    "TrainingFailed",
    "evaluate_candidate",
    "export_onnx",
    "load_dataset",
    "load_model",
    "normalize",
    "prepare_data",
    "split_data",
    "train_final",
]
