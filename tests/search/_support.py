"""Helpers of the search tests: a tiny exhaustible space, the PostgreSQL URL, free ports."""

from __future__ import annotations

import os
import socket
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
