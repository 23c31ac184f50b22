#!/usr/bin/env python3
"""Benchmark carmigrate.storage copies against ``cp -r`` and ``rclone copy``.

In one run and on the same generated files (under ``benchmarks/.data/``,
gitignored), for two data sets (100 x 10 MiB and 5,000 x 16 KiB; ``--quick``:
8 x 1 MiB and 200 x 16 KiB):

- local -> local: ``cp -r``, ``rclone copy --transfers 8``, and carmigrate's
  ``copy_object`` in a pool of 8 threads: server-side (``copy_file_range``)
  and streaming, with LocalStore's default fsync and without it;
- local -> S3 (moto's server, in its own process on 127.0.0.1): ``rclone
  copy`` (remote configured only through ``RCLONE_CONFIG_MOTO_*``
  variables, ``AWS_CA_BUNDLE`` unset) and carmigrate with a pool of 8;
- the peak memory (VmHWM) of a process that streams a 2 GiB object
  (``--quick``: 64 MiB) to moto as a multipart upload, against a 128 MiB
  target, next to the same process's memory before the upload.

The files are in the page cache (nothing drops it), so local copies measure
CPU and system calls, not disks; the S3 rows measure mostly moto, a Python
server. The machine may be shared: expect noise, compare rows of one run.

Usage: ``python benchmarks/bench_storage.py [--quick] [--workers N]``.
Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "benchmarks" / ".data"
KIB = 1 << 10
MIB = 1 << 20
MEMORY_TARGET = 128 * MIB

MOTO_SERVER = """
import logging, sys, time
logging.getLogger("werkzeug").setLevel(logging.ERROR)
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
sys.stdin.read()   # runs until the parent closes stdin
server.stop()
"""

UPLOADER = """
import json, sys, time

def peak_rss():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0

def rss():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0

endpoint, bucket, total = sys.argv[1], sys.argv[2], int(sys.argv[3])
from carmigrate.storage import S3Store
store = S3Store(bucket, endpoint_url=endpoint, access_key_id="bench",
                secret_access_key="bench", region="us-east-1")
store.stat  # the client exists now
baseline = rss()
chunk = bytes(range(256)) * 4096   # 1 MiB, reused: the source costs no memory

