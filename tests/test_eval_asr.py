"""`speechtok eval asr`: greedy CTC transcripts and their error rates, against a decode and an edit
distance written here from their definitions."""

from __future__ import annotations

import json

import numpy as np
import soundfile as sf
import torch
from typer.testing import CliRunner

from speechtok.cli import app


def edit_distance(a: list, b: list) -> int:
    d = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, d[0] = d[0], i
        for j, y in enumerate(b, 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (x != y))
    return d[-1]


def test_error_rates_of_greedy_ctc_transcripts(tmp_path, speech_waves):
    from transformers import HubertConfig, HubertForCTC, Wav2Vec2CTCTokenizer, Wav2Vec2FeatureExtractor, Wav2Vec2Processor

    letters = list("abcdeh ")
    vocab = {"<pad>": 0, "<unk>": 1, "|": 2, **{c: i + 3 for i, c in enumerate(letters[:-1])}}
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    tokenizer = Wav2Vec2CTCTokenizer(str(tmp_path / "vocab.json"), pad_token="<pad>", unk_token="<unk>",
                                     word_delimiter_token="|")
    extractor = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
                                         return_attention_mask=False)
    torch.manual_seed(0)
    config = HubertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                          conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
                          vocab_size=len(vocab), pad_token_id=0)
    model = HubertForCTC(config).eval()
    with torch.no_grad():  # a random model that emits letters, not only blanks
        model.lm_head.bias.copy_(torch.tensor([-3.0, -9.0] + [0.0] * (len(vocab) - 2)))
    model_dir = tmp_path / "ctc"
    model.save_pretrained(model_dir)
    Wav2Vec2Processor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(model_dir)

    root = tmp_path / "audio"
    root.mkdir()
    lines, refs = [str(root)], ["bad head", "a cab", "hedge bed a"]
    for i, wave in enumerate(speech_waves[:3]):
        sf.write(root / f"u{i}.wav", wave, 16000)
        lines.append(f"u{i}.wav\t{len(wave)}")
    (tmp_path / "test.tsv").write_text("\n".join(lines) + "\n")
    (tmp_path / "test.ltr").write_text("".join(" ".join(r.replace(" ", "|")) + " |\n" for r in refs))

    result = CliRunner().invoke(app, ["eval", "asr", str(model_dir), str(tmp_path / "test.tsv"),
                                      str(tmp_path / "test.ltr"), "--json", "-o", str(tmp_path / "utts.jsonl")])
    assert result.exit_code == 0, result.output
    reported = json.loads(result.output[result.output.index('{"wer"'):].splitlines()[0])

    # independently: normalise, run, argmax, merge repeats, drop blanks, "|" -> space
    ids_to_char = {i: c for c, i in vocab.items()}
    hyps = []
    for wave in speech_waves[:3]:
        x = (wave - wave.mean()) / np.sqrt(wave.var() + 1e-7)
        with torch.no_grad():
            best = model(torch.from_numpy(x.astype(np.float32))[None]).logits[0].argmax(-1).tolist()
        merged = [b for k, b in enumerate(best) if k == 0 or b != best[k - 1]]
        text = "".join(" " if ids_to_char[b] == "|" else ids_to_char[b] for b in merged if b != 0)
        hyps.append(" ".join(text.split()))
    rows = [json.loads(line) for line in (tmp_path / "utts.jsonl").read_text().splitlines()]
    assert [r["hypothesis"] for r in rows] == hyps and [r["reference"] for r in rows] == refs
    assert any(hyps)
    words = sum(len(r.split()) for r in refs)
    wer = sum(edit_distance(r.split(), h.split()) for r, h in zip(refs, hyps)) / words
    cer = sum(edit_distance(list(r), list(h)) for r, h in zip(refs, hyps)) / sum(len(r) for r in refs)
    assert abs(reported["wer"] - wer) < 1e-9 and abs(reported["cer"] - cer) < 1e-9
    assert [r["word_errors"] for r in rows] == [edit_distance(r.split(), h.split()) for r, h in zip(refs, hyps)]
