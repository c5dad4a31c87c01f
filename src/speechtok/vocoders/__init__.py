"""Back to audio from semantic units: unit HiFi-GAN vocoders (SpeechBrain- and fairseq-compatible)."""

from .hifigan import HifiGANConfig, UnitHifiGAN
from .vocoder import UnitVocoder, VocoderError

__all__ = ["HifiGANConfig", "UnitHifiGAN", "UnitVocoder", "VocoderError"]
