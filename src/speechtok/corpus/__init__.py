"""Corpus jobs: many files in, sharded, resumable outputs (tokenize, extract, fit-kmeans, decode,
export, eval, hubert-labels), and the tokenized-corpus data model they share."""

from ..errors import InputError
from .inputs import Utterance, collect
from .manifest import CorpusManifest, TokenizedCorpus
from .runner import JobResult

__all__ = ["CorpusManifest", "InputError", "JobResult", "TokenizedCorpus", "Utterance", "collect"]
