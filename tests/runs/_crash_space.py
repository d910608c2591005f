"""A DartsSpace whose init network (or, with ``every_network``, any network) crashes its process natively (SIGSEGV)
the first ``crash_times`` times."""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sanas.network.model import DartsNetwork
from sanas.spaces import DartsSpace, register_space


@register_space
class CrashingDartsSpace(DartsSpace):
    """Building the init tokens' network segfaults while ``crash_log`` holds fewer than ``crash_times`` lines."""

    def __init__(self, crash_log: str = "", crash_times: int = 1, every_network: bool = False,
                 **settings: Any) -> None:
        super().__init__(**settings)
        self.crash_log, self.crash_times, self.every_network = crash_log, crash_times, every_network

    def token2arch(self, tokens: Sequence[int]) -> DartsNetwork:
        log = Path(self.crash_log)
        if (self.every_network or list(tokens) == self.init_tokens()) and \
                len(log.read_text().splitlines() if log.exists() else []) < self.crash_times:
            with log.open("a") as f:
                f.write("crash\n")
            ctypes.string_at(0)
        return super().token2arch(tokens)

    def config(self) -> dict[str, Any]:
        return {**super().config(), "crash_log": self.crash_log, "crash_times": self.crash_times,
                "every_network": self.every_network}
