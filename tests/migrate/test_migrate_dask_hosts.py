"""A run on a Dask cluster whose scheduler and workers are separate hosts, one of them lost mid-run.

The hosts are Linux network namespaces made by the test, each with its own
network stack, joined to this machine by veth pairs on a bridge (a
10.231.x.0/24 subnet): the scheduler and two workers run in three of them;
the coordinator (``execute``) and two moto S3 servers run on the host side.
Workers open the plan's stores by URL with the store options the
coordinator sends, and reach the S3 servers over the bridge.

10,000 objects move from one moto server to the other; one worker's host
process is killed (SIGKILL, no nanny to restart it) after a tenth of them:
the run still completes, every object is verified exactly once in the
ledger and the events, and the destination holds exactly the source's bytes.

Needs root (or CAP_NET_ADMIN) and ``ip``; without them the test is skipped
and says why.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from carmigrate.migrate import (
    Event,
    EventKind,
    ItemState,
    Ledger,
    Limits,
    StoreOptions,
    VerificationPolicy,
    execute,
    plan,
)
from carmigrate.storage import S3Store

pytestmark = [pytest.mark.dask, pytest.mark.s3]

OBJECTS = 10_000
KILL_AFTER = OBJECTS // 10


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


class Hosts:
    """Network namespaces on a bridge: ``addr[name]`` is each one's address."""

    def __init__(self, names: tuple[str, ...]) -> None:
        tag = f"{os.getpid() % 10000:04d}"
        self.subnet = f"10.231.{os.getpid() % 200 + 20}"
        self.bridge = f"cmbr{tag}"
        self.gateway = f"{self.subnet}.1"
        self.ns = {n: f"cm-{n}-{tag}" for n in names}
        self.addr = {n: f"{self.subnet}.{i + 2}" for i, n in enumerate(names)}
        self.made: list[str] = []

    def up(self) -> None:
        _ip("link", "add", self.bridge, "type", "bridge")
        self.made.append("bridge")
        _ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        for i, (name, ns) in enumerate(self.ns.items()):
            host_end, ns_end = f"cmv{i}{self.bridge[4:]}", f"cmp{i}{self.bridge[4:]}"
            _ip("netns", "add", ns)
            self.made.append(ns)
            _ip("link", "add", host_end, "type", "veth", "peer", "name", ns_end)
            _ip("link", "set", ns_end, "netns", ns)
            _ip("link", "set", host_end, "master", self.bridge)
            _ip("link", "set", host_end, "up")
            _ip("-n", ns, "addr", "add", f"{self.addr[name]}/24", "dev", ns_end)
            _ip("-n", ns, "link", "set", ns_end, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "route", "add", "default", "via", self.gateway)

    def down(self) -> None:
        for ns in self.made:
            if ns == "bridge":
                continue
            with contextlib.suppress(subprocess.CalledProcessError):
                _ip("netns", "del", ns)
        if "bridge" in self.made:
            with contextlib.suppress(subprocess.CalledProcessError):
                _ip("link", "del", self.bridge)

    def spawn(self, name: str, argv: list[str], log: Path) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            return subprocess.Popen(
                ["ip", "netns", "exec", self.ns[name], *argv],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )


@pytest.fixture(scope="module")
def hosts() -> Iterator[Hosts]:
    if sys.platform != "linux" or shutil.which("ip") is None:
        pytest.skip("network namespaces need Linux and iproute2's ip")
    h = Hosts(("scheduler", "worker1", "worker2"))
    try:
        h.up()
    except subprocess.CalledProcessError as e:
        h.down()
        pytest.skip(f"cannot make network namespaces here: {e.stderr.strip()}")
    try:
        yield h
    finally:
        h.down()


def _wait_port(host: str, port: int, what: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), 1):
            return
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not listen on {host}:{port} within 60 s")


def _moto(host: str) -> Any:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address=host, port=0, verbose=False)
    server.start()
    return server


