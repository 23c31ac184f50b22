"""Bounded memory: a bag of 50,000 files verifies in a few MiB more than an empty run.

The bag is made by the LoC package; verification runs in a child process,
which reports its peak resident set (``VmHWM``) before and after, so
nothing of pytest's own memory is counted. Holding the manifests in Python
dicts, as the LoC package does, breaks the limit (its ``is_valid()`` grew
by about 70 MiB on this bag when measured); carmigrate joins them in a
temporary SQLite file with a 4 MiB cache (it grew by about 10 MiB, and by
12 MiB for a synthetic bag of a million files).
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import bagit

FILES = 50_000
LIMIT_MIB = 20

# VmHWM is the peak of this process's own address space; getrusage's
# ru_maxrss would start at pytest's memory, which Linux carries over fork
# and exec, and hide any growth below it
CHILD = """
import json, sys
from carmigrate.bagit import folder_source, verify_bag

def peak_kib():
    with open("/proc/self/status") as f:
        return next(int(ln.split()[1]) for ln in f if ln.startswith("VmHWM:"))

before = peak_kib()
result = verify_bag(folder_source(sys.argv[1]))
print(json.dumps({"valid": result.valid, "files": result.files,
                  "grew_kib": peak_kib() - before}))
"""


def test_a_bag_of_50000_files_in_bounded_memory(tmp_path: Path) -> None:
    """Peak memory grows by less than 20 MiB while 50,000 files are verified."""
    bag = tmp_path / "bag"
    for i in range(FILES):
        folder = bag / f"d{i // 1000:03d}"
        if i % 1000 == 0:
            folder.mkdir(parents=True)
        (folder / f"f{i:05d}.txt").write_bytes(b"%d\n" % i)
    logging.getLogger("bagit").setLevel(logging.ERROR)
    bagit.make_bag(
        str(bag), {"External-Identifier": "many"}, checksums=["sha256", "sha512"]
    )

    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(bag)],
        capture_output=True,
        text=True,
        check=True,
    )
    report = json.loads(out.stdout)

    assert report["valid"]
    assert report["files"] == FILES
    assert report["grew_kib"] < LIMIT_MIB * 1024, report
