"""Downloads against a local HTTP server on 127.0.0.1: mirrors, checksums, no partial files."""

from __future__ import annotations

import hashlib
import http.server
import socket
import threading
from typing import ClassVar

import pytest

from clihelp import assert_clean_error, cnnlab
from cnnlab.data.download import download
from cnnlab.errors import DownloadError

FILES = {"a.gz": b"first file" * 100, "b.gz": b"second file" * 50}
MD5 = {name: hashlib.md5(body).hexdigest() for name, body in FILES.items()}


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: ClassVar[dict[str, tuple[int, bytes, int | None]]] = {}

    def do_GET(self):
        status, body, claimed = self.routes.get(self.path, (404, b"missing", None))
        self.send_response(status)
        self.send_header("Content-Length", str(claimed if claimed is not None else len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture()
def server():
    """A local server; tests fill ``routes`` with path -> (status, body, claimed length)."""
    routes: dict = {}
    handler = type("H", (_Handler,), {"routes": routes})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", routes
    httpd.shutdown()
    httpd.server_close()


def _serve(routes, prefix, files=FILES, corrupt=(), short=()):
    for name, body in files.items():
        if name in corrupt:
            routes[f"{prefix}/{name}"] = (200, body[::-1], None)
        elif name in short:
            routes[f"{prefix}/{name}"] = (200, body[: len(body) // 2], len(body))
        else:
            routes[f"{prefix}/{name}"] = (200, body, None)


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_good_mirror(server, tmp_path):
    url, routes = server
    _serve(routes, "/m1")
    out = download("mnist", tmp_path, [url + "/m1/"], md5s=MD5, progress=False)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == FILES


def test_corrupt_then_good_mirror(server, tmp_path):
    url, routes = server
    _serve(routes, "/bad", corrupt={"a.gz"})
    _serve(routes, "/good")
    download("mnist", tmp_path, [url + "/bad", url + "/good"], md5s=MD5, progress=False)
    assert (tmp_path / "a.gz").read_bytes() == FILES["a.gz"]
    assert _leftovers(tmp_path) == []


def test_404_then_good_mirror(server, tmp_path):
    url, routes = server
    _serve(routes, "/good")
    download("mnist", tmp_path, [url + "/nothing-here", url + "/good"], md5s=MD5, progress=False)
    assert (tmp_path / "b.gz").read_bytes() == FILES["b.gz"]


def test_all_mirrors_fail_leaves_nothing(server, tmp_path):
    url, routes = server
    _serve(routes, "/bad", corrupt={"a.gz"})
    _serve(routes, "/short", short={"a.gz"})
    mirrors = [url + "/bad", url + "/short", url + "/absent"]
    with pytest.raises(DownloadError) as info:
        download("mnist", tmp_path, mirrors, md5s=MD5, progress=False)
    message = str(info.value)
    assert all(m in message for m in mirrors) and "--data-dir" in message
    assert "checksum mismatch" in message and "connection closed" in message
    assert list(tmp_path.iterdir()) == []  # no partial or temporary file


def test_existing_valid_file_is_not_downloaded_again(server, tmp_path):
    url, routes = server
    (tmp_path / "a.gz").write_bytes(FILES["a.gz"])
    _serve(routes, "/m", files={"b.gz": FILES["b.gz"]})  # a.gz is not even served
    download("mnist", tmp_path, [url + "/m"], md5s=MD5, progress=False)
    assert (tmp_path / "b.gz").read_bytes() == FILES["b.gz"]


def test_cli_download_failure_is_one_clear_line(server, tmp_path):
    url, _ = server
    proc = cnnlab(
        "download",
        "mnist",
        "--data-dir",
        str(tmp_path / "d"),
        "--mirror",
        url + "/void",
        "--no-progress",
        cwd=tmp_path,
    )
    assert_clean_error(proc, 1, "could not download", url + "/void", "--data-dir")
    assert not (tmp_path / "d").exists()  # not even an empty folder


def _unreachable() -> str:
    """A URL on this machine where nothing listens (connection refused: no network)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def test_cli_failed_download_leaves_no_empty_folders(tmp_path):
    proc = cnnlab(
        "download",
        "mnist",
        "--data-dir",
        str(tmp_path / "data" / "mnist"),
        "--mirror",
        _unreachable(),
        "--no-progress",
        cwd=tmp_path,
    )
    assert_clean_error(proc, 1, "could not download", "--data-dir")
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # neither data/ nor data/mnist/


def test_cli_failed_download_into_the_default_folder_removes_what_it_made(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path / "cache"))
    proc = cnnlab("download", "mnist", "--mirror", _unreachable(), "--no-progress", cwd=tmp_path)
    assert_clean_error(proc, 1, "could not download")
    assert not (tmp_path / "cache").exists()


def test_failed_download_keeps_folders_and_files_that_were_there(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    empty = tmp_path / "empty"
    empty.mkdir()
    for target in (folder, empty):
        with pytest.raises(DownloadError):
            download("mnist", target, [_unreachable()], md5s=MD5, progress=False)
    assert (folder / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]
    assert empty.is_dir() and list(empty.iterdir()) == []


def test_files_verified_before_a_failure_stay_and_are_named(server, tmp_path):
    url, routes = server
    _serve(routes, "/m", files={"a.gz": FILES["a.gz"]})  # b.gz is missing on the mirror
    target = tmp_path / "new" / "folder"
    with pytest.raises(DownloadError) as info:
        download("mnist", target, [url + "/m"], md5s=MD5, progress=False)
    assert (target / "a.gz").read_bytes() == FILES["a.gz"]
    assert sorted(p.name for p in target.iterdir()) == ["a.gz"]
    assert "a.gz verified and kept" in str(info.value)
    _serve(routes, "/m")  # the mirror has both now: the second try fetches only b.gz
    download("mnist", target, [url + "/m"], md5s=MD5, progress=False)
    assert {p.name: p.read_bytes() for p in target.iterdir()} == FILES
