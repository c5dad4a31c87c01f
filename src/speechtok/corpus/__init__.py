"""Corpus jobs: many files in, sharded, resumable outputs (tokenize, extract, fit-kmeans, export)."""

from .inputs import InputError, Utterance, collect
from .job import JobMismatch, JobResult, UtteranceFailed

__all__ = ["InputError", "JobMismatch", "JobResult", "Utterance", "UtteranceFailed", "collect"]
