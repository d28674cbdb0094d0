#!/usr/bin/python3
"""userapp: a small key-value HTTP service of the kind a user brings to a cluster.

It is here to show (and test) that fallover works with an application it did not write:
the cluster runs it through its own start/stop/monitor scripts, and start.sh daemonizes it
the classic way (fork, setsid, fork), so nothing but the PID file it writes says where it is.

    GET /health      200, the node name (also in every reply's X-Fallover-Node header)
    PUT /kv/KEY      200 once the value is on disk (file fsync'ed, renamed, directory fsync'ed)
    GET /kv/KEY      200 with the value, 404 if unknown, 503 with the errno name if the disk fails

Configuration comes from the environment the agent exports: FALLOVER_DATA_DIR (the shared
filesystem), FALLOVER_PORT, FALLOVER_NODE. Standard library only.
"""

import errno
import http.server
import os
import sys
import tempfile

NODE = os.environ.get("FALLOVER_NODE") or os.uname().nodename
PORT = int(os.environ.get("FALLOVER_PORT") or 8080)
SHARED = os.environ.get("FALLOVER_DATA_DIR", "")
STORE = os.path.join(SHARED, "userapp")


def say(msg):
    sys.stderr.write("userapp[%d] %s: %s\n" % (os.getpid(), NODE, msg))
    sys.stderr.flush()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the probe reuses its connection
    wbufsize = 65536  # headers and body leave in one send (flushed after each request)

    def log_message(self, fmt, *args):  # no line per request: the probe asks 100 times a second
        pass

    def reply(self, code, body=b""):
        self.send_response(code)
        self.send_header("X-Fallover-Node", NODE)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def key_path(self):
        key = self.path[len("/kv/"):] if self.path.startswith("/kv/") else ""
        if not key or "/" in key or key.startswith("."):
            return None
        return os.path.join(STORE, key)

    def disk_error(self, exc):
        self.reply(503, (errno.errorcode.get(exc.errno or 0, "EIO") + "\n").encode())

    def do_GET(self):
        if self.path == "/health":
            try:
                os.stat(STORE)
            except OSError as exc:
                return self.disk_error(exc)
            return self.reply(200, NODE.encode() + b"\n")
        path = self.key_path()
        if path is None:
            return self.reply(404, b"unknown path\n")
        try:
            with open(path, "rb") as f:
                return self.reply(200, f.read())
        except FileNotFoundError:
            return self.reply(404, b"no such key\n")
        except OSError as exc:
            return self.disk_error(exc)

    def do_PUT(self):
        path = self.key_path()
        try:
            length = int(self.headers.get("Content-Length") or "")
        except ValueError:
            return self.reply(411, b"Content-Length required\n")
        value = self.rfile.read(length)
        if path is None:
            return self.reply(404, b"unknown path\n")
        try:
            fd, tmp = tempfile.mkstemp(dir=STORE, prefix=".new-")
            with os.fdopen(fd, "wb") as f:
                f.write(value)
                os.fsync(f.fileno())
            os.rename(tmp, path)
            dfd = os.open(STORE, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError as exc:
            return self.disk_error(exc)
        self.reply(200, b"stored\n")


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if not isinstance(exc, OSError):  # a client hanging up is routine during fallover tests
            say("request from %s failed: %r" % (client_address[0], exc))


def daemonize(pidfile):
    """fork, setsid, fork: the server leaves the start script's process group and session.

    The first process exits once the PID file is written, so start.sh finds the server at once
    (the socket listens already: connections wait in its backlog until serve_forever runs).
    """
    ready_r, ready_w = os.pipe()
    if os.fork():
        os.close(ready_w)
        ok = os.read(ready_r, 1) == b"1"
        os._exit(0 if ok else 1)
    os.close(ready_r)
    os.setsid()
    if os.fork():
        os._exit(0)
    tmp = pidfile + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % os.getpid())
    os.rename(tmp, pidfile)
    os.write(ready_w, b"1")
    os.close(ready_w)


def main(argv):
    if not os.path.isdir(SHARED):  # never write to the node's own disk instead of the shared one
        say("FALLOVER_DATA_DIR %r is not a directory; is the shared disk mounted?" % SHARED)
        return 1
    os.makedirs(STORE, exist_ok=True)
    server = Server(("0.0.0.0", PORT), Handler)
    if len(argv) == 3 and argv[1] == "--daemon":
        daemonize(argv[2])
    say("listening on port %d, keys in %s" % (PORT, STORE))
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
