"""Acoustic tokens: DAC, EnCodec and Mimi codecs (transformers' models) as tokenizers."""

from .models import CodecError, CodecModel, load_codec
from .tokenizer import CodecTokenizer

__all__ = ["CodecError", "CodecModel", "CodecTokenizer", "load_codec"]
