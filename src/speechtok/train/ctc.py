"""CTC fine-tuning, as fairseq's `hubert_ctc` / `wav2vec_ctc` do it, on transformers' `*ForCTC`.

    audio (zero-padded batch) -> the pre-trained encoder, feature encoder frozen
    (`feature_grad_mult` 0), SpecAugment (time spans mask_prob 0.75 x 10 frames, channel spans
    0.5 x 64 channels of 768: fairseq's HuBERT base_10h) -> dropout -> linear to the vocabulary
    -> CTC loss (blank = `<pad>`, infinities zeroed), summed per utterance and averaged over the
    batch's utterances (fairseq's `sentence_avg`; across accumulated batches and processes the
    batch averages are averaged, where fairseq divides by the whole update's sentence count)

For the first `freeze_steps` updates only the output layer learns (fairseq's
`freeze_finetune_updates`): the encoder runs without gradients.

The vocabulary is the training text's characters: fairseq's dictionary order (`<s>`, `<pad>`,
`</s>`, `<unk>`, then symbols by descending count) with `<pad>` first, as transformers' wav2vec2
vocabularies are, because `<pad>` is the CTC blank and transformers' CTC models take the blank to
be the pad token. The fine-tuned model is written as a transformers directory with its processor
(a `Wav2Vec2CTCTokenizer` over that vocabulary, `|` the word delimiter, and the encoder's feature
extractor): `speechtok eval asr RUN_DIR/final` and `AutoModelForCTC` / `AutoProcessor` read it.

Batches are zero-padded and the transformer is told which frames are padding (fairseq's
`padding_mask`), also for group-norm encoders whose processors take no attention mask: there
the convolutional features of padded batches still see the zeros (as in fairseq), while
inference (`eval asr`, one utterance at a time) has no padding at all. Utterances shorter than
`min_sample_seconds` or longer than `max_sample_seconds` are left out of training and of the
valid scores.

Where this departs from fairseq, knowingly: the learning rate warms up linearly then decays
linearly to 0 (transformers' schedule; fairseq's tri-stage decays exponentially to 5%), the
channel-mask span is 64 of 768 channels scaled to the model's width (`hidden_size / 12`), so a
small model is not masked whole, and the loss average noted above.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import hub
from ..corpus.judges import ctc_logits, greedy_text
from ..encoders.ssl import load_ssl_model
from ..errors import InputError
from .asr import score
from .data import SAMPLE_RATE, TranscribedSplit, collate_padded, words_of
from .hubert import hubert_config
from .seeding import numpy_drawn_from
from .trainer import TrainConfig, TrainResult, train

SPECIALS = ("<pad>", "<s>", "</s>", "<unk>")
WORD_DELIMITER = "|"

# fairseq's HuBERT base_10h fine-tuning settings, as transformers config fields
FINETUNING = {"apply_spec_augment": True, "mask_time_prob": 0.75, "mask_time_length": 10, "mask_time_min_masks": 2,
              "mask_feature_prob": 0.5, "layerdrop": 0.1, "hidden_dropout": 0.0, "activation_dropout": 0.1,
              "attention_dropout": 0.0, "feat_proj_dropout": 0.0, "final_dropout": 0.0, "ctc_loss_reduction": "sum",
              "ctc_zero_infinity": True}


def character_vocabulary(letters: list[list[str]]) -> dict[str, int]:
    """symbol -> id: the specials, `|`, then every symbol of the text by descending count (ties in
    character order)."""
    counts = Counter(symbol for line in letters for symbol in line)
    counts.pop(WORD_DELIMITER, None)
    for special in SPECIALS:
        if special in counts:
            raise InputError(f"the transcripts contain {special!r}, which is the vocabulary's own symbol")
    ordered = sorted(counts, key=lambda s: (-counts[s], s))
    return {symbol: i for i, symbol in enumerate([*SPECIALS, WORD_DELIMITER, *ordered])}


def ctc_processor(vocabulary: dict[str, int], extractor: dict):
    """A `Wav2Vec2Processor`: CTC tokenizer over `vocabulary` and the encoder's feature extractor."""
    from transformers import Wav2Vec2CTCTokenizer, Wav2Vec2FeatureExtractor, Wav2Vec2Processor

    with tempfile.TemporaryDirectory() as tmp:  # the tokenizer reads its vocabulary from a file
        path = Path(tmp) / "vocab.json"
        path.write_text(json.dumps(vocabulary, ensure_ascii=False))
        tokenizer = Wav2Vec2CTCTokenizer(str(path), pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                         unk_token="<unk>", word_delimiter_token=WORD_DELIMITER, do_lower_case=False)
    features = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=extractor.get("sampling_rate", SAMPLE_RATE),
                                        padding_value=0.0, do_normalize=extractor.get("do_normalize", True),
                                        return_attention_mask=extractor.get("return_attention_mask", False))
    return Wav2Vec2Processor(feature_extractor=features, tokenizer=tokenizer)


