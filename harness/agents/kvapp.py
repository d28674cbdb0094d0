#!/usr/bin/python3 -S
"""Sample HA application: a durable HTTP key-value store on the cluster's shared filesystem.

Standard library only, because Pacemaker runs it with the system python outside any
virtualenv.  A PUT is acknowledged only after the value, and the directory entry that
names it, have been fsync'ed, so an acknowledged write must survive any failover.
Any OSError (EIO when the disk is pulled, ENOSPC, EROFS ...) yields 503, never an ack.

``--ack-before-fsync`` breaks that on purpose, for fallover's own tests: a PUT is acknowledged
once written, without fsync (what many applications do), so a power cut loses it.
"""

import errno
import os
import signal
import socket
import socketserver
import stat
import sys
import threading
import time

# Not http.server, argparse, json, tempfile or urllib: this process starts in every takeover and failback,
# on the node that is taking the service over, and those modules (http.server pulls in http.client, ssl,
# email and mimetypes; json and argparse pull in re) made its imports 45-52 ms natively against 15-19 now:
# seconds of a takeover on an emulated (TCG) VM guest, where the cluster's own start actions wait for the CPU.
# The HTTP it speaks is small (below): HTTP/1.1 GET, HEAD and PUT with Content-Length, keep-alive.

KEY_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")
MAX_KEY = 128
RESERVE_BLOCKS = 64
"""Free blocks a PUT leaves to others, like a database's flood-stage watermark. On a full disk the
cluster's Filesystem monitor (OCF_CHECK_LEVEL=20) rewrites its status file there, truncating it
first; without a reserve, a write of ours could take the block the truncate freed and the monitor
failed with "Failed to write status file" (disk_full-shared moved the group on a correct cluster,
2026-11-30). 64 blocks is more than the PUTs in flight at once (one per server thread) can take
between their check and their write."""
MARKER = ".fallover-kv"
MAX_VALUE = 16 * 1024 * 1024
IDLE_TIMEOUT = 30  # seconds an idle keep-alive connection may hold a thread


def log(node, msg):
    """Write one timestamped line to stderr; the agent appends stderr to its logfile."""
    ts = time.strftime("%Y-%m-%dT%H:%M:%S")
    sys.stderr.write(f"{ts} kvapp[{os.getpid()}] {node} {msg}\n")
    sys.stderr.flush()


class ErrorLog:
    """Rate-limited error log: a pulled disk at 300 req/s must not flood the logfile."""

    def __init__(self, node, interval=1.0):
        self.node, self.interval = node, interval
        self.lock = threading.Lock()
        self.seen = {}  # (op, errno name) -> [last logged time, suppressed count]

    def error(self, op, exc):
        name = errno_name(exc)
        now = time.monotonic()
        with self.lock:
            last, suppressed = self.seen.get((op, name), (None, 0))
            if last is not None and now - last < self.interval:
                self.seen[(op, name)] = (last, suppressed + 1)
                return
            self.seen[(op, name)] = (now, 0)
        more = f" (+{suppressed} similar suppressed)" if suppressed else ""
        log(self.node, f"ERROR {op}: {name}: {exc}{more}")


def errno_name(exc):
    """Symbolic errno (EIO, ENOSPC ...) so clients and logs can tell failure kinds apart."""
    return errno.errorcode.get(getattr(exc, "errno", None) or 0, type(exc).__name__)


def kept_back(path):
    """ext4's reserved clusters (kept for metadata) on the filesystem of ``path``; 0 on any other filesystem."""
    try:
        st = os.stat(path)
        dev = os.path.realpath("/sys/dev/block/%d:%d" % (os.major(st.st_dev), os.minor(st.st_dev)))
        with open("/sys/fs/ext4/%s/reserved_clusters" % os.path.basename(dev)) as f:
            return int(f.read())
    except (OSError, ValueError):
        return 0


def check_dir(path):
    """Raise NotADirectoryError if path is not a directory (stat follows symlinks)."""
    if not stat.S_ISDIR(os.stat(path).st_mode):
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), path)


