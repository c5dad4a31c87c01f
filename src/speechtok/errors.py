"""The errors a user can act on, and the exit code each maps to.

Every error speechtok raises on purpose derives from `SpeechtokError`, which carries the command
line's exit code; the CLI prints its message (no traceback) and exits with that code. Anything
else that escapes is a bug, and the CLI shows its traceback.

    0  all good
    1  finished, but some files failed (listed in errors.jsonl / the summary)
    2  bad arguments or refused input (nothing, or nothing more, was written)
    3  the job could not finish: I/O error, disk full, a damaged output (the path is named)
    4  a bug in speechtok (the traceback is shown)

The classes also derive from the builtin exception a caller would expect (ValueError for bad
input, FileNotFoundError for a missing file, ...), so `except ValueError` keeps working.
"""

from __future__ import annotations

import pickle

EXIT_OK = 0
EXIT_FILES_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_JOB_FAILED = 3
EXIT_BUG = 4


class SpeechtokError(Exception):
    """An error with a message meant for the user; `exit_code` is what the CLI exits with."""

    exit_code = EXIT_BAD_INPUT

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else self.__class__.__name__


class InputError(SpeechtokError, ValueError):
    """Bad arguments or refused input: a missing file, a bad manifest line, an option that does
    not apply, a different job in the output directory."""


class NotFoundError(InputError, FileNotFoundError):
    """A file or name the user gave does not exist (or is not what it should be)."""


class UnknownNameError(InputError, KeyError):
    """A name (preset, stream, format) that speechtok does not know."""


class FormatError(InputError):
    """Another tool's file (checkpoint, pickle, manifest) that is not in a supported form, or a
    saved speechtok artifact that is damaged or inconsistent."""


class UnsafeFileError(FormatError, pickle.UnpicklingError):
    """A pickle naming a global outside the allow-list; nothing from it was called."""


class FilesFailed(SpeechtokError):
    """Some inputs could not be processed (under --strict: the first one)."""

    exit_code = EXIT_FILES_FAILED


class JobFailed(SpeechtokError, OSError):
    """The job could not finish: an I/O error, a full disk, a damaged output file."""

    exit_code = EXIT_JOB_FAILED
