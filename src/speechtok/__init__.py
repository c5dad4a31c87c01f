"""speechtok: speech -> SSL features, semantic units and codec tokens, and back."""

__version__ = "0.1.0"

from . import formats  # noqa: E402,F401  - registers the readers of other tools' files
from .audio import AudioError, load_audio  # noqa: E402
from .encoders import Featurizer, MFCCEncoder, SSLEncoder  # noqa: E402
from .errors import SpeechtokError, UnsafeFileError  # noqa: E402
from .quantizers import KMeans  # noqa: E402
from .tokenizer import CodecTokenizer, Tokenizer, load  # noqa: E402
from .units import Units  # noqa: E402

UnsafePickleError = UnsafeFileError  # the name before speechtok.errors

__all__ = [
    "AudioError", "CodecTokenizer", "Featurizer", "KMeans", "MFCCEncoder", "SSLEncoder", "SpeechtokError",
    "Tokenizer", "Units", "UnsafeFileError", "UnsafePickleError", "load", "load_audio", "__version__",
]
