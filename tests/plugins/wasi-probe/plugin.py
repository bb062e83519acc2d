"""Test only: a Python plugin (componentize-py, so CPython on WASI) that tries
to open files, open sockets and read the environment, and reports in its
summary, as JSON, what each attempt gave. The host links a deny-by-default
WASI: every attempt must fail (or find nothing), and the test says so.

It also prints to stdout and stderr, which the host forwards to its log.
"""

import json
import os
import socket
import sys
from typing import Callable, Dict, List

from wit_world import exports
from wit_world.exports import strategy
from wit_world.imports import runtime


def attempt(what: Callable[[], object]) -> str:
    """`ok: …` if `what` succeeded; `denied: <OSError subclass>: …` if the
    system refused it (as WASI's answers surface in Python); else `error: …`
    for a failure of the probe itself."""
    try:
        return f"ok: {what()!r}"[:200]
    except OSError as err:
        return f"denied: {type(err).__name__}: {err}"[:200]
    except BaseException as err:  # noqa: BLE001 - any failure is the answer
        return f"error: {type(err).__name__}: {err}"[:200]


def read_file(path: str) -> object:
    with open(path, "rb") as f:
        return f.read(64)


def write_file(path: str) -> object:
    with open(path, "w") as f:
        return f.write("escaped")


def connect(host: str, port: int) -> object:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(1)
    s.connect((host, port))
    return "connected"


def listen() -> object:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    return s.getsockname()


def probes() -> Dict[str, str]:
    return {
        "read /etc/passwd": attempt(lambda: read_file("/etc/passwd")),
        "read ./wasmonkey.toml": attempt(lambda: read_file("wasmonkey.toml")),
        "write /tmp/wasi-probe": attempt(lambda: write_file("/tmp/wasi-probe")),
        "list /": attempt(lambda: os.listdir("/")),
        "connect 127.0.0.1:22": attempt(lambda: connect("127.0.0.1", 22)),
        # Bytes: a str host would need the idna codec, which is not bundled.
        "resolve localhost": attempt(lambda: socket.getaddrinfo(b"localhost", 80)),
        "listen 127.0.0.1": attempt(listen),
        "env": attempt(lambda: dict(os.environ)),
        "env HOME": attempt(lambda: os.environ.get("HOME")),
        "argv": attempt(lambda: list(sys.argv)),
    }


class Strategy(exports.Strategy):
    def metadata(self) -> strategy.PluginMetadata:
        return strategy.PluginMetadata(
            name="wasi-probe",
            version="0.1.0",
            description=(
                "Test only: a Python plugin that tries to reach outside the sandbox through "
                "WASI and reports what happened"
            ),
            params=[],
        )

    def run(self, params: List[strategy.Param]) -> strategy.Outcome:
        print("wasi-probe: hello from stdout")
        print("wasi-probe: hello from stderr", file=sys.stderr)
        results = probes()
        runtime.log(runtime.LogLevel.INFO, f"wasi-probe: {len(results)} attempts made")
        return strategy.Outcome(victims=[], summary=json.dumps(results, sort_keys=True))
