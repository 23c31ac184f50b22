"""Helpers of the records tests (a module of its own: "conftest" is ambiguous
when several test folders are collected in one run)."""

from __future__ import annotations

import schema
import sqlalchemy as sa

from pg_cluster import PG_BIN, PG_PORT

__all__ = ["PG_BIN", "PG_PORT", "build"]


def build(url: str, deployment: schema.Deployment | None) -> str:
    """Create the schema at ``url`` and, if given, a deployment's rows."""
    engine = sa.create_engine(url)
    try:
        schema.create(engine)
        if deployment is not None:
            schema.populate(engine, deployment)
    finally:
        engine.dispose()
    return url
