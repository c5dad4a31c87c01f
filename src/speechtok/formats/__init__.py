"""Other tools' files: read safely, mapped onto speechtok's models.

- `torch_files`: the one safe torch loader (weights_only + an allow-list) and weight-norm folding;
- `sklearn_pickle`: scikit-learn / joblib k-means pickles through an allow-list unpickler;
- `ssl_checkpoints`: fairseq wav2vec2 / HuBERT, Microsoft WavLM and s3prl checkpoints;
- `dac`: Descript `.pth` and SpeechBrain DAC lobe checkpoints;
- `speechbrain_vocoder`, `fairseq_vocoder`: unit HiFi-GAN repos and CodeHiFiGAN checkpoints;
- `speechbrain_kmeans`: the k-means files of a SpeechBrain DiscreteSSL repository.

This package imports the model packages, never the reverse: importing it registers each reader
with `speechtok.readers`, where the models look them up.
"""

from ..errors import FormatError, UnsafeFileError
from . import dac, fairseq_vocoder, sklearn_pickle, speechbrain_kmeans, speechbrain_vocoder, ssl_checkpoints
from .ssl_checkpoints import convert

__all__ = ["FormatError", "UnsafeFileError", "convert", "dac", "fairseq_vocoder", "sklearn_pickle",
           "speechbrain_kmeans", "speechbrain_vocoder", "ssl_checkpoints"]