class Store:
    """The on-disk store: <data_dir>/kv/<key>, one file per key."""

    def __init__(self, data_dir, sync=True):
        self.data_dir, self.sync = data_dir, sync
        self.kv_dir = os.path.join(data_dir, "kv")
        self.marker = os.path.join(data_dir, MARKER)
        self.kept_back = 0  # ext4's reserved clusters on the store's filesystem (init)

    def init(self):
        """Create kv/ and the marker, but never data_dir itself: a missing data_dir
        means the shared filesystem is not there, and writing to the root fs instead
        would silently lose data on failover."""
        check_dir(self.data_dir)
        os.makedirs(self.kv_dir, exist_ok=True)
        if not os.path.exists(self.marker):
            with open(self.marker, "w") as f:
                f.write("fallover kv store\n")
                f.flush()
                os.fsync(f.fileno())
            self._fsync_dir(self.data_dir)
        self.kept_back = kept_back(self.kv_dir)

    def free_blocks(self):
        """Blocks a write may still get: statvfs's f_bfree counts ext4's reserved clusters as free, and nobody's
        write gets those (1310 blocks of the VMs' 256 MB disk): with them counted the reserve never held."""
        return os.statvfs(self.kv_dir).f_bfree - self.kept_back

    def health(self):
        """Cheap liveness probe of the storage: data dir and kv dir stat, marker read."""
        check_dir(self.data_dir)
        check_dir(self.kv_dir)
        with open(self.marker, "rb") as f:
            f.read(64)

    def put(self, key, value):
        """Durable write: temp file, fsync, rename, fsync dir (no fsync at all when not `sync`).
        Raises OSError on failure, ENOSPC below the reserve (RESERVE_BLOCKS)."""
        if self.free_blocks() < RESERVE_BLOCKS:
            raise OSError(errno.ENOSPC, f"fewer than {RESERVE_BLOCKS} free blocks (kept for others)", self.kv_dir)
        tmp = os.path.join(self.kv_dir, ".tmp-" + os.urandom(8).hex())
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(value)
                f.flush()
                if self.sync:
                    os.fsync(f.fileno())
            os.rename(tmp, os.path.join(self.kv_dir, key))
            tmp = None
            if self.sync:
                self._fsync_dir(self.kv_dir)
        finally:
            if tmp is not None:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass

    def get(self, key):
        """Return the value, or None if the key does not exist (but the store does)."""
        try:
            with open(os.path.join(self.kv_dir, key), "rb") as f:
                return f.read()
        except FileNotFoundError:
            check_dir(self.kv_dir)  # a vanished kv dir is a storage fault, not a miss
            return None

    @staticmethod
    def _fsync_dir(path):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def valid_key(key):
    return 0 < len(key) <= MAX_KEY and key not in (".", "..") and all(c in KEY_CHARS for c in key)


def json_text(value):
    """A flat dict of strings as JSON (all the app ever answers): control characters, quote and backslash
    escaped, anything else as UTF-8."""
    def quote(s):
        return '"' + "".join(c if c >= " " and c not in '"\\' else "\\u%04x" % ord(c) for c in str(s)) + '"'
    return "{" + ", ".join("%s: %s" % (quote(k), quote(v)) for k, v in value.items()) + "}"


REASONS = {200: "OK", 201: "Created", 400: "Bad Request", 404: "Not Found", 411: "Length Required",
           413: "Payload Too Large", 431: "Request Header Fields Too Large", 501: "Not Implemented",
           503: "Service Unavailable"}
MAX_LINE = 65536
MAX_HEADERS = 100


class BadRequest(Exception):
    """A request that cannot be parsed: answered with 400 and the connection closed."""


