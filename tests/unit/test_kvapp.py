"""Unit tests for the sample HA app, run as a real process under the system /usr/bin/python3."""

import errno
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

KVAPP = Path(__file__).resolve().parents[2] / "harness" / "agents" / "kvapp.py"
PYTHON = "/usr/bin/python3"  # what Pacemaker uses; proves the app needs only the stdlib
NODE = "testnode"

pytestmark = pytest.mark.skipif(not os.path.exists(PYTHON), reason="needs /usr/bin/python3")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class App:
    """A kvapp process we started; stopped by its own PID only."""

    def __init__(self, tmp_path):
        self.data = tmp_path / "data"
        self.data.mkdir()
        self.pidfile = tmp_path / "kvapp.pid"
        self.port = free_port()
        self.log = open(tmp_path / "kvapp.log", "wb")
        self.proc = subprocess.Popen(
            [PYTHON, str(KVAPP), "--port", str(self.port), "--bind", "127.0.0.1",
             "--pidfile", str(self.pidfile)],
            env=dict(os.environ, FALLOVER_DATA_DIR=str(self.data), FALLOVER_NODE=NODE),
            stdout=self.log, stderr=self.log, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "kvapp exited: " + self.logtext()
            try:
                if self.request("GET", "/health")[0] == 200:
                    return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("kvapp never became healthy: " + self.logtext())

    def logtext(self):
        self.log.flush()
        return Path(self.log.name).read_text()

    def request(self, method, path, body=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path, body=body)
            r = conn.getresponse()
            return r.status, r.read(), r
        finally:
            conn.close()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@pytest.fixture
def app(tmp_path):
    a = App(tmp_path)
    yield a
    a.stop()


def test_start_creates_kv_dir_marker_and_pidfile(app):
    assert (app.data / "kv").is_dir()
    assert (app.data / ".fallover-kv").is_file()
    assert app.pidfile.read_text().strip() == str(app.proc.pid)


def test_put_get_round_trip(app):
    status, body, r = app.request("PUT", "/kv/alpha-1.x", b"hello\x00world")
    assert status == 201
    assert json.loads(body) == {"key": "alpha-1.x", "node": NODE}
    status, body, r = app.request("GET", "/kv/alpha-1.x")
    assert (status, body) == (200, b"hello\x00world")


def test_put_overwrites(app):
    app.request("PUT", "/kv/k", b"one")
    app.request("PUT", "/kv/k", b"two")
    assert app.request("GET", "/kv/k")[:2] == (200, b"two")


def test_put_is_on_disk_after_ack(app):
    assert app.request("PUT", "/kv/durable", b"v1")[0] == 201
    assert (app.data / "kv" / "durable").read_bytes() == b"v1"
    leftovers = [p.name for p in (app.data / "kv").iterdir() if p.name.startswith(".tmp")]
    assert leftovers == []


def test_missing_key_is_404(app):
    assert app.request("GET", "/kv/nope")[0] == 404
    assert app.request("GET", "/nowhere")[0] == 404


@pytest.mark.parametrize("key", ["bad%20key", "a$b", "..", ".", "x" * 129, "a/b"])
def test_bad_key_is_400(app, key):
    assert app.request("PUT", "/kv/" + key, b"v")[0] == 400
    assert app.request("GET", "/kv/" + key)[0] == 400


def test_health_names_node(app):
    status, body, r = app.request("GET", "/health")
    assert status == 200
    assert body.decode().strip() == NODE
    assert r.getheader("X-Fallover-Node") == NODE


def test_every_response_names_node(app):
    for method, path in [("GET", "/kv/nope"), ("GET", "/kv/a$b"), ("POST", "/kv/x")]:
        assert app.request(method, path, body=b"")[2].getheader("X-Fallover-Node") == NODE


def test_storage_failure_is_503_never_ack(app):
    # root ignores permissions, so break the store structurally: kv/ becomes a file.
    app.request("PUT", "/kv/before", b"v")
    shutil.rmtree(app.data / "kv")
    (app.data / "kv").write_bytes(b"not a directory")
    status, body, r = app.request("PUT", "/kv/after", b"v")
    assert status == 503
    assert json.loads(body)["error"] == "ENOTDIR"
    assert app.request("GET", "/kv/before")[0] == 503
    assert app.request("GET", "/health")[0] == 503
    assert r.getheader("X-Fallover-Node") == NODE
    assert "ERROR put after: ENOTDIR" in app.logtext()


def test_vanished_kv_dir_is_503_not_404(app):
    shutil.rmtree(app.data / "kv")
    assert app.request("GET", "/kv/anything")[0] == 503


def test_missing_marker_makes_health_fail(app):
    (app.data / ".fallover-kv").unlink()
    assert app.request("GET", "/health")[0] == 503


def test_keep_alive_reuses_connection(app):
    conn = http.client.HTTPConnection("127.0.0.1", app.port, timeout=10)
    try:
        conn.request("PUT", "/kv/ka", body=b"1")
        r1 = conn.getresponse()
        r1.read()
        sock = conn.sock
        conn.request("GET", "/kv/ka")
        r2 = conn.getresponse()
        assert (r1.status, r2.status, r2.read()) == (201, 200, b"1")
        assert conn.sock is sock and sock is not None  # no reconnect happened
        assert r2.getheader("Content-Length") == "1"
    finally:
        conn.close()


def test_keep_alive_survives_rejected_put(app):
    """A 400 PUT must still consume its body, or the next request on the socket breaks."""
    conn = http.client.HTTPConnection("127.0.0.1", app.port, timeout=10)
    try:
        conn.request("PUT", "/kv/a$b", body=b"some body bytes")
        r = conn.getresponse()
        r.read()
        conn.request("GET", "/health")
        assert (r.status, conn.getresponse().status) == (400, 200)
    finally:
        conn.close()


def test_sigterm_exits_cleanly_and_removes_pidfile(app):
    app.proc.send_signal(signal.SIGTERM)
    assert app.proc.wait(timeout=10) == 0
    assert not app.pidfile.exists()
    assert "ERROR" not in app.logtext()


def test_refuses_missing_data_dir(tmp_path):
    proc = subprocess.run([PYTHON, str(KVAPP), "--data-dir", str(tmp_path / "absent"),
                           "--port", str(free_port()), "--bind", "127.0.0.1"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1
    assert "cannot start" in proc.stderr
    assert not (tmp_path / "absent").exists()


def load_kvapp():
    import importlib.util

    spec = importlib.util.spec_from_file_location("kvapp_under_test", KVAPP)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("sync", [True, False])
def test_ack_before_fsync_writes_without_any_fsync(tmp_path, monkeypatch, sync):
    """The broken mode (--ack-before-fsync) fallover's own tests use: the value is written, never fsynced."""
    kvapp = load_kvapp()
    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real(fd)))
    store = kvapp.Store(str(tmp_path), sync=sync)
    store.init()
    synced.clear()
    store.put("k", b"v")
    assert store.get("k") == b"v"
    assert len(synced) == (2 if sync else 0)  # the file, then its directory entry
    args = kvapp.parse_args(["--data-dir", str(tmp_path)] + ([] if sync else ["--ack-before-fsync"]))
    assert args.ack_before_fsync is not sync


def fake_free_blocks(monkeypatch, blocks):
    """os.statvfs with f_bfree as given (and changed through the returned dict's "blocks")."""
    real = os.statvfs
    free = {"blocks": blocks}

    class Fake:
        def __init__(self, st):
            self.st = st

        def __getattr__(self, name):
            return free["blocks"] if name == "f_bfree" else getattr(self.st, name)

    monkeypatch.setattr(os, "statvfs", lambda p: Fake(real(p)))
    return free


def test_a_put_leaves_the_reserve_to_the_cluster_monitor(tmp_path, monkeypatch):
    """Below RESERVE_BLOCKS free blocks a PUT is refused with ENOSPC before it allocates anything, so the
    block a Filesystem monitor frees by truncating its status file on a full disk stays the monitor's."""
    kvapp = load_kvapp()
    store = kvapp.Store(str(tmp_path))
    store.init()
    store.kept_back = 0  # the faked f_bfree below is what a write may get
    free = fake_free_blocks(monkeypatch, kvapp.RESERVE_BLOCKS)
    store.put("k", b"v")  # at the reserve: still allowed
    free["blocks"] = kvapp.RESERVE_BLOCKS - 1
    with pytest.raises(OSError) as e:
        store.put("k2", b"v")
    assert e.value.errno == errno.ENOSPC and kvapp.errno_name(e.value) == "ENOSPC"
    assert store.get("k2") is None and os.listdir(tmp_path / "kv") == ["k"]  # nothing allocated, not even a temp


def test_the_reserve_does_not_count_ext4s_reserved_clusters(tmp_path, monkeypatch):
    """statvfs's f_bfree counts the clusters ext4 keeps for its metadata, which no write gets: on the VMs' disk
    filled by disk_full it still said 1310 blocks free, the reserve never held, and a PUT took the block the
    Filesystem monitor had just freed (disk_full-shared, 2026-12-01)."""
    kvapp = load_kvapp()
    store = kvapp.Store(str(tmp_path))
    store.init()
    assert store.kept_back == kvapp.kept_back(str(tmp_path / "kv")) >= 0
    store.kept_back = 1310
    free = fake_free_blocks(monkeypatch, 1310 + kvapp.RESERVE_BLOCKS - 1)
    with pytest.raises(OSError) as e:
        store.put("k", b"v")
    assert e.value.errno == errno.ENOSPC
    free["blocks"] += 1
    store.put("k", b"v")
    assert store.get("k") == b"v"


def test_kept_back_reads_the_filesystems_own_count(tmp_path):
    kvapp = load_kvapp()
    st = os.stat(tmp_path)
    dev = os.path.basename(os.path.realpath(f"/sys/dev/block/{os.major(st.st_dev)}:{os.minor(st.st_dev)}"))
    sysfs = f"/sys/fs/ext4/{dev}/reserved_clusters"
    assert kvapp.kept_back(str(tmp_path)) == (int(open(sysfs).read()) if os.path.exists(sysfs) else 0)


# What kvapp may not import: it starts in every takeover, on the node taking over (seconds on a TCG guest).
HEAVY = {"http.server", "http.client", "ssl", "email", "json", "re", "argparse", "tempfile", "urllib.parse"}


def test_kvapp_imports_nothing_heavy():
    proc = subprocess.run([PYTHON, "-S", "-X", "importtime", str(KVAPP), "--help"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and "--data-dir" in proc.stdout
    imported = {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines()
                if line.startswith("import time:") and "[us]" not in line}
    assert "socketserver" in imported  # the measurement works
    assert not imported & HEAVY, sorted(imported & HEAVY)


@pytest.mark.parametrize("value", ['plain', 'quote " and \\ backslash', "new\nline\ttab\x00nul\x1f", "naïve ✓ 😀",
                                   "bad name \udcff"])
def test_json_text_is_what_json_reads(value):
    kvapp = load_kvapp()
    text = kvapp.json_text({"error": value, "node": "n1"})
    assert json.loads(text.encode("utf-8", "backslashreplace")) == {"error": value, "node": "n1"}


def raw(app, data):
    """Send raw bytes, read until the server closes or 2 s of silence; the whole answer."""
    with socket.create_connection(("127.0.0.1", app.port), timeout=10) as s:
        s.sendall(data)
        s.settimeout(2)
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except TimeoutError:
            out += b"<open>"
        return out


def test_bad_request_line_is_400_and_closes(app):
    out = raw(app, b"NONSENSE\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400 ") and b"Connection: close" in out and not out.endswith(b"<open>")
    assert b"X-Fallover-Node: " + NODE.encode() in out


def test_unknown_method_is_501(app):
    out = raw(app, b"DELETE /kv/a HTTP/1.1\r\nHost: x\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 501 ") and not out.endswith(b"<open>")


def test_http10_closes_unless_keep_alive_and_11_keeps_open(app):
    assert raw(app, b"GET /health HTTP/1.0\r\n\r\n").endswith(NODE.encode() + b"\n")
    assert raw(app, b"GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").endswith(b"<open>")
    assert raw(app, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").endswith(b"<open>")
    assert raw(app, b"GET /health HTTP/1.1\r\nConnection: close\r\n\r\n").endswith(NODE.encode() + b"\n")


def test_absolute_target_and_query_are_the_path(app):
    out = raw(app, b"GET http://127.0.0.1/health?x=1 HTTP/1.0\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200 ") and out.endswith(NODE.encode() + b"\n")


def test_head_has_length_but_no_body(app):
    assert app.request("PUT", "/kv/h", body=b"12345")[0] == 201
    out = raw(app, b"HEAD /kv/h HTTP/1.0\r\n\r\n")
    assert b"Content-Length: 5\r\n" in out and out.endswith(b"\r\n\r\n")


@pytest.mark.parametrize("argv", [["--bogus"], ["--port"], ["--port", "x"], []])
def test_bad_command_line_exits_2(tmp_path, argv):
    env = {k: v for k, v in os.environ.items() if not k.startswith("FALLOVER_")}
    if argv:
        argv = ["--data-dir", str(tmp_path)] + argv
    proc = subprocess.run([PYTHON, str(KVAPP), *argv], capture_output=True, text=True, timeout=30, env=env)
    assert proc.returncode == 2 and "error:" in proc.stderr and "usage:" in proc.stderr


def test_expect_100_continue_gets_its_interim_answer(app):
    with socket.create_connection(("127.0.0.1", app.port), timeout=10) as s:
        s.sendall(b"PUT /kv/e HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
        assert s.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"  # before the body: the client waits for it
        s.sendall(b"abc")
        assert s.recv(1000).startswith(b"HTTP/1.1 201 ")
    assert app.request("GET", "/kv/e")[1] == b"abc"
