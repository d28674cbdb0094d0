"""A group's shared filesystem, copied off the node that mounts it and put back: consistent, through any transport.

Only the provider interface is used (a command on a node, with stdin and stdout), so the same
code reads the embedded testbed, an SSH inventory or the VMs. The data crosses as a base64
tar.gz, which a text transport carries unchanged; the node needs only sh, tar, gzip, base64,
sha256sum and util-linux's fsfreeze.

Consistency: the filesystem is frozen (`fsfreeze`) for the copy, so every write the application
acknowledged before the freeze is in the copy (the sample application fsyncs before it
acknowledges) and none is half in it; writes that arrive meanwhile wait, and are acknowledged
after. A freeze must never outlive the copy, even when the harness is killed or its session
lost: a guard in its own session thaws the filesystem after `FREEZE_GUARD_S`, and the copy is
refused as inconsistent if the guard had to.
"""

from __future__ import annotations

import base64
import io
import tarfile
from dataclasses import dataclass
from pathlib import Path

from harness.errors import FalloverError
from harness.testbed.base import Testbed

EXCLUDED = ("lost+found", ".Filesystem_status")
"""Entries of a filesystem's root that belong to the filesystem or to the cluster's monitor, not to the
application: never copied, never removed by a restore (the Filesystem agent's level-20 monitor writes
into .Filesystem_status every 2 s)."""
FREEZE_GUARD_S = 10
"""The longest a freeze may last. Below the Filesystem monitor's 20 s timeout (its level-20 write waits
while the filesystem is frozen): a longer freeze would fail the monitor and make the cluster recover."""

_EXCLUDE_ARGS = " ".join(f"--exclude=./{e}" for e in EXCLUDED)
FREEZE_AND_COPY = f"""set -u
m=$1; guard=$2
cd "$m" || exit 3
w=$(mktemp -d) || exit 3
setsid sh -c 'cd /; echo $$ > "$3/guard.pid"; sleep "$1"; exec fsfreeze --unfreeze "$2"' guard "$guard" "$m" "$w" \
  </dev/null >/dev/null 2>&1 &
i=0
while [ ! -s "$w/guard.pid" ]; do
  i=$((i + 1)); if [ "$i" -gt 100 ]; then echo "the freeze guard did not start" >&2; rm -rf "$w"; exit 3; fi
  sleep 0.05
done
g=$(cat "$w/guard.pid")
t0=$(date +%s.%N)
if ! fsfreeze --freeze "$m"; then kill -- "-$g"; rm -rf "$w"; exit 4; fi
tar {_EXCLUDE_ARGS} --numeric-owner -czf "$w/data.tgz" .; trc=$?
kill -- "-$g" 2>/dev/null; held=$?
fsfreeze --unfreeze "$m"; urc=$?
echo "@freeze $t0 $(date +%s.%N)" >&2
if [ "$held" -ne 0 ]; then
  rm -rf "$w"; echo "the freeze guard thawed $m before the copy ended (over $guard s): not a consistent copy" >&2; exit 5
fi
if [ "$urc" -ne 0 ]; then rm -rf "$w"; echo "fsfreeze --unfreeze $m failed" >&2; exit 6; fi
if [ "$trc" -ne 0 ]; then rm -rf "$w"; exit 7; fi
base64 -w0 "$w/data.tgz"; rc=$?; rm -rf "$w"; exit $rc
"""
"""$1 the mountpoint, $2 the guard's seconds. stdout: the base64 tar.gz; stderr: `@freeze START END` (node clock).
The guard is in place (its PID written) before the freeze; the archive goes to the node's /tmp first, so the
freeze lasts only as long as reading the files. The guard is a session of its own, outside the mountpoint, and
is ended as a whole (its `sleep` too): a `sleep` left behind in the mountpoint kept it busy for 10 s, and the
next case's stop of the Filesystem could not unmount it ("Couldn't unmount …; trying cleanup with TERM")."""

