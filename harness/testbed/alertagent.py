"""The VM guests' alert agent: vagrant/fallover-alert-forward.c compiled on the harness's side, or the
Python forwarder where no C compiler is found.

Why compiled: a Python agent's start is what a busy TCG guest pays most for in the first alert of a lost
node (the C file's header has the figures). Why on the harness's side: the box carries no compiler, and a
static binary runs on the guest whatever the host's libc is. The build takes well under a second and is
redone only when the source changes (its hash names the binary).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

from harness.errors import TestbedError

VAGRANT_DIR = Path(__file__).resolve().parent.parent.parent / "vagrant"
SOURCE = VAGRANT_DIR / "fallover-alert-forward.c"
FALLBACK = VAGRANT_DIR / "fallover-alert-forward"
CFLAGS = ["-O2", "-static", "-Wall", "-Werror"]


def compiler() -> str | None:
    return shutil.which("cc") or shutil.which("gcc")


def build(out_dir: Path, source: Path = SOURCE) -> Path:
    """The compiled agent in out_dir (built if this source's binary is not there yet); CalledProcessError if
    the compiler refuses it, FileNotFoundError if there is no compiler."""
    cc = compiler()
    if cc is None:
        raise FileNotFoundError("no C compiler (cc, gcc) on PATH")
    digest = hashlib.sha256(source.read_bytes() + " ".join(CFLAGS).encode()).hexdigest()[:12]
    binary = out_dir / f"fallover-alert-forward-{digest}"
    if not binary.exists():
        out_dir.mkdir(parents=True, exist_ok=True)
        tmp = binary.with_suffix(".tmp")
        subprocess.run([cc, *CFLAGS, "-o", str(tmp), str(source)], check=True, capture_output=True, text=True,
                       timeout=120)
        tmp.rename(binary)
        for old in out_dir.glob("fallover-alert-forward-*"):
            if old != binary:
                old.unlink(missing_ok=True)
    return binary


def forwarder(out_dir: Path) -> Path:
    """What the guests install as their alert agent: the compiled one, else the Python forwarder."""
    try:
        return build(out_dir)
    except FileNotFoundError:
        return FALLBACK
    except subprocess.CalledProcessError as e:
        raise TestbedError(f"{SOURCE} did not compile: {(e.stderr or '').strip()[-400:]}") from None
