"""Acoustic codecs: DAC, EnCodec and Mimi (transformers' models) behind one runtime interface.
The tokenizer built on them is `speechtok.tokenizer.CodecTokenizer`."""

from .models import CodecError, CodecModel, load_codec

__all__ = ["CodecError", "CodecModel", "load_codec"]