class CtcModel(nn.Module):
    """A transformers `*ForCTC` whose encoder can run without gradients (the frozen steps), called
    as one module so DDP sees every step."""

    def __init__(self, ctc: nn.Module):
        super().__init__()
        self.ctc = ctc

    def forward(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None, frozen: bool) -> torch.Tensor:
        encoder = self.ctc.base_model
        with torch.no_grad() if frozen else nullcontext():
            hidden = encoder(input_values, attention_mask=attention_mask).last_hidden_state
        return self.ctc.lm_head(self.ctc.dropout(hidden))


def ctc_model(vocabulary: dict[str, int], init: str | None = None, config: str | None = None,
              settings: dict | None = None) -> tuple[CtcModel, dict, str | None]:
    """(the model to fine-tune, its feature-extractor settings, the encoder's source): `*ForCTC`
    around the encoder of `init` (hub id, transformers directory, original checkpoint, a `train
    hubert` run), or a random HuBERT of architecture `config`; `settings` over `FINETUNING`."""
    from transformers import AutoConfig, AutoModelForCTC

    if (init is None) == (config is None):
        raise InputError("give the model to fine-tune (--init) or an architecture to train from scratch (--config)")
    if init is not None:
        encoder, extractor, source = load_ssl_model(init)
        fields = encoder.config.to_dict()
    else:
        encoder, extractor, source = None, {"do_normalize": False, "return_attention_mask": False}, None
        fields = hubert_config(config).to_dict()
    hidden = fields["hidden_size"]
    fields = {**fields, **FINETUNING, "mask_feature_length": max(1, hidden // 12), **(settings or {}),
              "vocab_size": len(vocabulary), "pad_token_id": vocabulary["<pad>"], "bos_token_id": vocabulary["<s>"],
              "eos_token_id": vocabulary["</s>"]}
    model_type = fields.pop("model_type")
    for key in ("architectures", "transformers_version", "_name_or_path"):
        fields.pop(key, None)
    ctc = AutoModelForCTC.from_config(AutoConfig.for_model(model_type, **fields))
    if encoder is not None:
        missing, unexpected = ctc.base_model.load_state_dict(encoder.state_dict(), strict=False)
        if unexpected or set(missing) - {"masked_spec_embed"}:
            raise InputError(f"{init}: its weights do not fit its own config (missing {missing[:3]}, unexpected "
                             f"{unexpected[:3]})")
    ctc.freeze_feature_encoder()  # fairseq's feature_grad_mult 0
    return CtcModel(ctc), extractor, source


class CtcTask:
    """CTC fine-tuning for the training loop (`trainer.train`): whole utterances zero-padded to
    their batch's longest; scored by valid loss and greedy CER / WER (each valid utterance alone,
    as `eval asr` transcribes); handed off as a `*ForCTC` directory with its processor."""

    train_fields = ("frozen",)
    valid_fields = ("valid_loss", "valid_cer", "valid_wer")

    def __init__(self, model: CtcModel, vocabulary: dict[str, int], extractor: dict, freeze_steps: int = 0):
        self.module, self.vocabulary, self.freeze_steps = model, vocabulary, freeze_steps
        self.processor = ctc_processor(vocabulary, extractor)
        features = self.processor.feature_extractor
        # the processor's own normalisation (eps 1e-7): the one the model meets when it is used
        self.normalize = (lambda wave: features(wave, sampling_rate=SAMPLE_RATE, return_tensors="np").input_values[0]
                          ) if features.do_normalize else None
        self.blank = vocabulary["<pad>"]
        # frozen steps, layerdrop and a mask embedding no time mask uses leave parameters without gradients
        c = model.ctc.config
        self.unused_parameters = freeze_steps > 0 or c.layerdrop > 0 or (
            c.mask_time_prob == 0 and getattr(model.ctc.base_model, "masked_spec_embed", None) is not None)

    def describe(self) -> dict:
        return {"model": self.module.ctc.config.to_dict(), "vocabulary": self.vocabulary, "freeze_steps": self.freeze_steps,
                "feature_extractor": self.processor.feature_extractor.to_dict()}

    def encode(self, letters: list[str]) -> list[int]:
        unknown = self.vocabulary["<unk>"]
        return [self.vocabulary.get(symbol, unknown) for symbol in letters]

    def plan(self, split: TranscribedSplit, config: TrainConfig, rng: np.random.Generator) -> list[list[int]]:
        return config.plan(split, rng, crop=False)

    def usable(self, split: TranscribedSplit, config: TrainConfig) -> list[int]:
        """The utterances trained and scored on: within the configured lengths."""
        low, high = config.min_sample_seconds * SAMPLE_RATE, config.max_sample_seconds * SAMPLE_RATE
        return [i for i, n in enumerate(split.sizes) if low <= n <= high]

    def collate(self, split: TranscribedSplit, indices: list[int], config: TrainConfig, rng: np.random.Generator) -> dict:
        return collate_padded(split, indices, self.encode, self.normalize)

    def ctc_loss(self, logits: torch.Tensor, batch: dict, device: torch.device) -> torch.Tensor:
        """CTC loss of [B, T, V] logits, summed per utterance, averaged over the batch's utterances."""
        frames = self.module.ctc._get_feat_extract_output_lengths(batch["sample_lengths"].to(device))
        log_probs = nn.functional.log_softmax(logits.float(), dim=-1).transpose(0, 1)
        labels, label_lengths = batch["labels"].to(device), batch["label_lengths"].to(device)
        loss = nn.functional.ctc_loss(log_probs, labels[labels >= 0], frames.clamp(max=logits.shape[1]), label_lengths,
                                      blank=self.blank, reduction="sum", zero_infinity=True)
        return loss / len(labels)

    def loss(self, wrapped: nn.Module, batch: dict, device: torch.device, rng: np.random.Generator,
             step: int) -> tuple[torch.Tensor, dict[str, float]]:
        frozen = step < self.freeze_steps
        values, lengths = batch["input_values"].to(device), batch["sample_lengths"].to(device)
        attention = (torch.arange(values.shape[1], device=device)[None, :] < lengths[:, None]).long()
        with numpy_drawn_from(rng):  # transformers' SpecAugment draws from numpy's global RNG
            logits = wrapped(values, attention, frozen)
        return self.ctc_loss(logits, batch, device), {"frozen": int(frozen)}

    def step_metrics(self, counts: dict[str, float]) -> dict[str, float]:
        return {"frozen": int(counts["frozen"] > 0)}

    def evaluate(self, split: TranscribedSplit, config: TrainConfig, device: torch.device) -> dict[str, float]:
        model = self.module
        was_training = model.training
        model.eval()
        loss, references, hypotheses, ids = 0.0, [], [], []
        usable = self.usable(split, config)
        if not usable:
            return {"valid_loss": float("nan"), "valid_cer": float("nan"), "valid_wer": float("nan")}
        with torch.no_grad():
            for i in usable:
                batch = collate_padded(split, [i], self.encode, None)
                logits = ctc_logits(model.ctc, self.processor, batch["input_values"][0].numpy(), device)
                loss += float(self.ctc_loss(logits[None], batch, device))
                references.append(words_of(split.letters[i]))
                hypotheses.append(greedy_text(self.processor, logits))
                ids.append(split.paths[i])
        model.train(was_training)
        result = score(references, hypotheses, ids)
        return {"valid_loss": loss / len(usable), "valid_cer": result.cer, "valid_wer": result.wer}

    def write_final(self, directory: Path) -> Path:
        hub.loading_bars()
        self.module.ctc.save_pretrained(directory)
        self.processor.save_pretrained(directory)
        return directory


def train_ctc(model: CtcModel, vocabulary: dict[str, int], extractor: dict, train_split: TranscribedSplit,
              valid: TranscribedSplit | None, config: TrainConfig, run_dir: str | os.PathLike, freeze_steps: int = 0,
              **kwargs) -> TrainResult:
    """Fine-tune `model` with CTC on `train_split`'s transcripts (`trainer.train`'s keyword arguments)."""
    c = model.ctc.config
    if c.vocab_size != len(vocabulary):
        raise InputError(f"the model's output layer has {c.vocab_size} symbols, the vocabulary {len(vocabulary)}")
    shortest = int(model.ctc._get_feat_extract_output_lengths(torch.tensor(int(config.min_sample_seconds * SAMPLE_RATE))))
    if c.mask_time_prob > 0 and shortest <= c.mask_time_length:  # checked before the run is started
        raise InputError(f"min-sample-seconds {config.min_sample_seconds:g} gives {shortest} frames, but time masks are "
                         f"{c.mask_time_length} frames long: give at least "
                         f"{(c.mask_time_length + 1) * model.ctc.config.inputs_to_logits_ratio / SAMPLE_RATE:g} s")
    return train(CtcTask(model, vocabulary, extractor, freeze_steps), train_split, valid, config, run_dir, **kwargs)
