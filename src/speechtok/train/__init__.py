"""Training the models tokens come from: HuBERT's masked prediction (`hubert`), CTC fine-tuning
(`ctc`), their data (`data`), the resumable loop (`trainer`) and its checkpoints (`checkpoints`)."""

from .data import LabelledSplit, read_split
from .hubert import ARCHITECTURES, HubertOutput, HubertPretraining, Objective, hubert_config, train_hubert
from .trainer import TrainConfig, TrainingStopped, TrainResult

__all__ = ["ARCHITECTURES", "HubertOutput", "HubertPretraining", "LabelledSplit", "Objective", "TrainConfig",
           "TrainResult", "TrainingStopped", "hubert_config", "read_split", "train_hubert"]
