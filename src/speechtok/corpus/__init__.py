"""Corpus jobs: many files in, sharded, resumable outputs (tokenize, extract, fit-kmeans, decode,
export, eval, hubert-labels), and the tokenized-corpus data model they share."""

from ..errors import FilesFailed, InputError
from .inputs import Utterance, collect
from .manifest import CorpusManifest, TokenizedCorpus
from .runner import JobResult

JobMismatch = InputError  # the names before speechtok.errors: a different job in OUT is refused input,
UtteranceFailed = FilesFailed  # and a bad file under --strict is a failed file

__all__ = ["CorpusManifest", "InputError", "JobMismatch", "JobResult", "TokenizedCorpus", "Utterance",
           "UtteranceFailed", "collect"]
