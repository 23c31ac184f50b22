"""Implicit references: JSON paths inside JSON documents, and string templates.

Both are rewritten structurally: a JSON document is walked along its path
and rebuilt with the mapped values; a string is parsed by its template,
its fields mapped, and the template rendered again. Nothing is ever replaced
as text, so an id that happens to occur elsewhere in a string or document
is left alone.
"""

from __future__ import annotations

import re
import string
from typing import TYPE_CHECKING, Any, Final

import attrs

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

__all__ = ["JsonPath", "Template"]

_WILD: Final = "*"
_KEYS: Final = "~"


@attrs.frozen
class JsonPath:
    """Where references sit inside a JSON document.

    Syntax: segments separated by ``.``, optionally after a leading ``$``:
    a name selects an object's member (digits select a list's element),
    ``*`` selects every element of a list or every value of an object, and
    ``~`` (last segment only) selects an object's keys. ``$`` alone is the
    whole document. Examples: ``nodes.*.id``, ``~`` (an object keyed by
    node id), ``*.inputs.*.nodeUuid``.

    Attributes:
        segments: The parsed segments.
    """

    segments: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> JsonPath:
        """Parse ``text``; see the class for the syntax.

        Raises:
            ValueError: Empty segments, or ``~`` before the last segment.
        """
        body = text.strip()
        if body.startswith("$"):
            body = body[1:].removeprefix(".")
        segments = tuple(body.split(".")) if body else ()
        if any(s == "" for s in segments):
            msg = f"JSON path {text!r} has an empty segment"
            raise ValueError(msg)
        if _KEYS in segments[:-1]:
            msg = f"JSON path {text!r}: '~' (object keys) must be the last segment"
            raise ValueError(msg)
        return cls(segments)

    def __str__(self) -> str:
        return "$." + ".".join(self.segments) if self.segments else "$"

    def values(self, doc: Any) -> Iterator[Any]:
        """Every value the path selects in ``doc`` (missing parts select nothing)."""
        yield from _values(doc, self.segments)

    def rewrite(self, doc: Any, fn: Callable[[Any], Any]) -> Any:
        """A copy of ``doc`` with every selected value replaced by ``fn(value)``.

        Parts the path does not reach are shared with ``doc``, never copied
        as text; ``doc`` itself is not changed.
        """
        return _rewrite(doc, self.segments, fn)


def _values(doc: Any, segments: tuple[str, ...]) -> Iterator[Any]:
    if not segments:
        yield doc
        return
    head, rest = segments[0], segments[1:]
    if head == _KEYS:
        if isinstance(doc, dict):
            yield from doc.keys()
    elif head == _WILD:
        items = doc.values() if isinstance(doc, dict) else doc
        if isinstance(doc, dict | list):
            for v in items:
                yield from _values(v, rest)
    elif isinstance(doc, dict):
        if head in doc:
            yield from _values(doc[head], rest)
    elif isinstance(doc, list) and head.isdigit() and int(head) < len(doc):
        yield from _values(doc[int(head)], rest)


def _rewrite(doc: Any, segments: tuple[str, ...], fn: Callable[[Any], Any]) -> Any:
    if not segments:
        return fn(doc)
    head, rest = segments[0], segments[1:]
    if head == _KEYS:
        if isinstance(doc, dict):
            return {fn(k): v for k, v in doc.items()}
        return doc
    if head == _WILD:
        if isinstance(doc, dict):
            return {k: _rewrite(v, rest, fn) for k, v in doc.items()}
        if isinstance(doc, list):
            return [_rewrite(v, rest, fn) for v in doc]
        return doc
    if isinstance(doc, dict) and head in doc:
        return {**doc, head: _rewrite(doc[head], rest, fn)}
    if isinstance(doc, list) and head.isdigit() and int(head) < len(doc):
        i = int(head)
        return [*doc[:i], _rewrite(doc[i], rest, fn), *doc[i + 1 :]]
    return doc


@attrs.frozen
class Template:
    """A string made of literal text and named fields: ``{project_uuid}/{node_uuid}/{name}``.

    Fields are Python format fields without conversions or format specs;
    ``{{`` and ``}}`` are literal braces. A string is parsed by matching
    the literal parts exactly; every field matches at least one character.
    Two fields must be separated by literal text, so a parse is never a
    guess.

    Attributes:
        text: The template as written.
        fields: The field names in order.
    """

    text: str
    fields: tuple[str, ...] = attrs.field(init=False)
    _pattern: re.Pattern[str] = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        parts: list[str] = []
        fields: list[str] = []
        previous_was_field = False
        try:
            parsed = list(string.Formatter().parse(self.text))
        except ValueError as e:
            msg = f"template {self.text!r}: {e}"
            raise ValueError(msg) from e
        for literal, field, spec, conversion in parsed:
            if literal:
                parts.append(re.escape(literal))
                previous_was_field = False
            if field is None:
                continue
            if spec or conversion or not field.isidentifier():
                msg = f"template {self.text!r}: field {{{field}}} must be a plain name"
                raise ValueError(msg)
            if field in fields:
                msg = f"template {self.text!r}: field {{{field}}} appears twice"
                raise ValueError(msg)
            if previous_was_field:
                msg = (
                    f"template {self.text!r}: fields {{{fields[-1]}}} and "
                    f"{{{field}}} need literal text between them"
                )
                raise ValueError(msg)
            fields.append(field)
            parts.append(f"(?P<{field}>.+?)")
            previous_was_field = True
        if not fields:
            msg = f"template {self.text!r} has no fields"
            raise ValueError(msg)
        object.__setattr__(self, "fields", tuple(fields))
        object.__setattr__(self, "_pattern", re.compile("".join(parts), re.DOTALL))

    def parse(self, value: str) -> dict[str, str] | None:
        """The fields of ``value``, or ``None`` when it does not have the template's shape.

        A parse counts only if rendering its fields gives ``value`` back.
        """
        m = self._pattern.fullmatch(value)
        if m is None:
            return None
        fields = m.groupdict()
        return fields if self.render(fields) == value else None

    def render(self, fields: Mapping[str, object]) -> str:
        """The template with ``fields`` filled in (``str()`` of each value)."""
        return self.text.format_map({k: str(v) for k, v in fields.items()})
