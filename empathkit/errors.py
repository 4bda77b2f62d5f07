"""Errors that name where bad input came from (file, line, field) instead of a deep library traceback."""

from __future__ import annotations


class EmpathkitError(Exception):
    """Base class for every error empathkit raises on purpose; the CLI prints these without a traceback."""


class DataError(EmpathkitError, ValueError):
    """Bad input data. ``str(err)`` reads ``file:line: field 'x': message``."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None, field: str | None = None):
        self.file, self.line, self.field, self.reason = file, line, field, message
        where = ""
        if file is not None:
            where = f"{file}:{line}: " if line is not None else f"{file}: "
        what = f"field '{field}': " if field else ""
        super().__init__(f"{where}{what}{message}")


class ConfigError(EmpathkitError, ValueError):
    """Bad configuration (unknown key, wrong type, unknown method/metric name)."""


class ResourceMissing(EmpathkitError, FileNotFoundError):
    """A model, lexicon, dataset or classifier that is needed is not available (offline, not trained, not installed)."""
