"""Fetch the public datasets from their official sources (urllib; progress; size and zip CRC checks).

- UTD-MHAD: ``Depth.zip``, ``Inertial.zip`` (and optionally ``Skeleton.zip``) from the authors'
  site at UT Dallas (https://personal.utdallas.edu/~kehtar/UTD-MHAD.html).
- FSDD: the GitHub repository's archive (github.com/Jakobovski/free-spoken-digit-dataset).

No checksums are published for these archives, so a download is checked against the
server's ``Content-Length`` (and resumed with a Range request when it ends early) and every
member's CRC is verified with :meth:`zipfile.ZipFile.testzip` before extraction. Extraction
places the files where the readers look for them (``DIR/Depth``, ``DIR/Inertial``,
``DIR/Skeleton``, ``DIR/recordings``) whatever the archive's inner folders are, and never
overwrites an existing file.
"""

from __future__ import annotations

import re
import shutil
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, TextIO

UTD_MHAD_PAGE = "https://personal.utdallas.edu/~kehtar/UTD-MHAD.html"
UTD_MHAD_BASE = "https://personal.utdallas.edu/~kehtar/UTD-MAD/"
FSDD_PAGE = "https://github.com/Jakobovski/free-spoken-digit-dataset"
FSDD_ARCHIVE = "https://github.com/Jakobovski/free-spoken-digit-dataset/archive/refs/heads/master.zip"


class DownloadError(RuntimeError):
    """A download or extraction failed; the message says why and how to get the data by hand."""


@dataclass(frozen=True)
class Archive:
    """One archive to fetch and how to place its members.

    ``place`` maps a member's path inside the zip to a path relative to the dataset folder,
    or None to skip the member.
    """

    name: str
    url: str
    place: Callable[[str], str | None]
    size: int | None = None


_UTD_FILE = re.compile(r"^a\d+_s\d+_t\d+_(depth|inertial|skeleton)\.mat$")
_UTD_FOLDER = {"depth": "Depth", "inertial": "Inertial", "skeleton": "Skeleton"}


def place_utd_member(member: str) -> str | None:
    """Where a UTD-MHAD archive member goes (``Depth/``, ``Inertial/``, ``Skeleton/``), or None to skip it."""
    name = PurePosixPath(member).name
    m = _UTD_FILE.match(name)
    return f"{_UTD_FOLDER[m.group(1)]}/{name}" if m else None


def place_fsdd_member(member: str) -> str | None:
    """Where an FSDD archive member goes (``recordings/NAME.wav``), or None to skip it."""
    p = PurePosixPath(member)
    return f"recordings/{p.name}" if p.parent.name == "recordings" and p.suffix == ".wav" else None


def _utd_mhad_archives(parts: tuple[str, ...]) -> list[Archive]:
    bad = [p for p in parts if p not in _UTD_FOLDER]
    if bad:
        raise ValueError(f"unknown UTD-MHAD parts {bad}; expected among {sorted(_UTD_FOLDER)}")
    return [Archive(f"{_UTD_FOLDER[p]}.zip", UTD_MHAD_BASE + f"{_UTD_FOLDER[p]}.zip", place_utd_member)
            for p in parts]


def _utd_mhad_instructions(dest: Path) -> str:
    return (
        f"download Depth.zip and Inertial.zip from {UTD_MHAD_PAGE} with a browser and run "
        f"`mmg-data download utd-mhad {dest} --from-dir FOLDER_WITH_THE_ZIPS` "
        f"(or unzip them so that {dest}/Depth/*.mat and {dest}/Inertial/*.mat exist)"
    )


def _fsdd_instructions(dest: Path) -> str:
    return (
        f"download the repository archive from {FSDD_PAGE} (Code > Download ZIP) and run "
        f"`mmg-data download fsdd {dest} --from-dir FOLDER_WITH_THE_ZIP` "
        f"(or copy its recordings/ folder to {dest}/recordings)"
    )


@dataclass(frozen=True)
class Source:
    """Where a public data set comes from: its archives (for some parts) and the way by hand."""

    archives: Callable[[tuple[str, ...]], list[Archive]]
    instructions: Callable[[Path], str]


#: The data sets ``mmg-data download`` can fetch, by their ``--dataset`` names.
SOURCES: dict[str, Source] = {
    "utd-mhad": Source(_utd_mhad_archives, _utd_mhad_instructions),
    "fsdd": Source(lambda parts: [Archive("free-spoken-digit-dataset-master.zip", FSDD_ARCHIVE, place_fsdd_member)],
                   _fsdd_instructions),
}


def _source(dataset: str) -> Source:
    if dataset not in SOURCES:
        raise ValueError(f"unknown dataset {dataset!r}; downloadable: {', '.join(SOURCES)}")
    return SOURCES[dataset]


def dataset_archives(dataset: str, parts: tuple[str, ...] = ("depth", "inertial")) -> list[Archive]:
    """The archives of ``"utd-mhad"`` (``parts`` among depth, inertial, skeleton) or ``"fsdd"``."""
    return _source(dataset).archives(parts)


def manual_instructions(dataset: str, dest: Path) -> str:
    """How to get ``dataset`` by hand into ``dest``."""
    return _source(dataset).instructions(dest)


