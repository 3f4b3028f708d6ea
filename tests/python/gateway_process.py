"""Starts the `switchboard` binary for the SDK tests: examples/gateway.toml, port 0, no provider
keys or base URLs from the environment (so the demo providers serve)."""

import os
import re
import subprocess
import threading

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# A 1x1 transparent PNG, hex.
PNG_HEX = (
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)


def start_gateway(binary):
    """Returns (process, base URL, what it printed before listening)."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY") and not k.endswith("_BASE_URL")}
    proc = subprocess.Popen(
        [binary, "--config", os.path.join(ROOT, "examples", "gateway.toml"), "--listen", "127.0.0.1:0"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = []
    for line in proc.stdout:
        lines.append(line)
        m = re.search(r"listening on (http://\S+)", line)
        if m:
            # Keep draining output so the pipe never fills.
            threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
            return proc, m.group(1), "".join(lines)
        if len(lines) > 50:
            break
    proc.kill()
    raise RuntimeError("gateway did not start:\n" + "".join(lines))
