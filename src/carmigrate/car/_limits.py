"""Hard limits applied to lengths read from untrusted CAR input."""

from __future__ import annotations

from typing import Final

import attrs

__all__ = [
    "DEFAULT_LIMITS",
    "DEFAULT_MAX_HEADER_SIZE",
    "DEFAULT_MAX_SECTION_SIZE",
    "CarLimits",
]

DEFAULT_MAX_HEADER_SIZE: Final = 32 << 20
"""Largest CAR header accepted by default: 32 MiB, as go-car's
``DefaultMaxAllowedHeaderSize``."""

DEFAULT_MAX_SECTION_SIZE: Final = 8 << 20
"""Largest section (CID plus block data) accepted by default: 8 MiB, as go-car's
``DefaultMaxAllowedSectionSize``."""


def _positive(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        msg = f"{attribute.name} must be a positive integer, got {value!r}"
        raise ValueError(msg)


@attrs.frozen
class CarLimits:
    """Caps on the lengths a CAR declares, checked before anything is allocated.

    A length prefix larger than its cap raises
    [LimitExceeded][carmigrate.errors.LimitExceeded] naming the offset of the
    prefix, the cap and the declared length. Memory used by the readers is
    bounded by these caps (plus a read buffer of a few MiB), whatever the
    input says.

    Attributes:
        max_header_size: Largest accepted CARv1 header (the DAG-CBOR bytes after
            the length prefix), in bytes.
        max_section_size: Largest accepted section (CID plus block data, the
            value of the section's length prefix), in bytes.

    Raises:
        ValueError: If a cap is not a positive integer.
    """

    max_header_size: int = attrs.field(
        default=DEFAULT_MAX_HEADER_SIZE, validator=_positive
    )
    max_section_size: int = attrs.field(
        default=DEFAULT_MAX_SECTION_SIZE, validator=_positive
    )


DEFAULT_LIMITS: Final = CarLimits()
"""The default [CarLimits][carmigrate.car.CarLimits]: 32 MiB headers, 8 MiB sections."""
