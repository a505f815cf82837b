"""Weights manager against a real HTTP server on 127.0.0.1 (Range, drops, 404, corrupt bytes)."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import pathlib
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from conftest import PARITY

from simplefold.weights import cache, download, registry

ESM_PT = PARITY / "esm2_t2_d64.pt"
ESM_BYTES = ESM_PT.read_bytes()
ESM_SHA = hashlib.sha256(ESM_BYTES).hexdigest()
ESM_NAME = "esm2_t2_d64_test"


class Server:
    """Serves ``files`` with Range support; per-path behaviour switches simulate failures."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.drop_after: dict[str, int] = {}  # path -> bytes sent before dropping (first request only)
        self.ignore_range: set[str] = set()
        self.corrupt: set[str] = set()
        self.delay: dict[str, float] = {}
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        self.lock = threading.Lock()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                path = self.path
                rng = self.headers.get("Range")
                with server.lock:
                    server.requests.append((path, rng))
                    drop = server.drop_after.pop(path, None)
                if path not in server.files:
                    self.send_error(404)
                    return
                time.sleep(server.delay.get(path, 0.0))
                data = server.files[path]
                if path in server.corrupt:
                    data = data[:100] + bytes([data[100] ^ 0xFF]) + data[101:]
                start = 0
                if rng and path not in server.ignore_range:
                    start = int(rng.split("=")[1].split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                body = data[start:]
                if drop is not None:
                    self.wfile.write(body[:drop])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def gets(self, path: str) -> list[str | None]:
        return [r for p, r in self.requests if p == path]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    s.files["/esm2_t2_d64.pt"] = ESM_BYTES
    yield s
    s.close()


def _write_registry(path: pathlib.Path, entries: list[dict]) -> None:
    path.write_text(json.dumps({"entries": entries}))


@pytest.fixture
def env(tmp_path, server, monkeypatch):
    """Isolated cache and a registry with the tiny ESM2 served by the loopback server."""
    monkeypatch.setenv("SIMPLEFOLD_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SIMPLEFOLD_WEIGHTS_URL", raising=False)
    reg = tmp_path / "registry.json"
    _write_registry(
        reg,
        [
            {"name": ESM_NAME, "kind": "esm2", "url": f"{server.url}/esm2_t2_d64.pt", "filename": "esm2_t2_d64.pt"},
            {
                "name": "esm2_t2_d64_known",
                "kind": "esm2",
                "url": f"{server.url}/esm2_t2_d64.pt",
                "filename": "esm2_t2_d64.pt",
                "sha256": ESM_SHA,
            },
        ],
    )
    monkeypatch.setenv("SIMPLEFOLD_REGISTRY", str(reg))
    return tmp_path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_registry_has_official_urls():
    reg = registry.registry()
    assert reg["simplefold_1.1B"].url == "https://ml-site.cdn-apple.com/models/simplefold/simplefold_1.1B.ckpt"
    assert reg["plddt_module_1.6B"].url == "https://ml-site.cdn-apple.com/models/simplefold/plddt_module_1.6B.ckpt"
    assert reg["esm2_t36_3B_UR50D"].url == "https://dl.fbaipublicfiles.com/fair-esm/models/esm2_t36_3B_UR50D.pt"
    assert reg["esm2_t48_15B_UR50D-contact-regression"].url == (
        "https://dl.fbaipublicfiles.com/fair-esm/regression/esm2_t48_15B_UR50D-contact-regression.pt"
    )
    assert registry.get_entry("esm2_3B").name == "esm2_t36_3B_UR50D"
    assert len([e for e in reg.values() if e.kind == "simplefold"]) == 6


def test_base_url_override(monkeypatch):
    monkeypatch.setenv("SIMPLEFOLD_WEIGHTS_URL", "http://mirror.example/w/")
    assert registry.get_entry("simplefold_100M").effective_url == "http://mirror.example/w/simplefold_100M.ckpt"
    monkeypatch.setenv("SIMPLEFOLD_WEIGHTS_URL_SIMPLEFOLD_1_6B", "http://other.example/x.ckpt")
    assert registry.get_entry("simplefold_1.6B").effective_url == "http://other.example/x.ckpt"


def test_full_download(server, tmp_path):
    out = download.fetch(f"{server.url}/esm2_t2_d64.pt", tmp_path / "f.pt", sha256=ESM_SHA, progress=False)
    assert out.read_bytes() == ESM_BYTES
    assert server.gets("/esm2_t2_d64.pt") == [None]
    assert not (tmp_path / "f.pt.part").exists()


def test_interrupted_download_resumes_with_range(server, tmp_path):
    server.drop_after["/esm2_t2_d64.pt"] = 100_000
    out = download.fetch(f"{server.url}/esm2_t2_d64.pt", tmp_path / "f.pt", backoff=0.01, progress=False)
    assert out.read_bytes() == ESM_BYTES
    assert server.gets("/esm2_t2_d64.pt") == [None, "bytes=100000-"]


def test_server_ignoring_range_restarts(server, tmp_path):
    server.drop_after["/esm2_t2_d64.pt"] = 50_000
    server.ignore_range.add("/esm2_t2_d64.pt")
    out = download.fetch(f"{server.url}/esm2_t2_d64.pt", tmp_path / "f.pt", backoff=0.01, progress=False)
    assert out.read_bytes() == ESM_BYTES
    assert server.gets("/esm2_t2_d64.pt") == [None, "bytes=50000-"]


def test_404_is_not_retried(server, tmp_path):
    with pytest.raises(registry.DownloadError, match="404"):
        download.fetch(f"{server.url}/missing.pt", tmp_path / "m.pt", backoff=0.01, progress=False)
    assert len(server.gets("/missing.pt")) == 1
    assert not (tmp_path / "m.pt").exists()


def test_corrupt_download_is_rejected(server, env):
    server.corrupt.add("/esm2_t2_d64.pt")
    with pytest.raises(registry.ChecksumError, match="does not match"):
        cache.download("esm2_t2_d64_known", progress=False)
    assert not cache.record_path("esm2_t2_d64_known").exists()
    assert not list((env / "cache" / "downloads").glob("esm2_t2_d64.pt*"))
    assert cache.verify("esm2_t2_d64_known") == ["esm2_t2_d64_known: not installed"]


def test_offline_error_names_url_and_import_command(env, monkeypatch):
    url = f"http://127.0.0.1:{_free_port()}/esm2_t2_d64.pt"
    monkeypatch.setenv("SIMPLEFOLD_WEIGHTS_URL_ESM2_T2_D64_TEST", url)
    with pytest.raises(registry.OfflineError) as info:
        cache.download(ESM_NAME, progress=False)
    msg = str(info.value)
    assert url in msg and f"simplefold weights import esm2_t2_d64.pt --name {ESM_NAME}" in msg
    with pytest.raises(registry.NotInstalledError, match=f"--name {ESM_NAME}"):
        cache.resolve(ESM_NAME, offline=True)


def test_download_convert_verify_and_tamper(server, env, pair_tokens):
    from simplefold.weights.esm import load_converted_esm2, load_official_esm2

    out = cache.resolve(ESM_NAME, progress=False)
    record = json.loads(cache.record_path(ESM_NAME).read_text())
    assert record["source"]["sha256"] == ESM_SHA and record["source"]["size"] == len(ESM_BYTES)
    assert cache.verify() == []
    assert cache.resolve(ESM_NAME) == out
    assert len(server.gets("/esm2_t2_d64.pt")) == 1  # resolved from the cache the second time
    assert not (env / "cache" / "downloads" / "esm2_t2_d64.pt").exists()  # source not kept by default
    np.testing.assert_array_equal(
        np.asarray(load_converted_esm2(out)(pair_tokens)), np.asarray(load_official_esm2(ESM_PT)(pair_tokens))
    )
    # flip one byte of one converted file, keeping size and mtime: only verify can see it
    victim = max((p for p in out.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    st = victim.stat()
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))
    problems = cache.verify(ESM_NAME)
    assert len(problems) == 1 and "checksum mismatch" in problems[0] and victim.name in problems[0]
    # a later modification (new mtime) is caught at load time too
    victim.write_bytes(bytes(data))
    with pytest.raises(registry.ChecksumError, match="Refusing to use"):
        cache.resolve(ESM_NAME)


@pytest.fixture(scope="module")
def pair_tokens():
    return np.load(PARITY / "esm2_pair.npz")["esm_tokens"]


def test_import_file_checks_known_checksum(env, tmp_path):
    out = cache.import_file(ESM_PT, "esm2_t2_d64_known")
    assert cache.verify("esm2_t2_d64_known") == []
    assert json.loads(cache.record_path("esm2_t2_d64_known").read_text())["source"]["imported_from"] == str(ESM_PT)
    assert (out / "config.json").is_file()
    bad = tmp_path / "esm2_t2_d64.pt"
    bad.write_bytes(ESM_BYTES[:-1] + bytes([ESM_BYTES[-1] ^ 0xFF]))
    with pytest.raises(registry.ChecksumError, match="does not match the registry"):
        cache.import_file(bad, "esm2_t2_d64_known")
    assert cache.verify("esm2_t2_d64_known") == []  # the earlier install is untouched


_DOWNLOAD_SCRIPT = (
    "import logging, sys; logging.basicConfig(level=logging.INFO); from simplefold.weights import cache; "
    "print(cache.download(sys.argv[1], progress=False))"
)


def test_concurrent_download_waits_on_lock(server, env):
    server.delay["/esm2_t2_d64.pt"] = 1.5  # keep the first process inside the lock for a while
    cmd = [sys.executable, "-c", _DOWNLOAD_SCRIPT, ESM_NAME]
    e = dict(os.environ, JAX_PLATFORMS="cpu")
    procs = [subprocess.Popen(cmd, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert outs[0][0].strip() == outs[1][0].strip() == str(cache.converted_path(ESM_NAME))
    assert len(server.gets("/esm2_t2_d64.pt")) == 1
    assert sum("waiting for another process" in err for _, err in outs) == 1, outs
    assert cache.verify(ESM_NAME) == []


def test_cli_download_verify_and_load(server, env):
    from simplefold.weights.esm import load_official_esm2

    e = dict(os.environ, JAX_PLATFORMS="cpu")
    run = lambda *a: subprocess.run([sys.executable, "-m", "simplefold", *a], env=e, capture_output=True, text=True)  # noqa: E731
    dl = run("weights", "download", ESM_NAME, "--no-progress")
    assert dl.returncode == 0, dl.stderr
    out = pathlib.Path(dl.stdout.strip().splitlines()[-1])
    ver = run("weights", "verify")
    assert ver.returncode == 0 and "ok: 1 installed entry verified" in ver.stdout
    lst = run("weights", "list")
    assert lst.returncode == 0 and f"{ESM_NAME}" in lst.stdout and "simplefold_3B" in lst.stdout
    assert load_official_esm2(out).config.num_layers == 2
    bad = run("weights", "download", "no_such_weights")
    assert bad.returncode == 2 and "unknown weights" in bad.stderr


def test_cli_folding_model_end_to_end(server, env, monkeypatch):
    from simplefold.weights import checkpoints

    summary = json.loads((PARITY / "folding_d64_h4.json").read_text())["summary"]
    server.files["/folding_d64_h4.ckpt"] = (PARITY / "folding_d64_h4.ckpt").read_bytes()
    reg = env / "registry2.json"
    _write_registry(reg, [{"name": "folding_tiny", "kind": "simplefold", "url": f"{server.url}/folding_d64_h4.ckpt",
                           "filename": "folding_d64_h4.ckpt", "arch": summary}])
    monkeypatch.setenv("SIMPLEFOLD_REGISTRY", str(reg))
    e = dict(os.environ, JAX_PLATFORMS="cpu")
    dl = subprocess.run([sys.executable, "-m", "simplefold", "weights", "download", "folding_tiny", "--no-progress"],
                        env=e, capture_output=True, text=True)
    assert dl.returncode == 0, dl.stderr
    assert cache.verify("folding_tiny") == []
    model = checkpoints.load_converted(cache.resolve("folding_tiny", offline=True))
    assert model.module.config.hidden_size == summary["hidden_size"]


def test_cli_import_of_a_bad_file_is_one_line_naming_it(env, tmp_path):
    """Truncated file, random bytes, a pickle that would run code: exit 2 and one line naming the
    file, no traceback, nothing installed (the code of the malicious pickle never runs)."""
    import io
    import pickle
    import zipfile

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'PWNED'}",))

    good = (PARITY / "esm2_t2_d64.pt").read_bytes()
    evil = io.BytesIO()
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps(Evil()))
        z.writestr("archive/version", "3\n")
    cases = {"truncated": good[: len(good) // 3], "random": os.urandom(4096), "malicious": evil.getvalue()}
    e = dict(os.environ, JAX_PLATFORMS="cpu")
    for kind, data in cases.items():
        path = tmp_path / kind / "esm2_t2_d64.pt"
        path.parent.mkdir()
        path.write_bytes(data)
        p = subprocess.run([sys.executable, "-m", "simplefold", "weights", "import", str(path), "--name", ESM_NAME],
                           env=e, capture_output=True, text=True)
        errors = [ln for ln in p.stderr.splitlines() if ln.startswith("ERROR")]
        assert p.returncode == 2, (kind, p.stderr)
        assert "Traceback" not in p.stderr and len(errors) == 1 and str(path) in errors[0], (kind, p.stderr)
    assert not (tmp_path / "PWNED").exists()
    assert "no" in subprocess.run([sys.executable, "-m", "simplefold", "weights", "list"], env=e,
                                  capture_output=True, text=True).stdout.split(ESM_NAME, 1)[1].split("\n", 1)[0]


def test_download_without_a_terminal_logs_progress(server, tmp_path, monkeypatch, caplog):
    """No terminal (a log file, a batch job): the bar is off and progress lines are logged every
    10 % of the file, each with the bytes so far and the total."""
    import logging

    monkeypatch.setattr(download, "_CHUNK", 16 * 1024)
    with caplog.at_level(logging.INFO, logger="simplefold.weights.download"):
        download.fetch(f"{server.url}/esm2_t2_d64.pt", tmp_path / "f.pt", progress=True)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("f.pt: ")]
    assert 8 <= len(lines) <= 12, lines
    percents = [int(m.split("(")[1].split(" %")[0]) for m in lines]
    assert percents == sorted(percents) and percents[-1] == 100
    assert all(" of " in m for m in lines) and "min left" in lines[0]
    caplog.clear()
    download.fetch(f"{server.url}/esm2_t2_d64.pt", tmp_path / "g.pt", progress=False)
    assert not [r for r in caplog.records if r.getMessage().startswith("g.pt: ")]


def test_sha256_recorded_at_first_download_then_enforced_and_user_pins(server, env):
    """No published checksum: the first download's sha256/size are recorded and a later download
    of other bytes is refused; --sha256 pins (a wrong one is refused, nothing installed);
    verify says which entries were never pinned."""
    cache.download(ESM_NAME, progress=False)
    pins = json.loads((env / "cache" / cache.PINS_FILE).read_text())
    assert pins[ESM_NAME]["sha256"] == ESM_SHA and pins[ESM_NAME]["size"] == len(ESM_BYTES)
    assert pins[ESM_NAME]["pinned_by"] == cache.PIN_FIRST_USE
    assert cache.pin_status() == {ESM_NAME: cache.PIN_FIRST_USE}

    # the server now serves other bytes (same size): a forced re-download is refused, the install kept
    server.files["/esm2_t2_d64.pt"] = ESM_BYTES[:-1] + bytes([ESM_BYTES[-1] ^ 0xFF])
    with pytest.raises(registry.ChecksumError, match="first download"):
        cache.download(ESM_NAME, force=True, progress=False)
    assert cache.verify(ESM_NAME) == []
    server.files["/esm2_t2_d64.pt"] = ESM_BYTES

    e = dict(os.environ, JAX_PLATFORMS="cpu")
    run = lambda *a: subprocess.run([sys.executable, "-m", "simplefold", *a], env=e, capture_output=True, text=True)  # noqa: E731
    ver = run("weights", "verify")
    assert ver.returncode == 0 and f"{ESM_NAME}: sha256 recorded at first download, never pinned" in ver.stdout
    assert "1 never pinned" in ver.stdout
    wrong = "0" * 64
    bad = run("weights", "download", ESM_NAME, "--sha256", wrong, "--no-progress")
    assert bad.returncode == 2 and wrong in bad.stderr and "Traceback" not in bad.stderr
    bad = run("weights", "download", ESM_NAME, "--sha256", "xyz", "--no-progress")
    assert bad.returncode == 2 and "64 hexadecimal digits" in bad.stderr
    ok = run("weights", "download", ESM_NAME, "--sha256", ESM_SHA.upper(), "--no-progress")
    assert ok.returncode == 0, ok.stderr
    assert cache.pin_status() == {ESM_NAME: cache.PIN_USER}
    ver = run("weights", "verify")
    assert ver.returncode == 0 and f"{ESM_NAME}: source sha256 pinned by the user" in ver.stdout
    assert "never pinned" not in ver.stdout
    # a registry checksum wins over anything the user says
    cache.import_file(ESM_PT, "esm2_t2_d64_known")
    assert cache.pin_status()["esm2_t2_d64_known"] == cache.PIN_REGISTRY
    with pytest.raises(registry.ChecksumError, match="contradicts the registry"):
        cache.import_file(ESM_PT, "esm2_t2_d64_known", sha256=wrong)


def test_weights_list_columns_line_up(env):
    from simplefold.cli import main

    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["weights", "list"]) == 0
    rows = [ln for ln in buf.getvalue().splitlines() if "http" in ln or ln.startswith("name")]
    assert len(rows) >= 10
    starts = {ln.index("http") if "http" in ln else ln.index("url") for ln in rows}
    assert len(starts) == 1, buf.getvalue()  # every url starts in the same column
    longest = max(len(e) for e in registry.registry())
    assert longest > 34  # the old fixed width was too narrow
