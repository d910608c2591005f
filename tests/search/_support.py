"""Helpers of the search tests: a tiny exhaustible space, the PostgreSQL URL, free ports."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Sequence
from typing import Any

from torch import nn

from sanas.spaces import SearchSpace

POSTGRES_URL = os.environ.get("SANAS_TEST_POSTGRES_URL",
                              "postgresql+psycopg2://sanas:sanas@127.0.0.1:5432/sanas_test")


class TinySpace(SearchSpace):
    """``n`` positions of ``r`` values each; params = sum of tokens. Small enough to exhaust."""

    name = "TinySpace"

    def __init__(self, n: int = 2, r: int = 2) -> None:
        self.n, self.r = n, r

    def init_tokens(self) -> list[int]:
        return [0] * self.n

    def range_table(self) -> list[int]:
        return [self.r] * self.n

    def token2arch(self, tokens: Sequence[int]) -> nn.Module:
        return nn.Linear(1 + sum(tokens), 1)

    def count_params(self, tokens: Sequence[int]) -> int:
        return sum(tokens)

    def count_macs(self, tokens: Sequence[int], input_size: tuple[int, int] = (32, 32)) -> int:
        return sum(tokens)

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "n": self.n, "r": self.r}



def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 180) -> None:
    """Until something listens on 127.0.0.1:``port``, as long as ``proc`` (the server) lives.

    Clients are started once their server serves, as a user would: a client gives up after its ``connect_timeout``
    (30 s), and a loaded 2-core CI machine can take that long just to import torch in the server process.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"no server came up on port {port} (server exit status {proc.poll()})")
