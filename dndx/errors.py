"""The project's own exception types.

Every error names what the user must look at: the file, the key or field, and
what was expected, so that a physicist can fix the input without reading code.
"""

from __future__ import annotations

__all__ = ["ConfigError", "DndxError", "InputError"]


class DndxError(Exception):
    """Base class of every error dndx raises on purpose."""


class ConfigError(DndxError):
    """A parameter file holds a value of the wrong type or out of its allowed range."""


class InputError(DndxError):
    """A data file is missing, unreadable, or holds data that cannot be used."""
