"""Training the models tokens come from: HuBERT's masked prediction (`hubert`)."""

from .hubert import HubertOutput, HubertPretraining, Objective

__all__ = ["HubertOutput", "HubertPretraining", "Objective"]