def test_a_worker_host_lost_mid_run(hosts: Hosts, tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    for name in ("distributed", "tornado", "bokeh", "werkzeug"):
        logging.getLogger(name).setLevel(logging.ERROR)
    py = sys.executable
    port = 8786
    sched_addr = f"tcp://{hosts.addr['scheduler']}:{port}"
    procs: dict[str, subprocess.Popen[bytes]] = {}
    servers = [_moto(hosts.gateway), _moto(hosts.gateway)]
    try:
        procs["scheduler"] = hosts.spawn(
            "scheduler",
            [py, "-m", "distributed.cli.dask_scheduler", "--host",
             hosts.addr["scheduler"], "--port", str(port), "--no-dashboard"],
            tmp_path / "scheduler.log",
        )  # fmt: skip
        _wait_port(hosts.addr["scheduler"], port, "the scheduler", procs["scheduler"])
        for w in ("worker1", "worker2"):
            procs[w] = hosts.spawn(
                w,
                [py, "-m", "distributed.cli.dask_worker", sched_addr, "--host",
                 hosts.addr[w], "--nthreads", "2", "--no-nanny", "--no-dashboard",
                 "--death-timeout", "60"],
                tmp_path / f"{w}.log",
            )  # fmt: skip
        options = [
            {
                "endpoint_url": f"http://{hosts.gateway}:{s.get_host_and_port()[1]}",
                "access_key_id": "moto-key",
                "secret_access_key": "moto-secret",
                "region": "us-east-1",
            }
            for s in servers
        ]
        import boto3

        for o, bucket in zip(options, ("src", "dst"), strict=True):
            boto3.client(
                "s3",
                endpoint_url=o["endpoint_url"],
                aws_access_key_id="k",
                aws_secret_access_key="s",
                region_name="us-east-1",
            ).create_bucket(Bucket=bucket)
        src, dst = S3Store("src", **options[0]), S3Store("dst", **options[1])
        objects = {
            f"o/{i:05d}": hashlib.sha256(str(i).encode()).digest() * (8 + i % 24)
            for i in range(OBJECTS)
        }
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda kv: src.write(*kv), objects.items()))
        p = plan(src, dst, verification=VerificationPolicy(checks=["size", "md5"]))
        assert p.header.item_count == OBJECTS

        client = distributed.Client(sched_addr, timeout=60)
        client.wait_for_workers(2, timeout=60)
        done: Counter[str] = Counter()
        killed: list[float] = []

        def reporter(event: Event) -> None:
            if event.kind is EventKind.DONE and event.key is not None:
                done[event.key] += 1
                if sum(done.values()) >= KILL_AFTER and not killed:
                    os.killpg(procs["worker1"].pid, signal.SIGKILL)
                    killed.append(time.monotonic())

        try:
            with Ledger(tmp_path / "ledger.db") as ledger:
                result = execute(
                    p,
                    ledger,
                    executor=client.get_executor(),
                    limits=Limits(concurrency=8),
                    reporters=[reporter],
                    store_options=StoreOptions(
                        source=options[0], destination=options[1]
                    ),
                )
                counts = ledger.counts()
        finally:
            client.close()
        assert killed, "the worker was never killed"
        assert procs["worker1"].wait(10) == -signal.SIGKILL
        assert result.complete
        assert counts == {ItemState.VERIFIED: OBJECTS}
        assert set(done) == set(objects)
        assert set(done.values()) == {1}  # every object verified exactly once
        there = {i.key: i for i in dst.list()}
        assert set(there) == set(objects)
        assert {k: i.size for k, i in there.items()} == {
            k: len(v) for k, v in objects.items()
        }
        with ThreadPoolExecutor(16) as pool:
            same = pool.map(
                lambda k: (
                    dst.stat(k).etag.strip('"')
                    == hashlib.md5(objects[k], usedforsecurity=False).hexdigest()
                ),
                sorted(objects),
            )
            assert all(same)
    finally:
        for proc in procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        for s in servers:
            s.stop()