class Handler(socketserver.StreamRequestHandler):
    """HTTP/1.1 with Content-Length everywhere so clients can keep-alive; one request after the other."""

    timeout = IDLE_TIMEOUT
    disable_nagle_algorithm = True
    # Buffer the response so headers and body leave in one send (flushed per response); unbuffered they
    # are two segments and Nagle + delayed ACK cap a keep-alive connection at ~25 req/s.
    wbufsize = 64 * 1024

    def handle(self):
        self.close_connection = False
        while not self.close_connection:
            try:
                if not self.handle_one():
                    return
            except BadRequest as exc:
                self.close_connection = True
                self.command = "GET"
                self.reply(400, {"error": str(exc)})
            self.wfile.flush()

    def handle_one(self):
        """Read and answer one request; False at the end of the stream (or an idle client's timeout)."""
        try:
            line = self.rfile.readline(MAX_LINE + 1)
        except (socket.timeout, ConnectionError):
            return False
        if not line:
            return False
        if len(line) > MAX_LINE:
            raise BadRequest("request line too long")
        parts = line.decode("latin-1").split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            raise BadRequest("bad request line")
        self.command, target, version = parts
        self.headers = {}
        for _ in range(MAX_HEADERS + 1):
            h = self.rfile.readline(MAX_LINE + 1)
            if h in (b"\r\n", b"\n", b""):
                break
            name, sep, value = h.decode("latin-1").partition(":")
            if not sep:
                raise BadRequest("bad header line")
            self.headers[name.strip().lower()] = value.strip()
        else:
            raise BadRequest("too many headers")
        conn = self.headers.get("connection", "").lower()
        self.close_connection = conn == "close" or (version != "HTTP/1.1" and conn != "keep-alive")
        if target.startswith(("http://", "https://")):  # absolute form: the path after the authority
            target = "/" + target.split("/", 3)[3] if target.count("/") >= 3 else "/"
        self.path = target.split("?", 1)[0].split("#", 1)[0]
        do = {"GET": self.do_GET, "HEAD": self.do_GET, "PUT": self.do_PUT}.get(self.command)
        if do is None:
            self.close_connection = True  # a body we do not know how to skip may follow
            self.reply(501, {"error": "method not implemented", "method": self.command})
        else:
            do()
        return True

    def reply(self, code, body, ctype="application/json"):
        if isinstance(body, dict):
            body = json_text(body) + "\n"
        if isinstance(body, str):  # backslashreplace: an OS error's undecodable name becomes a JSON \udcXX escape
            body = body.encode("utf-8", "backslashreplace")
        head = ["HTTP/1.1 %d %s" % (code, REASONS.get(code, "")), "Server: fallover-kvapp/1",
                "Content-Type: " + ctype, "Content-Length: %d" % len(body),
                # Every response, errors included, names the node that served it.
                "X-Fallover-Node: " + self.server.node]
        if self.close_connection:
            head.append("Connection: close")
        self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1", "replace"))
        if self.command != "HEAD":
            self.wfile.write(body)

    def fail(self, op, exc):
        self.server.errors.error(op, exc)
        self.reply(503, {"error": errno_name(exc), "detail": str(exc), "node": self.server.node})

    def key(self):
        """Return the validated key of a /kv/<key> path, '' for other paths, None if invalid."""
        if not self.path.startswith("/kv/"):
            return ""
        key = self.path[4:]
        return key if valid_key(key) else None

    def do_GET(self):
        if self.path == "/health":
            try:
                self.server.store.health()
            except OSError as exc:
                return self.fail("health", exc)
            return self.reply(200, self.server.node + "\n", "text/plain")
        key = self.key()
        if not key:
            return self.reply(400 if key is None else 404, {"error": "bad key or path"})
        try:
            value = self.server.store.get(key)
        except OSError as exc:
            return self.fail("get " + key, exc)
        if value is None:
            return self.reply(404, {"error": "not found", "key": key})
        self.reply(200, value, "application/octet-stream")

    def do_PUT(self):
        try:
            length = int(self.headers.get("content-length", ""))
        except ValueError:
            self.close_connection = True  # unknown body length: cannot resync the stream
            return self.reply(411, {"error": "Content-Length required"})
        if length < 0 or length > MAX_VALUE:
            self.close_connection = True
            return self.reply(413, {"error": "value too large"})
        if self.headers.get("expect", "").lower() == "100-continue":  # curl's way with a body over 1 KiB
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.wfile.flush()
        value = self.rfile.read(length)  # read first so keep-alive stays in sync on 400
        key = self.key()
        if not key:
            return self.reply(400 if key is None else 404, {"error": "bad key or path"})
        try:
            self.server.store.put(key, value)
        except OSError as exc:
            return self.fail("put " + key, exc)
        self.reply(201, {"key": key, "node": self.server.node})


