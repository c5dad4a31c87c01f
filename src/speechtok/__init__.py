"""speechtok: speech -> SSL features, semantic units and codec tokens, and back."""

__version__ = "0.1.0"

from .audio import AudioError, load_audio  # noqa: E402
from .codecs import CodecTokenizer  # noqa: E402
from .encoders import Featurizer, MFCCEncoder, SSLEncoder  # noqa: E402
from .quantizers import KMeans, UnsafePickleError  # noqa: E402
from .tokenizer import Tokenizer, load  # noqa: E402
from .units import Units  # noqa: E402

__all__ = [
    "AudioError", "CodecTokenizer", "Featurizer", "KMeans", "MFCCEncoder", "SSLEncoder", "Tokenizer", "Units",
    "UnsafePickleError", "load", "load_audio", "__version__",
]