def source():
    for _ in range(total // len(chunk)):
        yield chunk

started = time.perf_counter()
info = store.write("big.bin", source())
seconds = time.perf_counter() - started
assert info.size == total, info
store.close()
print(json.dumps({"seconds": seconds, "peak": peak_rss(), "baseline": baseline}))
"""


@dataclass(frozen=True)
class DataSet:
    name: str
    count: int
    size: int

    @property
    def total(self) -> int:
        return self.count * self.size

    @property
    def path(self) -> Path:
        return DATA / f"storage-{self.count}x{self.size}"


@dataclass
class Row:
    scenario: str
    data: DataSet
    tool: str
    seconds: float | None
    note: str = ""


def human(n: int) -> str:
    return f"{n // MIB} MiB" if n >= MIB else f"{n // KIB} KiB"


def prepare(ds: DataSet) -> list[str]:
    """Create (once) ``count`` random files of ``size`` bytes; return their keys."""
    keys = [f"d{i // 1000:02d}/obj-{i:05d}.bin" for i in range(ds.count)]
    marker = DATA / f".{ds.path.name}.complete"
    if not marker.exists():
        shutil.rmtree(ds.path, ignore_errors=True)
        for key in keys:
            target = ds.path / key
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(os.urandom(ds.size))
        marker.write_text("ok\n")
    return keys


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def run(cmd: list[str], env: dict[str, str] | None = None) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr[-2000:]}"
        )


def pool_copy(keys: list[str], copy: Callable[[str], object], workers: int) -> None:
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        for _ in pool.map(copy, keys):
            pass


class Moto:
    """moto's server in a child process."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", MOTO_SERVER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        port = int(self.proc.stdout.readline())
        self.endpoint = f"http://127.0.0.1:{port}"

    def reset(self) -> None:
        req = urllib.request.Request(
            f"{self.endpoint}/moto-api/reset", data=b"", method="POST"
        )
        with urllib.request.urlopen(req, timeout=60) as resp:
            resp.read()

    def bucket(self, name: str) -> None:
        import boto3

        client = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
            region_name="us-east-1",
        )
        client.create_bucket(Bucket=name)
        client.close()

    def count(self, bucket: str, prefix: str) -> int:
        from carmigrate.storage import S3Store

        with S3Store(
            bucket,
            prefix,
            endpoint_url=self.endpoint,
            access_key_id="bench",
            secret_access_key="bench",
        ) as store:
            return sum(1 for _ in store.list())

    def stop(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def rclone_env(moto: Moto) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    env.update(
        {
            "RCLONE_CONFIG_MOTO_TYPE": "s3",
            "RCLONE_CONFIG_MOTO_PROVIDER": "Other",
            "RCLONE_CONFIG_MOTO_ENDPOINT": moto.endpoint,
            "RCLONE_CONFIG_MOTO_ACCESS_KEY_ID": "bench",
            "RCLONE_CONFIG_MOTO_SECRET_ACCESS_KEY": "bench",
            "RCLONE_CONFIG_MOTO_REGION": "us-east-1",
            "RCLONE_CONFIG_MOTO_FORCE_PATH_STYLE": "true",
        }
    )
    return env


def fresh(path: Path) -> Path:
    """Remove a previous output and flush dirty pages, so every run starts equal."""
    shutil.rmtree(path, ignore_errors=True)
    os.sync()
    return path


def bench_local(
    ds: DataSet, keys: list[str], workers: int, rclone: str | None
) -> list[Row]:
    from carmigrate.storage import LocalStore, copy_object

    rows: list[Row] = []
    scenario = "local → local"
    with tempfile.TemporaryDirectory(dir=DATA, prefix="out-") as tmp:
        out = fresh(Path(tmp) / "out")
        seconds = timed(lambda: run(["cp", "-r", str(ds.path), str(out)]))
        rows.append(Row(scenario, ds, "cp -r", seconds, "no fsync"))
        if rclone:
            fresh(out)
            cmd = [rclone, "copy", "-q", "--transfers", str(workers), "--checkers", str(2 * workers),
                   str(ds.path), str(out)]  # fmt: skip
            rows.append(Row(scenario, ds, f"rclone copy --transfers {workers}", timed(lambda: run(cmd)),
                            "no fsync; checks a hash after each copy"))  # fmt: skip
        else:
            rows.append(Row(scenario, ds, "rclone copy", None, "rclone not installed"))
        src = LocalStore(ds.path)
        variants = [
            ("server-side (copy_file_range)", None, False),
            ("server-side (copy_file_range)", None, True),
            ("streaming", False, False),
            ("streaming", False, True),
        ]
        for label, server_side, fsync in variants:
            dst = LocalStore(fresh(out), fsync=fsync)

            def copy(
                key: str, dst: LocalStore = dst, server_side: bool | None = server_side
            ) -> None:
                copy_object(src, key, dst, server_side=server_side, verify=False)

            seconds = timed(lambda copy=copy: pool_copy(keys, copy, workers))
            assert sum(1 for _ in dst.list()) == ds.count
            note = "fsync file + folder per object" if fsync else "no fsync"
            rows.append(
                Row(
                    scenario,
                    ds,
                    f"carmigrate {label}, {workers} threads",
                    seconds,
                    note,
                )
            )
        fresh(out)
    return rows


def bench_s3(
    ds: DataSet, keys: list[str], workers: int, rclone: str | None, moto: Moto
) -> list[Row]:
    from carmigrate.storage import LocalStore, S3Store, copy_object

    rows: list[Row] = []
    scenario = "local → S3 (moto)"
    moto.reset()
    moto.bucket("bench")
    if rclone:
        cmd = [rclone, "copy", "-q", "--transfers", str(workers), "--checkers", str(2 * workers),
               str(ds.path), "moto:bench/rclone"]  # fmt: skip
        seconds = timed(lambda: run(cmd, env=rclone_env(moto)))
        assert moto.count("bench", "rclone") == ds.count
        rows.append(Row(scenario, ds, f"rclone copy --transfers {workers}", seconds,
                        "single PUT below 200 MiB"))  # fmt: skip
    else:
        rows.append(Row(scenario, ds, "rclone copy", None, "rclone not installed"))
    moto.reset()
    moto.bucket("bench")
    src = LocalStore(ds.path)
    with S3Store(
        "bench",
        "carmigrate",
        endpoint_url=moto.endpoint,
        access_key_id="bench",
        secret_access_key="bench",
        max_pool_connections=2 * workers + 4,
    ) as dst:

        def copy(key: str) -> None:
            copy_object(src, key, dst, verify=False)

        seconds = timed(lambda: pool_copy(keys, copy, workers))
        assert sum(1 for _ in dst.list()) == ds.count
    rows.append(Row(scenario, ds, f"carmigrate copy_object, {workers} threads", seconds,
                    "one PUT up to 8 MiB, else 8 MiB parts; Content-MD5 + SHA-256"))  # fmt: skip
    moto.reset()
    return rows


def bench_memory(total: int, moto: Moto) -> dict[str, float]:
    moto.reset()
    moto.bucket("memory")
    proc = subprocess.run(
        [sys.executable, "-c", UPLOADER, moto.endpoint, "memory", str(total)],
        capture_output=True,
        text=True,
        check=False,
    )
    moto.reset()
    if proc.returncode != 0:
        raise RuntimeError(f"uploader failed: {proc.stderr[-3000:]}")
    result: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def table(rows: list[Row]) -> str:
    lines = [
        "| scenario | data | tool | seconds | MiB/s | objects/s | notes |",
        "| --- | --- | --- | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        data = f"{r.data.count:,} x {human(r.data.size)}"
        if r.seconds is None:
            lines.append(f"| {r.scenario} | {data} | {r.tool} | — | — | — | {r.note} |")
            continue
        mibs = r.data.total / MIB / r.seconds
        ops = r.data.count / r.seconds
        lines.append(
            f"| {r.scenario} | {data} | {r.tool} | {r.seconds:.2f} | {mibs:,.0f} | {ops:,.0f} | {r.note} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="small inputs (a smoke run)"
    )
    parser.add_argument(
        "--workers", type=int, default=8, help="threads / rclone transfers"
    )
    parser.add_argument("--skip-s3", action="store_true", help="only the local copies")
    args = parser.parse_args(argv)

    if args.quick:
        sets = [DataSet("large", 8, MIB), DataSet("small", 200, 16 * KIB)]
        upload = 64 * MIB
    else:
        sets = [DataSet("large", 100, 10 * MIB), DataSet("small", 5000, 16 * KIB)]
        upload = 2048 * MIB
    DATA.mkdir(parents=True, exist_ok=True)
    rclone = shutil.which("rclone")
    version = "not installed"
    if rclone:
        out = subprocess.run(
            [rclone, "version"], capture_output=True, text=True, check=False
        )
        version = out.stdout.splitlines()[0] if out.stdout else "unknown"

    rows: list[Row] = []
    moto = None if args.skip_s3 else Moto()
    memory: dict[str, float] | None = None
    try:
        for ds in sets:
            keys = prepare(ds)
            rows += bench_local(ds, keys, args.workers, rclone)
            if moto is not None:
                rows += bench_s3(ds, keys, args.workers, rclone, moto)
        if moto is not None:
            memory = bench_memory(upload, moto)
    finally:
        if moto is not None:
            moto.stop()

    print(f"{os.cpu_count()} CPUs; rclone: {version}; files in the page cache.")
    print()
    print(table(sorted(rows, key=lambda r: (r.scenario, r.data.count))))
    if memory is not None:
        print()
        print("| streamed multipart upload to moto | part size | parts in flight | seconds "
              "| MiB/s | RSS before upload | peak RSS | target |")  # fmt: skip
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
        verdict = "met" if memory["peak"] < MEMORY_TARGET else "**missed**"
        print(
            f"| {human(upload)} | 8 MiB | 4 | {memory['seconds']:.1f} "
            f"| {upload / MIB / memory['seconds']:,.0f} | {memory['baseline'] / MIB:.0f} MiB "
            f"| {memory['peak'] / MIB:.0f} MiB | < {MEMORY_TARGET // MIB} MiB: {verdict} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