class _Progress:
    def __init__(self, name: str, total: int | None, stream: TextIO | None) -> None:
        self.name, self.total, self.stream = name, total, stream
        self.last = 0.0

    def update(self, done: int, final: bool = False) -> None:
        now = time.monotonic()
        if self.stream is None or (not final and now - self.last < 0.5):
            return
        self.last = now
        if self.total:
            msg = f"{self.name}: {done / 1e6:.1f} / {self.total / 1e6:.1f} MB ({100 * done / self.total:.0f}%)"
        else:
            msg = f"{self.name}: {done / 1e6:.1f} MB"
        self.stream.write("\r" + msg + ("\n" if final else ""))
        self.stream.flush()


def fetch(
    archive: Archive,
    dest_file: Path,
    timeout: float = 30.0,
    cafile: str | None = None,
    progress: TextIO | None = sys.stderr,
    attempts: int = 3,
) -> Path:
    """Download ``archive`` to ``dest_file`` (via ``.partial``, resuming with Range on a short read).

    Raises:
        DownloadError: the source cannot be reached, answers with an error, or the file is
            shorter than announced after ``attempts`` tries.
    """
    partial = dest_file.with_name(dest_file.name + ".partial")
    context = ssl.create_default_context(cafile=cafile) if cafile else None
    host = urllib.parse.urlparse(archive.url).netloc
    expected = archive.size
    for attempt in range(1, attempts + 1):
        offset = partial.stat().st_size if partial.exists() else 0
        headers = {"User-Agent": "mmg-data/0.1"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        try:
            request = urllib.request.Request(archive.url, headers=headers)
            with urllib.request.urlopen(request, timeout=timeout, context=context) as r:
                resumed = offset > 0 and r.status == 206
                length = r.headers.get("Content-Length")
                if length is not None:
                    total = int(length) + (offset if resumed else 0)
                    if expected is not None and total != expected:
                        raise DownloadError(f"{archive.url}: server announces {total} bytes, expected {expected}")
                    expected = total
                done = offset if resumed else 0
                bar = _Progress(archive.name, expected, progress)
                with partial.open("ab" if resumed else "wb") as f:
                    while chunk := r.read(1 << 20):
                        f.write(chunk)
                        done += len(chunk)
                        bar.update(done)
                bar.update(done, final=True)
        except urllib.error.HTTPError as exc:
            raise DownloadError(f"{archive.url}: the server answered HTTP {exc.code} {exc.reason}") from None
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, ssl.SSLCertVerificationError):
                raise DownloadError(
                    f"{archive.url}: TLS certificate check failed ({reason.verify_message}); if the host serves an "
                    "incomplete chain, pass --cafile with a bundle that includes its intermediate certificate"
                ) from None
            raise DownloadError(f"cannot reach {host} ({reason})") from None
        except (TimeoutError, ConnectionError) as exc:
            if attempt == attempts:
                raise DownloadError(f"cannot reach {host} ({exc})") from None
            continue
        size = partial.stat().st_size
        if expected is None or size == expected:
            partial.replace(dest_file)
            return dest_file
        if attempt == attempts:
            raise DownloadError(f"{archive.url}: got {size} of {expected} bytes after {attempts} tries; "
                                f"partial file kept at {partial}")
    raise AssertionError("unreachable")


def extract(zip_path: Path, dest: Path, place: Callable[[str], str | None]) -> list[Path]:
    """Check every member's CRC, then copy the placed members under ``dest`` (existing files kept)."""
    try:
        with zipfile.ZipFile(zip_path) as z:
            bad = z.testzip()
            if bad is not None:
                raise DownloadError(f"{zip_path}: member {bad} is corrupt (CRC mismatch); "
                                    "delete the file and download again")
            written = []
            for info in z.infolist():
                rel = None if info.is_dir() else place(info.filename)
                if rel is None:
                    continue
                target = dest / rel
                if target.exists():
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = target.with_name(target.name + ".part")
                with z.open(info) as src, tmp.open("wb") as out:
                    shutil.copyfileobj(src, out)
                tmp.replace(target)
                written.append(target)
    except zipfile.BadZipFile as exc:
        raise DownloadError(f"{zip_path}: not a valid zip archive ({exc}); delete it and download again") from None
    return written


def download_dataset(
    dataset: str,
    dest: str | Path,
    parts: tuple[str, ...] = ("depth", "inertial"),
    archives: list[Archive] | None = None,
    from_dir: str | Path | None = None,
    keep_archives: bool = False,
    timeout: float = 30.0,
    cafile: str | None = None,
    progress: TextIO | None = sys.stderr,
) -> list[Path]:
    """Fetch (or take from ``from_dir``) and extract a dataset into ``dest``; returns the extracted files.

    Raises:
        DownloadError: with the cause and the manual way to get the data.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    archives = archives if archives is not None else dataset_archives(dataset, parts)
    written: list[Path] = []
    for archive in archives:
        if from_dir is not None:
            zip_path = Path(from_dir) / archive.name
            if not zip_path.is_file():
                raise DownloadError(f"{zip_path}: not found; {manual_instructions(dataset, dest)}")
        else:
            zip_path = dest / archive.name
            if not zip_path.is_file():
                try:
                    fetch(archive, zip_path, timeout=timeout, cafile=cafile, progress=progress)
                except DownloadError as exc:
                    raise DownloadError(f"{exc}. To get the data by hand: "
                                        f"{manual_instructions(dataset, dest)}") from None
        written += extract(zip_path, dest, archive.place)
        if from_dir is None and not keep_archives:
            zip_path.unlink()
    return written
