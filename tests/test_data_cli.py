"""mmg-data: download from a loopback HTTP server, failure messages, info and import."""

from __future__ import annotations

import http.server
import io
import socket
import threading
import zipfile
from pathlib import Path
from typing import Iterator

import pytest

from trainer.data.cli import main
from trainer.data.download import Archive, DownloadError, download_dataset, fetch, place_utd_member


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def http_dir(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A loopback HTTP server over a temporary folder; stopped at teardown."""
    root = tmp_path / "www"
    root.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **k):
            super().__init__(*a, directory=str(root), **k)

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _utd_zip(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("Depth/a1_s1_t1_depth.mat", b"depth-bytes")
        z.writestr("Depth/a2_s3_t4_depth.mat", b"more")
        z.writestr("Depth/readme.txt", b"ignored")


def test_download_extracts_into_reader_layout(http_dir, tmp_path: Path) -> None:
    url, www = http_dir
    _utd_zip(www / "Depth.zip")
    progress = io.StringIO()
    out = tmp_path / "utd"
    files = download_dataset("utd-mhad", out, archives=[Archive("Depth.zip", f"{url}/Depth.zip", place_utd_member)],
                             progress=progress)
    assert sorted(p.relative_to(out).as_posix() for p in files) == ["Depth/a1_s1_t1_depth.mat",
                                                                    "Depth/a2_s3_t4_depth.mat"]
    assert (out / "Depth" / "a1_s1_t1_depth.mat").read_bytes() == b"depth-bytes"
    assert not (out / "Depth.zip").exists()  # archive removed after extraction
    assert "Depth.zip:" in progress.getvalue() and "(100%)" in progress.getvalue()


def test_size_mismatch_and_corrupt_zip(http_dir, tmp_path: Path) -> None:
    url, www = http_dir
    _utd_zip(www / "Depth.zip")
    size = (www / "Depth.zip").stat().st_size
    with pytest.raises(DownloadError, match=f"announces {size} bytes, expected {size + 1}"):
        fetch(Archive("Depth.zip", f"{url}/Depth.zip", place_utd_member, size=size + 1), tmp_path / "x.zip",
              progress=None)
    blob = bytearray((www / "Depth.zip").read_bytes())
    blob[blob.index(b"depth-bytes")] ^= 0xFF  # flip a stored byte: CRC must catch it
    (www / "Bad.zip").write_bytes(bytes(blob))
    with pytest.raises(DownloadError, match="a1_s1_t1_depth.mat is corrupt"):
        download_dataset("utd-mhad", tmp_path / "o", archives=[Archive("Bad.zip", f"{url}/Bad.zip", place_utd_member)],
                         progress=None)


def test_unreachable_source_says_how_to_get_data(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    port = _free_port()
    rc = main(["download", "fsdd", str(tmp_path / "fsdd"), "--url", f"http://127.0.0.1:{port}/fsdd.zip",
               "--timeout", "5"])
    err = capsys.readouterr().err
    assert rc == 1
    assert f"cannot reach 127.0.0.1:{port}" in err
    assert "by hand" in err and "github.com/Jakobovski/free-spoken-digit-dataset" in err
    rc = main(["download", "utd-mhad", str(tmp_path / "u"), "--parts", "inertial", "--url", f"http://127.0.0.1:{port}/I.zip"])
    err = capsys.readouterr().err
    assert rc == 1 and "kehtar/UTD-MHAD.html" in err


def test_from_dir_uses_local_archives(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    zips = tmp_path / "zips"
    zips.mkdir()
    _utd_zip(zips / "Depth.zip")
    assert main(["download", "utd-mhad", str(tmp_path / "u"), "--parts", "depth", "--from-dir", str(zips)]) == 0
    assert "2 new files" in capsys.readouterr().out
    assert (zips / "Depth.zip").exists()  # the user's own archive is never deleted
    assert main(["download", "utd-mhad", str(tmp_path / "u"), "--parts", "inertial", "--from-dir", str(zips)]) == 1
    assert "Inertial.zip: not found" in capsys.readouterr().err


def test_info_counts(utd_mhad_dir: Path, fsdd_dir: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["info", "fsdd", str(fsdd_dir)]) == 0
    out = capsys.readouterr().out
    assert "2000 clips, 10 classes, 4 subjects" in out
    assert "george       500" in out
    assert main(["info", "utd-mhad", str(utd_mhad_dir)]) == 0
    out = capsys.readouterr().out
    assert "646 clips, 27 classes, 6 subjects" in out
    assert "squat" in out


def test_import_cli(utd_mhad_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["import", "utd-mhad", str(utd_mhad_dir), str(tmp_path / "s"), "--subjects", "2",
                 "--actions", "26"]) == 0
    assert "wrote 4 session folders" in capsys.readouterr().out
    assert main(["info", "sessions", str(tmp_path / "s")]) == 0
    out = capsys.readouterr().out
    assert "4 clips, 1 classes, 1 subjects" in out and "lunge" in out
    assert main(["info", "sessions", str(tmp_path / "s"), "--check"]) == 0
    assert "decoded 4 of 4; 0 bad" in capsys.readouterr().out
    assert main(["import", "utd-mhad", str(tmp_path / "nowhere"), str(tmp_path / "s")]) == 1
    assert "not a UTD-MHAD folder" in capsys.readouterr().err
