"""For executors: PostgreSQL's ``COPY`` text format, as record plans use it.

Code that plans or executes record plans through
[carmigrate.records][] and ``carmigrate.migrate`` never needs this module.
It is what the executor's fast path for PostgreSQL is built from:

- [COPY_SETTINGS][carmigrate.records.lowlevel.COPY_SETTINGS] and
  [apply_copy_settings][carmigrate.records.lowlevel.apply_copy_settings] fix
  every session setting that changes a type's text output, so the same
  values are the same bytes on any server;
- [copy_lines][carmigrate.records.lowlevel.copy_lines] streams a table's
  rows as ``COPY`` text lines in key order;
- [CopyCodec][carmigrate.records.lowlevel.CopyCodec] reads and writes single
  fields of those lines with psycopg's own type adapters;
  [copy_escape][carmigrate.records.lowlevel.copy_escape] and
  [copy_unescape][carmigrate.records.lowlevel.copy_unescape] are the field
  quoting rules;
- [array_text][carmigrate.records.lowlevel.array_text] writes a long list
  of keys as one array literal, for ``= ANY(...)``.
"""

from carmigrate.records._pgcopy import (
    COPY_SETTINGS,
    CopyCodec,
    apply_copy_settings,
    array_text,
    copy_escape,
    copy_lines,
    copy_unescape,
)

__all__ = [
    "COPY_SETTINGS",
    "CopyCodec",
    "apply_copy_settings",
    "array_text",
    "copy_escape",
    "copy_lines",
    "copy_unescape",
]
