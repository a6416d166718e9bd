"""`storybot fetch` against a real HTTP server on loopback (a local mirror): range
resume, sha256 verification, and model resolution order."""
import hashlib
import http.server
import os
import shutil
import threading

import pytest

from conftest import data_path, run_cli
from robot.models import fetch
from robot.errors import StorybotError


class _Handler(http.server.BaseHTTPRequestHandler):
    files = {}          # url path -> bytes
    cut_after = {}      # url path -> bytes to send before dropping the connection (once)
    log = []

    def log_message(self, *a):
        pass

    def do_GET(self):
        data = self.files.get(self.path)
        self.log.append((self.path, self.headers.get("Range")))
        if data is None:
            self.send_error(404)
            return
        start = 0
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes="):
            start = int(rng[6:].split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        cut = self.cut_after.pop(self.path, None)
        if cut is not None:
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.connection.shutdown(2)
            return
        self.wfile.write(body)


@pytest.fixture
def mirror():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    _Handler.files, _Handler.cut_after, _Handler.log = {}, {}, []
    yield f"http://127.0.0.1:{srv.server_address[1]}", _Handler
    srv.shutdown()


def test_download_resume_and_verify(tmp_path, mirror):
    base, h = mirror
    blob = os.urandom(300_000)
    h.files["/m.bin"] = blob
    h.cut_after["/m.bin"] = 100_000
    sha = hashlib.sha256(blob).hexdigest()
    dest = str(tmp_path / "m.bin")
    with pytest.raises(StorybotError, match="run the same command again to resume"):
        fetch.download(f"{base}/m.bin", dest, sha, len(blob), stream=open(os.devnull, "w"))
    assert not os.path.exists(dest) and os.path.getsize(dest + ".part") > 0
    fetch.download(f"{base}/m.bin", dest, sha, len(blob), stream=open(os.devnull, "w"))
    assert open(dest, "rb").read() == blob and not os.path.exists(dest + ".part")
    assert h.log[-1][1] is not None and h.log[-1][1].startswith("bytes=")  # the second request resumed


def test_wrong_checksum_is_removed(tmp_path, mirror):
    base, h = mirror
    h.files["/m.bin"] = b"not the model" * 100
    dest = str(tmp_path / "m.bin")
    with pytest.raises(StorybotError, match="wrong sha256"):
        fetch.download(f"{base}/m.bin", dest, "0" * 64, None, stream=open(os.devnull, "w"))
    assert not os.path.exists(dest) and not os.path.exists(dest + ".part")


def test_fetch_command_from_mirror(tmp_path, mirror, tiny):
    """The whole command against a mirror that serves a model under a known name:
    sha256 known for stories260K, so the mirror serves the real one (the package's copy)."""
    base, h = mirror
    h.files["/stories260K/stories260K.bin"] = open(data_path("stories260K.bin"), "rb").read()
    h.files["/stories260K/tok512.bin"] = open(data_path("tok512.bin"), "rb").read()
    r = run_cli("fetch", "stories260K", "--base-url", base, "--dir", tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "stories260K.bin").is_file() and (tmp_path / "tok512.bin").is_file()
    # and a story comes out of the cache with nothing named
    r = run_cli("-i", "Once upon a time", "-n", 20, "-s", 1, env={"STORYBOT_CACHE": str(tmp_path)})
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Once upon a time") and len(r.stdout) > 30


def test_unreachable_mirror_is_one_sentence(tmp_path):
    r = run_cli("fetch", "stories15M", "--base-url", "http://127.0.0.1:9", "--dir", tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "cannot reach" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_resolution_order(tmp_path, tiny, monkeypatch):
    from robot import config
    cfg = config.defaults()
    cache = tmp_path / "cache"
    cache.mkdir()
    # real files: the tokenizer is chosen by the model's vocabulary size, which the kernel reads
    shutil.copyfile(tiny[0], cache / "stories15M.bin")
    shutil.copyfile(tiny[1], cache / "tokenizer.bin")
    monkeypatch.setenv("STORYBOT_CACHE", str(cache))
    monkeypatch.delenv("STORYBOT_MODEL", raising=False)
    assert fetch.resolve(None, None, cfg)[0] == str(cache / "stories15M.bin")
    monkeypatch.setenv("STORYBOT_MODEL", tiny[0])
    assert fetch.resolve(None, tiny[1], cfg)[0] == tiny[0]
    cfg["model"]["path"] = str(cache / "stories15M.bin")
    assert fetch.resolve(None, None, cfg)[0] == str(cache / "stories15M.bin")
    assert fetch.resolve(tiny[0], tiny[1], cfg) == (tiny[0], tiny[1])


def test_builtin_model_is_the_last_resort(tmp_path, monkeypatch, capsys):
    """After the cache comes the package's own stories260K (robot/data); without it, one
    sentence naming the fix."""
    from robot import config
    from robot.errors import StorybotError
    cfg = config.defaults()
    monkeypatch.setenv("STORYBOT_CACHE", str(tmp_path))
    monkeypatch.delenv("STORYBOT_MODEL", raising=False)
    monkeypatch.setattr(fetch, "_told_builtin", False)
    assert fetch.resolve(None, None, cfg) == fetch.BUILTIN
    assert fetch.resolve(None, None, cfg) == fetch.BUILTIN
    assert capsys.readouterr().err.count("storybot fetch stories15M") == 1   # said once per process
    assert [fetch.sha256_file(p) for p in fetch.BUILTIN] == [fetch.KNOWN["stories260K"][2], fetch.TOKENIZERS["tok512.bin"][1]]
    monkeypatch.setattr(fetch, "BUILTIN", (str(tmp_path / "gone.bin"), str(tmp_path / "gone_tok.bin")))
    with pytest.raises(StorybotError, match="no model found.*storybot fetch stories15M"):
        fetch.resolve(None, None, cfg)
