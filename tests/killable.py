"""A training script run in its own process and, if asked, SIGKILLed once its metrics.jsonl has a given number
of lines: how the resume tests interrupt a run without letting it clean up."""

import os
import signal
import subprocess
import sys
import time


def run_script(script, root, metrics, kill_after=None, env=None):
    """Run `script` with argv[1] = root; with kill_after, kill it when `metrics` has that many lines."""
    proc = subprocess.Popen([sys.executable, "-c", script, str(root)],
                            env=dict(os.environ, OMP_NUM_THREADS="1", **(env or {})))
    if kill_after is None:
        assert proc.wait(timeout=300) == 0
        return
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= kill_after:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    assert proc.wait(timeout=60) == -signal.SIGKILL, "the run ended before it could be killed"
