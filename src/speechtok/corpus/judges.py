"""Models that judge resynthesised speech against its original (`eval resynth --speaker-model /
--asr-model`), and the greedy CTC decoding `eval asr` and `train ctc` share.

    speaker_similarity  cosine similarity of the two waves' speaker embeddings from any
                        transformers x-vector / speaker-verification model
                        (`AutoModelForAudioXVector`: WavLM / wav2vec 2.0 / UniSpeech-SAT x-vectors)
    dwer                WER of the resynthesis' transcript against the original's (both from the
                        same ASR model: transformers' speech-recognition pipeline, so CTC models
                        and Whisper alike; jiwer), so it needs no reference text
    mos                 the resynthesis' predicted mean opinion score from a MOS predictor that is
                        a transformers audio-classification model with one regression output
                        (`num_labels=1`); `mos_original` is the original's, for reference

A judge that cannot be loaded (offline and not cached, not a model) does not stop the evaluation:
`load_judges` returns why, and the other metrics are still computed.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from .. import hub
from ..runtime.device import resolve_device

log = logging.getLogger(__name__)
RATE = 16000


class SpeakerSimilarity:
    name = "speaker_similarity"

    def __init__(self, model_name: str, device: str = "cpu"):
        from transformers import AutoFeatureExtractor, AutoModelForAudioXVector

        self.device = resolve_device(device)
        self.features = AutoFeatureExtractor.from_pretrained(model_name, local_files_only=_local_only(model_name))
        self.model = AutoModelForAudioXVector.from_pretrained(model_name, local_files_only=_local_only(model_name))
        self.model.to(self.device).eval()

    @torch.no_grad()
    def embedding(self, wave: np.ndarray) -> torch.Tensor:
        inputs = self.features(wave, sampling_rate=RATE, return_tensors="pt")
        return self.model(inputs.input_values.to(self.device)).embeddings[0].float().cpu()

    def __call__(self, original: np.ndarray, resynthesised: np.ndarray) -> float:
        a, b = self.embedding(original), self.embedding(resynthesised)
        return float(torch.nn.functional.cosine_similarity(a, b, dim=0))


class TranscriptAgreement:
    name = "dwer"

    def __init__(self, model_name: str, device: str = "cpu"):
        from transformers import pipeline

        if _local_only(model_name):  # offline: the cached snapshot, or fail now (the pipeline would retry)
            from huggingface_hub import snapshot_download

            model_name = snapshot_download(model_name, local_files_only=True)
        self.recognise = pipeline("automatic-speech-recognition", model=model_name, device=resolve_device(device))
        # Whisper transcribes more than 30 s only in long-form mode, which needs timestamps
        self.options = {"return_timestamps": True} if self.recognise.type == "seq2seq_whisper" else {}

    def transcript(self, wave: np.ndarray) -> str:
        heard = self.recognise({"raw": np.asarray(wave, np.float32), "sampling_rate": RATE}, **self.options)
        return " ".join(heard["text"].split())

    def __call__(self, original: np.ndarray, resynthesised: np.ndarray) -> float:
        import jiwer

        reference = self.transcript(original)
        if not reference:  # nothing recognised in the original: WER is undefined
            return float("nan")
        return float(jiwer.wer(reference, self.transcript(resynthesised)))


class MeanOpinionScore:
    name = "mos"

    def __init__(self, model_name: str, device: str = "cpu"):
        from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

        self.device = resolve_device(device)
        local = _local_only(model_name)
        self.features = AutoFeatureExtractor.from_pretrained(model_name, local_files_only=local)
        self.model = AutoModelForAudioClassification.from_pretrained(model_name, local_files_only=local)
        if self.model.config.num_labels != 1:
            raise ValueError(f"a MOS predictor has one regression output; this model has {self.model.config.num_labels} "
                             "labels (a classifier)")
        self.model.to(self.device).eval()

    @torch.no_grad()
    def score(self, wave: np.ndarray) -> float:
        inputs = self.features(wave, sampling_rate=RATE, return_tensors="pt")
        return float(self.model(inputs.input_values.to(self.device)).logits[0, 0])

    def __call__(self, original: np.ndarray, resynthesised: np.ndarray) -> dict[str, float]:
        return {"mos": self.score(resynthesised), "mos_original": self.score(original)}


def load_judges(speaker_model: str | None, asr_model: str | None, device: str = "cpu",
                mos_model: str | None = None) -> tuple[list, dict[str, str]]:
    """(the judges that loaded, {metric: why it is skipped} for those that did not). A judge is
    called with (original, resynthesised) and gives its metric, or a dict of metrics."""
    hub.loading_bars()
    judges, skipped = [], {}
    for kind, name in ((SpeakerSimilarity, speaker_model), (TranscriptAgreement, asr_model), (MeanOpinionScore, mos_model)):
        if name is None:
            continue
        try:
            judges.append(kind(hub.local_or_hub(name), device))
        except Exception as error:  # noqa: BLE001 - a missing judge must not cost the other metrics
            # OSError: transformers' and huggingface_hub's "not a model / not cached" errors
            reason = str(hub.model_load_error(name, error)) if isinstance(error, OSError) else f"{type(error).__name__}: {error}"
            skipped[kind.name] = f"{name}: {reason}"
    return judges, skipped


def _local_only(name: str) -> bool:
    """Offline, read the cache only: a missing model fails at once instead of after retries."""
    from pathlib import Path

    return not Path(name).exists() and hub.offline()


def ctc_logits(model, processor, wave: np.ndarray, device: torch.device) -> torch.Tensor:
    """[frames, vocabulary] logits of one utterance, alone (no padding, so the same as any batch
    would give it alone)."""
    inputs = processor(wave, sampling_rate=processor.feature_extractor.sampling_rate, return_tensors="pt")
    return model(inputs.input_values.to(device)).logits[0]


def greedy_text(processor, logits: torch.Tensor) -> str:
    """Argmax per frame, repeats merged, blanks dropped, `|` as spaces (the processor's decode)."""
    return " ".join(processor.batch_decode(logits.argmax(-1)[None])[0].split())
