"""A run on a Dask LocalCluster with two worker processes."""

from __future__ import annotations

import logging

import pytest
from migrate_helpers import car_key, contents, corrupt, fill, make_car, missing

from carmigrate.migrate import (
    Check,
    ItemState,
    Limits,
    VerificationPolicy,
    execute,
    plan,
    resume,
    verify,
)

pytestmark = pytest.mark.dask


@pytest.fixture(scope="module")
def dask_executor():
    distributed = pytest.importorskip("distributed")
    for name in ("distributed", "tornado", "bokeh"):
        logging.getLogger(name).setLevel(logging.ERROR)
    cluster = distributed.LocalCluster(
        processes=True, n_workers=2, threads_per_worker=2, dashboard_address=":0"
    )
    client = distributed.Client(cluster)
    try:
        yield client.get_executor()
    finally:
        client.close()
        cluster.close()


def test_a_plan_runs_on_dask_workers(src, dst, ledger, dask_executor) -> None:
    """Workers open the stores from the plan's URLs; only the coordinator writes the ledger."""
    good = make_car(5)
    objects = {
        car_key(good, "cars"): good,
        "cars/bad.car": corrupt(make_car(4, seed=b"q")),
    }
    objects.update({f"files/{i:02d}": bytes([i]) * (100 + i) for i in range(12)})
    fill(src, objects)
    p = plan(
        src,
        dst,
        verification=VerificationPolicy(checks=[Check.SHA256, Check.CAR, Check.COMMP]),
    )
    first = execute(
        p, ledger, executor=dask_executor, limits=Limits(concurrency=4, max_items=6)
    )
    assert first.stop_reason == "max_items"
    result = resume(ledger, executor=dask_executor)

    assert result.complete
    assert ledger.find("cars/bad.car").state is ItemState.FAILED
    assert ledger.find("cars/bad.car").offset is not None
    assert missing(dst, "cars/bad.car")
    good_rec = ledger.find(car_key(good, "cars"))
    assert good_rec.state is ItemState.VERIFIED
    assert good_rec.piece_cid is not None
    assert good_rec.piece_cid.startswith("baga")
    expected = {k: v for k, v in objects.items() if k != "cars/bad.car"}
    assert contents(dst) == expected
    assert verify(p, ledger, executor=dask_executor, reread_source=True).ok
    assert ledger.counts()[ItemState.VERIFIED] == len(expected)
