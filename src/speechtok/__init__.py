"""speechtok: speech -> SSL features, semantic units and codec tokens, and back."""

from . import formats  # noqa: F401  - registers the readers of other tools' files (see readers.py)
from .audio import AudioError, load_audio
from .encoders import Featurizer, MFCCEncoder, SSLEncoder
from .errors import SpeechtokError, UnsafeFileError
from .quantizers import KMeans
from .tokenizer import CodecTokenizer, Tokenizer, load
from .units import Units
from .version import __version__

UnsafePickleError = UnsafeFileError  # the name before speechtok.errors

__all__ = [
    "AudioError", "CodecTokenizer", "Featurizer", "KMeans", "MFCCEncoder", "SSLEncoder", "SpeechtokError",
    "Tokenizer", "Units", "UnsafeFileError", "UnsafePickleError", "load", "load_audio", "__version__",
]
