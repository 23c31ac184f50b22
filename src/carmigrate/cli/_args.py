"""Argument types shared by the command groups."""

from __future__ import annotations

import argparse
import json
import math
from typing import Any, NamedTuple

__all__ = ["positive_float", "positive_int"]


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a positive integer, got {text!r}"
        ) from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def positive_float(text: str) -> float:
    """An argparse type: a finite number greater than 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a positive number, got {text!r}"
        ) from None
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


class StoreOption(NamedTuple):
    """One ``--source-option``/``--destination-option``: as written, and parsed."""

    text: str
    name: str
    value: Any


def _no_constant(name: str) -> Any:
    raise ValueError(name)  # NaN and Infinity stay text


def store_option(text: str) -> StoreOption:
    """An argparse type: ``KEY=VALUE``, the value read as JSON if it is JSON, else text.

    ``true``, ``false``, ``null``, numbers, ``"quoted text"``, lists and
    objects are JSON; anything else (``multipart``, ``/path``) is the text
    itself. Everything after the first ``=`` is the value.
    """
    name, sep, raw = text.partition("=")
    name = name.strip()
    if not sep or not name.isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        value = json.loads(raw, parse_constant=_no_constant)
    except ValueError:
        value = raw
    return StoreOption(text, name, value)
