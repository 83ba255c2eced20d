"""Exceptions the library raises; the CLI turns each into one line on stderr and an exit code."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class NormstyleError(ValueError):
    """Base class: a problem with the user's input, never a bug (CLI exit code 1)."""


class OptionError(NormstyleError):
    """An option value or combination that cannot work (CLI exit code 2, like a usage error)."""


class InputError(NormstyleError):
    """A file that cannot be read or used: image, weights, directory (CLI exit code 1)."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """``" (did you mean 'x'?)"`` for the closest of ``choices``, or ``""`` if none is close."""
    matches = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{matches[0]}'?)" if matches else ""


def check_names(names: Iterable[str], known: Iterable[str], what: str = "layer") -> None:
    """Raise :class:`OptionError` for the first of ``names`` not in ``known``, with a suggestion."""
    known = list(known)
    for name in names:
        if name not in known:
            raise OptionError(f"unknown {what} '{name}'{did_you_mean(name, known)}")


def one_line(error: BaseException) -> str:
    """``error``'s message on one line (whitespace collapsed), or its type's name if empty."""
    return " ".join(str(error).split()) or type(error).__name__