class Server(socketserver.ThreadingTCPServer):
    """Threaded server that drops dead-client noise instead of printing tracebacks."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, socket.timeout)):
            return  # clients vanish all the time during failover tests
        self.errors.error("request from %s" % (client_address[0],), exc)


class Args:
    """What the command line and the FALLOVER_* environment (which the OCF agent sets) ask for."""

    def __init__(self, env):
        self.data_dir = env.get("FALLOVER_DATA_DIR")
        self.port = int(env.get("FALLOVER_PORT") or 8080)
        self.bind = env.get("FALLOVER_BIND") or "0.0.0.0"
        self.node = env.get("FALLOVER_NODE") or os.uname().nodename
        self.pidfile = None
        self.ack_before_fsync = False


USAGE = ("usage: kvapp.py [--data-dir DIR] [--port N] [--bind ADDR] [--node NAME] [--pidfile FILE] "
         "[--ack-before-fsync]\n  --ack-before-fsync: acknowledge a PUT without fsync (broken on purpose: "
         "a power cut loses it)")


def parse_args(argv):
    """CLI flags override the FALLOVER_* environment; a bad command line exits 2 with the usage."""
    args, todo = Args(os.environ), list(sys.argv[1:] if argv is None else argv)

    def usage(problem):
        sys.stderr.write("%s\nkvapp.py: error: %s\n" % (USAGE, problem))
        sys.exit(2)

    while todo:
        flag, _, inline = todo.pop(0).partition("=")
        if flag in ("-h", "--help"):
            print(USAGE)
            sys.exit(0)
        if flag == "--ack-before-fsync" and not inline:
            args.ack_before_fsync = True
            continue
        if flag not in ("--data-dir", "--port", "--bind", "--node", "--pidfile"):
            usage("unrecognized argument: %s" % flag)
        if not inline and not todo:
            usage("%s needs a value" % flag)
        value = inline or todo.pop(0)
        if flag == "--port":
            try:
                value = int(value)
            except ValueError:
                usage("--port: not a number: %r" % value)
        setattr(args, flag[2:].replace("-", "_"), value)
    if not args.data_dir:
        usage("FALLOVER_DATA_DIR or --data-dir is required")
    return args


def write_pidfile(path):
    """Atomic write, so a reader never sees an empty or partial pid."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(f"{os.getpid()}\n")
    os.rename(tmp, path)


def main(argv=None):
    args = parse_args(argv)
    store = Store(args.data_dir, sync=not args.ack_before_fsync)
    try:
        store.init()
        server = Server((args.bind, args.port), Handler)
    except OSError as exc:
        log(args.node, f"ERROR cannot start: {errno_name(exc)}: {exc}")
        return 1
    server.node, server.store, server.errors = args.node, store, ErrorLog(args.node)

    def on_signal(signum, frame):
        # shutdown() blocks until serve_forever returns, so it must run in another thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if args.pidfile:
        write_pidfile(args.pidfile)
    log(args.node, f"listening on {args.bind}:{args.port} data_dir={args.data_dir}"
                   + (" (acknowledging before fsync)" if args.ack_before_fsync else ""))
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        if args.pidfile:
            try:
                with open(args.pidfile) as f:
                    if f.read().strip() == str(os.getpid()):
                        os.unlink(args.pidfile)
            except OSError:
                pass
    log(args.node, "stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
