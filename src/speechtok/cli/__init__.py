"""The `speechtok` command line: one module per command group, one error boundary
(`common.boundary`); each command parses its options and calls the library."""

from .app import app

__all__ = ["app"]