PUT_BACK = f"""set -u
m=$1
cd "$m" || exit 3
tmp=$(mktemp) || exit 3
if ! base64 -d > "$tmp"; then rm -f "$tmp"; echo "the archive did not arrive whole" >&2; exit 4; fi
if ! gzip -t "$tmp"; then rm -f "$tmp"; echo "the archive did not arrive whole" >&2; exit 4; fi
find . -mindepth 1 -maxdepth 1 {" ".join(f"! -name {e}" for e in EXCLUDED)} -exec rm -rf {{}} + || exit 5
tar --numeric-owner -xzf "$tmp"; rc=$?
rm -f "$tmp"; sync; exit $rc
"""
"""$1 the mountpoint; stdin the base64 tar.gz. Removes what the filesystem holds (but EXCLUDED), then extracts."""


@dataclass(frozen=True)
class Copy:
    """What `copy_out` brought back from a node."""

    archive: bytes
    freeze_s: float | None
    command_s: float


def copy_out(testbed: Testbed, node: str, mount: str, *, guard_s: int = FREEZE_GUARD_S) -> Copy:
    """Freeze the filesystem at ``mount`` on ``node``, archive it, thaw it; the archive (tar.gz bytes)."""
    r = testbed.node(node).run(["sh", "-c", FREEZE_AND_COPY, "sh", mount, str(guard_s)], timeout=guard_s + 60,
                               check=False)
    if not r.ok:
        raise FalloverError(f"{node}: copying {mount} under fsfreeze failed (exit {r.exit_status}): "
                            f"{_said(r.stderr)}")
    freeze_s = None
    for line in r.stderr.splitlines():
        if line.startswith("@freeze "):
            try:
                start, end = (float(x) for x in line.split()[1:3])
                freeze_s = round(end - start, 3)
            except ValueError:
                pass
    try:
        archive = base64.b64decode(r.stdout.strip(), validate=True)
    except ValueError as e:
        raise FalloverError(f"{node}: the copy of {mount} came back damaged ({e})") from None
    return Copy(archive, freeze_s, r.duration_s)


def unpack(archive: bytes, dest: Path) -> tuple[int, int]:
    """Extract a copy into ``dest`` (ownership and modes kept when run as root); (files, bytes)."""
    dest.mkdir(parents=True, exist_ok=True)
    files = size = 0
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
            members = tar.getmembers()
            tar.extractall(dest, filter="tar")  # refuses absolute paths and links out of dest
    except (tarfile.TarError, OSError, EOFError) as e:
        raise FalloverError(f"the copy could not be unpacked into {dest}: {e}") from None
    for m in members:
        if m.isfile():
            files, size = files + 1, size + m.size
    return files, size


def pack(src: Path) -> bytes:
    """A tar.gz of everything below ``src`` (names relative to it, as `copy_out` made them)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for entry in sorted(src.iterdir()):
            tar.add(entry, arcname=f"./{entry.name}")
    return buf.getvalue()


def put_back(testbed: Testbed, node: str, mount: str, archive: bytes, sums: dict[str, str]) -> None:
    """Replace what the filesystem at ``mount`` holds with ``archive``, then check every file on the node.

    ``sums``: path relative to the mountpoint → sha256, as the manifest has them; the node's own
    `sha256sum -c` proves that what is on its disk now is what the backup holds.
    """
    t = testbed.node(node)
    r = t.run(["sh", "-c", PUT_BACK, "sh", mount], input=base64.b64encode(archive).decode(), timeout=300,
              check=False)
    if not r.ok:
        raise FalloverError(f"{node}: putting the data back into {mount} failed (exit {r.exit_status}): "
                            f"{_said(r.stderr)}")
    listing = "".join(f"{h}  ./{rel}\n" for rel, h in sums.items())
    r = t.run(["sh", "-c", 'cd "$1" && sha256sum --quiet --strict -c -', "sh", mount], input=listing, timeout=300,
              check=False)
    if not r.ok:
        bad = [line for line in (r.stdout + r.stderr).splitlines() if line.strip()]
        raise FalloverError(f"{node}: the restored files in {mount} do not match the backup: "
                            f"{'; '.join(bad[:3]) or f'sha256sum exited {r.exit_status}'}")


def _said(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if not line.startswith("@freeze ")]
    return " / ".join(lines[-3:]) or "(no message)"
