"""Tokenizers: the contract (`TokenizerBase`, `AudioFrontEnd`), the semantic tokenizer (encoder +
k-means), the codec tokenizer, presets, `load()` and importing other tools' k-means."""

from .base import CONFIG_NAME, AudioFrontEnd, TokenizerBase
from .codec import CodecTokenizer
from .registry import load
from .semantic import Tokenizer

__all__ = ["CONFIG_NAME", "AudioFrontEnd", "CodecTokenizer", "Tokenizer", "TokenizerBase", "load"]
