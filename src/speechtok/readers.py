"""Readers of other tools' files, looked up by name.

Model classes accept other tools' files where users expect it (`SSLEncoder.from_pretrained` on a
fairseq `.pt`, `KMeans.from_pretrained` on a scikit-learn pickle, `speechtok.load` on a Descript
`.pth`, `UnitVocoder.from_fairseq`), but the code that reads those files lives in
`speechtok.formats`, which imports the model packages; they must not import it back. So
`speechtok.formats` registers each reader here when the package is imported (the `speechtok`
package imports it), and a model looks its reader up by name when it is given such a file.
"""

from __future__ import annotations

from typing import Callable

_READERS: dict[str, Callable] = {}


def register(name: str) -> Callable[[Callable], Callable]:
    """Decorator: `fn` reads the files called `name` (e.g. "ssl-checkpoint")."""

    def add(fn: Callable) -> Callable:
        _READERS[name] = fn
        return fn

    return add


def reader(name: str) -> Callable:
    """The reader registered for `name`."""
    if name not in _READERS:  # only when speechtok.formats was never imported, i.e. a packaging bug
        raise RuntimeError(f"no reader for {name!r} files is registered (is speechtok.formats importable?)")
    return _READERS[name]
