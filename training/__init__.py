"""Training: class-balanced patches streamed from the store, losses, metrics, the loop,
checkpoints and evaluation."""

from ._checkpoints import has_checkpoint, saved_split
from ._data import SceneRef, labelled_scenes, read_histogram
from ._evaluate import confusion_png, evaluate_checkpoint, split_confusion
from ._losses import LOSSES, make_loss
from ._metrics import confusion, scores
from ._plan import Plan, make_plan
from ._ranks import Ranks, ranks_from_env
from ._sampler import MODES, Candidates, chunk_weights, class_weights, draw
from ._split import SPLITS, split_shards
from ._stream import HostBatch, PatchStream, PlannedPatch, augment, to_device
from ._trainer import KINDS, TrainConfig, prepare, train

__all__ = [
    "KINDS", "LOSSES", "MODES", "SPLITS", "Candidates", "HostBatch", "PatchStream", "Plan",
    "Ranks", "PlannedPatch", "SceneRef", "TrainConfig", "augment", "chunk_weights",
    "class_weights", "confusion", "confusion_png", "draw", "evaluate_checkpoint",
    "has_checkpoint", "labelled_scenes", "make_loss", "make_plan", "prepare", "ranks_from_env",
    "read_histogram", "saved_split", "scores", "split_confusion", "split_shards", "to_device",
    "train",
]
