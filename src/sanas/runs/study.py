"""Open a search: the run directory's config, the checks made before anything is written, and the study.

Every process of a search opens it the same way (:func:`open_search`): ``sanas search``, each worker, a worker on
another machine that only knows the storage URL or the server's address (the run config is then read from the
study, where the first process stored it). :func:`load_study` reads a search without joining it (``sanas
status``, reports, the finalists stage).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sanas.runs.config import CONFIG_FILE, SEARCH_DEFAULTS, RunConfig
from sanas.search.storage import DEFAULT_CONNECT_TIMEOUT

__all__ = ["RUN_CONFIG_KEY", "load_study", "open_search", "preflight", "resolve_config"]

#: Study user attribute holding the run config, so workers that only know the storage can join.
RUN_CONFIG_KEY = "sanas:run_config"


def resolve_config(run_dir: Path | None, config: RunConfig | None, save: bool = True) -> RunConfig | None:
    """The run directory's config, checked against ``config``; or ``config``, saved as the run's config
    (unless ``save=False``: then nothing is written)."""
    if run_dir is not None and (run_dir / CONFIG_FILE).exists():
        saved = RunConfig.load(run_dir)
        if config is not None:
            config.check_matches(saved, f"run directory {run_dir}")
        return saved
    if config is not None and run_dir is not None and save:
        config.save(run_dir)
    return config


def preflight(storage: str | None = None, server_addr: Sequence[Any] | None = None, is_server: bool = True) -> None:
    """Check where the study will live before anything is written: the storage URL's form, scheme, driver and
    SQLite folder (no connection), and that a server can bind its address."""
    from sanas.search.storage import check_serve_address, parse_storage_url

    if storage is not None:
        parse_storage_url(storage)
    if server_addr is not None and is_server:
        check_serve_address(server_addr)


def open_search(config: RunConfig | None, run_dir: Path | None, *, storage: str | None = None,
                server_addr: Sequence[Any] | None = None, is_server: bool = True, study_name: str | None = None,
                connect_timeout: float = DEFAULT_CONNECT_TIMEOUT) -> tuple[Any, RunConfig]:
    """Open (or create) the search's study and return ``(SANAS, config)``.

    With only ``storage``/``server_addr`` (a worker on another machine), the config is read from the study.
    """
    from sanas.search import SANAS

    if config is None:
        config = load_study(run_dir, storage, server_addr, study_name, connect_timeout)[1]
        if run_dir is not None:
            config = resolve_config(run_dir, config, save=False)
    assert config is not None
    space = config.build_space()
    s = config.search
    sa = SANAS(space, server_addr=server_addr, is_server=is_server, storage=storage,
               save_checkpoint=run_dir if storage is None and not (server_addr and not is_server) else None,
               study_name=study_name or s["study_name"], search_steps=s["search_steps"],
               max_params=config.budget(space), max_macs=s["max_macs"], move=s["move"], fill=s["fill"],
               sampler=s["sampler"], init_temperature=s["init_temperature"],
               reduce_rate=s["reduce_rate"], seed=s["seed"], max_try_times=s["max_try_times"],
               heartbeat_interval=s["heartbeat_interval"], grace_period=s["grace_period"],
               connect_timeout=connect_timeout)
    attrs = sa.study.user_attrs
    if RUN_CONFIG_KEY in attrs:
        config.check_matches(RunConfig.from_dict(attrs[RUN_CONFIG_KEY]), f"study {sa.study_name!r}")
    else:
        sa.study.set_user_attr(RUN_CONFIG_KEY, config.identity())
    if run_dir is not None and not (run_dir / CONFIG_FILE).exists():
        config.save(run_dir)  # last: only a run directory whose study opened gets its config
    return sa, config


def load_study(run_dir: Path | None = None, storage: str | None = None, server_addr: Sequence[Any] | None = None,
               study_name: str | None = None,
               connect_timeout: float = DEFAULT_CONNECT_TIMEOUT) -> tuple[Any, RunConfig]:
    """An existing search's study and run config, read without joining it (status, reports, remote workers).

    The study is looked up in ``server_addr``, else ``storage``, else ``run_dir``'s own store; the config comes
    from ``run_dir`` when it has one, else from the study.
    """
    import optuna

    from sanas.search.storage import connect_server, existing_store, open_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    config = RunConfig.load(run_dir) if run_dir is not None and (run_dir / "config.json").exists() else None
    name = study_name or (config.search["study_name"] if config else SEARCH_DEFAULTS["study_name"])
    if server_addr is not None:
        store = connect_server(server_addr, connect_timeout)
    elif storage is not None:
        store = open_storage(storage, connect_timeout=connect_timeout)
    elif run_dir is not None:
        if run_dir.exists() and not run_dir.is_dir():
            raise ValueError(f"run directory {run_dir} is a file; expected the folder of a search (sanas search "
                             f"--run-dir)")
        if not run_dir.is_dir():
            raise ValueError(f"run directory {run_dir} does not exist")
        if not existing_store(run_dir):
            raise ValueError(f"{run_dir} holds no study (no sanas.journal or sanas.db); if the search was started "
                             f"with --storage, pass the same --storage")
        store = open_storage(run_dir=run_dir)
    else:
        raise ValueError("give the search's run directory, a --storage URL or a --server-addr")
    try:
        study = optuna.load_study(study_name=name, storage=store)
    except KeyError:
        raise ValueError(f"no study {name!r} in that storage; start the search with sanas search first") from None
    if config is None:
        raw = study.user_attrs.get(RUN_CONFIG_KEY)
        # A server writes its run config just after it starts serving the new study: a worker that was waiting for
        # it can read the study in between.
        deadline = time.monotonic() + min(10.0, connect_timeout)
        while raw is None and server_addr is not None and time.monotonic() < deadline:
            time.sleep(0.2)
            raw = optuna.load_study(study_name=name, storage=store).user_attrs.get(RUN_CONFIG_KEY)
        if raw is None:
            raise ValueError(f"study {name!r} has no sanas run config; was it created by sanas search?")
        config = RunConfig.from_dict(raw)
    return study, config
