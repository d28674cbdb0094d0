"""SIGTERM stops a run the way Ctrl-C does: in a pytest run of the suites, the fixtures' teardown (a case's heal) runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from harness.interrupt import sigterm

SUITE = '''
import os, signal
import pytest

@pytest.fixture
def injected():
    yield
    open(os.environ["HEALED"], "w").write("healed")

def test_stopped_mid_case(injected):
    os.kill(os.getpid(), signal.SIGTERM)  # what `timeout` or a cancelled CI job sends
    import time; time.sleep(30)
'''


def test_a_pytest_run_stopped_by_sigterm_heals_like_on_ctrl_c(tmp_path: Path) -> None:
    (tmp_path / "test_stop.py").write_text(SUITE)
    healed = tmp_path / "healed"
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--run-dir",
                        str(tmp_path / "run"), str(tmp_path / "test_stop.py")],
                       env={**os.environ, "HEALED": str(healed)}, cwd=tmp_path, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == pytest.ExitCode.INTERRUPTED, r.stdout + r.stderr
    assert healed.read_text() == "healed", "the teardown ran"
    assert "KeyboardInterrupt" in r.stdout


def test_sigterm_is_a_keyboard_interrupt_in_the_main_process() -> None:
    before = signal.signal(signal.SIGTERM, sigterm)
    try:
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):  # the handler runs between bytecodes, right after the kill
                pass
    finally:
        signal.signal(signal.SIGTERM, before)
