"""Drive the fallover-app OCF agent the way pacemaker-execd does, and the daemons a start command leaves."""

import os
import signal
import socket
import subprocess
from pathlib import Path

AGENTS = Path(__file__).resolve().parents[2] / "harness" / "agents"
AGENT = AGENTS / "fallover-app"
NODE = "testnode"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Agent:
    """Runs agent actions with OCF_RESKEY_* params; cleans up the app by its recorded PID."""

    def __init__(self, tmp_path, agent=AGENT):
        self.agent = str(agent)
        self.tmp = tmp_path
        (tmp_path / "data").mkdir(exist_ok=True)
        self.port = free_port()
        self.params = {"data_dir": str(tmp_path / "data"), "port": str(self.port),
                       "node_name": NODE, "state_dir": str(tmp_path / "state"),
                       "logfile": str(tmp_path / "log" / "agent.log")}

    preexec = None  # e.g. join a freezer group, as the agent runs in an embedded node's group

    def run(self, action, **extra):
        return self.run_args([action], **extra)

    def env(self, **extra):
        """The environment pacemaker-execd gives the agent: OCF_RESKEY_* params and the instance."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("OCF_")}
        env.update({"OCF_RESKEY_" + k: v for k, v in {**self.params, **extra}.items()})
        env["OCF_RESOURCE_INSTANCE"] = "app"
        return env

    def run_args(self, args, **extra):
        proc = subprocess.run([self.agent, *args], env=self.env(**extra), capture_output=True, text=True,
                              timeout=60, preexec_fn=self.preexec)
        return proc.returncode, proc.stdout

    def imports(self, action):
        """The modules the agent imports for an action (python's -X importtime, as the agent runs)."""
        env = dict(self.env(), PYTHONPROFILEIMPORTTIME="1")
        proc = subprocess.run([self.agent, action], env=env, capture_output=True, text=True, timeout=60)
        return {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines()
                if line.startswith("import time:") and "[us]" not in line}

    def log(self):
        path = Path(self.params["logfile"])
        return path.read_text() if path.exists() else ""

    def kill_leftover(self):
        pidfile = self.tmp / "state" / "app.pid"
        try:
            pid, start = pidfile.read_text().split()
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[19] == start:
                    os.kill(int(pid), signal.SIGKILL)
        except (OSError, ValueError, IndexError):
            pass


DAEMON = r'''
import os, signal, sys, time
args = sys.argv[1:]
if "--worker" not in args:                  # daemonize like an init script: fork, setsid, fork
    if os.fork():
        os._exit(0)
    os.setsid()
    if os.fork():
        os._exit(0)
    if "--clear-env" in args:               # a daemon that wipes its environment (no tag left)
        os.execve(sys.executable, [sys.executable, __file__, "--worker"], {})
if "--pidfile" in args:
    with open(args[args.index("--pidfile") + 1], "w") as f:
        f.write("%d\n" % os.getpid())
if "--ignore-term" in args:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if "--child" in args and os.fork() == 0:    # a worker process of the daemon
    time.sleep(100000)
time.sleep(100000)
'''


def jrun(agent, *args, **extra):
    import json
    rc, out = agent.run_args(list(args), **extra)
    assert rc == 0, out
    return json.loads(out)


def proc_state(pid):
    try:
        return Path("/proc/%d/stat" % pid).read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def wait_for(pred, timeout=5.0):
    import time
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True

