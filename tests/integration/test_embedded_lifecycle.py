"""The embedded server does not outlive a parent killed with SIGKILL."""

import os
import signal
import subprocess
import sys
import time

import pytest

CHILD = """
import asyncio
from lc_async_pipelines.embedded import EmbeddedModelServer

async def main():
    async with EmbeddedModelServer(parallel=1) as server:
        print(server._proc.pid, flush=True)
        await asyncio.sleep(600)

asyncio.run(main())
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead too: it only waits to be reaped.
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().split(")")[-1].split()[0] != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_server_stops_when_its_parent_is_killed(embedded_server):
    # embedded_server: llama-server is built before the child needs it.
    parent = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True)
    server_pid = int(parent.stdout.readline())
    assert alive(server_pid)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 30
    while alive(server_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(server_pid)
