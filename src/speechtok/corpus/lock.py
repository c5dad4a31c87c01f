"""One writer per output directory.

A job holds an exclusive `flock` on `OUT/.lock` while it writes into OUT, and records in the file
who it is (pid, host, command, start time). A second job on the same OUT is refused at once with
that description. The ranks of a `--rank/--nshard` job write into one OUT side by side, so each
holds its own lock file (`.lock-R-of-N`); `job.json` is checked and written under a short lock of
its own, so two different jobs can never both pass that check.

The kernel drops a lock when its holder's process ends, however it ends (SIGKILL included), so a
lock left by a killed job never blocks a later run: the file stays, the lock does not. (Removing
the file on release would race with a job that has just opened it.)

Object stores have no locks: an OUT named by a URL is held through a local file named after the
URL (`lock_directory`), which refuses a second job on this machine only.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import socket
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..errors import InputError
from .remote import is_url, local_path

log = logging.getLogger(__name__)

LOCK_FILE = ".lock"


def lock_directory(location: str | os.PathLike) -> Path:
    """Where the lock files of the output directory `location` are: in it, or for a URL, in a local
    directory named after it."""
    text = os.fspath(location)
    if is_url(text):
        key = hashlib.sha256(text.rstrip("/").encode()).hexdigest()[:20]
        return Path(tempfile.gettempdir()) / f"speechtok-locks-{os.getuid()}" / key  # per user: /tmp is shared
    return local_path(text)


@contextmanager
def hold(location: str | os.PathLike, name: str = LOCK_FILE, wait: bool = False) -> Iterator[Path]:
    """Hold `name` in the output directory `location` for this process (creating the directory)
    for the duration of the block, or raise InputError naming the job that holds it; with `wait`,
    wait for it instead (for short critical sections)."""
    directory = lock_directory(location)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _describe(os.read(fd, 1 << 16))
        os.close(fd)
        raise InputError(f"{location} is being written by another speechtok job ({holder}); wait for it to "
                         "finish or stop it, or choose another output directory") from None
    except OSError as error:  # a file system without flock (Lustre without -o flock, some NFS)
        os.close(fd)
        log.warning("%s: cannot lock %s (%s); going on without the one-writer guarantee", location, name,
                    error.strerror)
        yield path
        return
    try:
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
              "command": " ".join(sys.argv)}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        yield path
    finally:
        os.close(fd)  # releases the lock


def _describe(content: bytes) -> str:
    try:
        holder = json.loads(content)
        return f"pid {holder['pid']} on {holder['host']}, started {holder['started']}: {holder['command']}"
    except (ValueError, KeyError, TypeError):
        return "a job that is just starting"
