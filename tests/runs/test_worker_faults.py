"""The worker under faults: a candidate whose process dies natively fails (and is proposed once more); the
worker goes on and the search finishes."""

from __future__ import annotations

import _crash_space  # noqa: F401 - registers CrashingDartsSpace
import optuna
import pytest
from optuna.trial import TrialState

from sanas.runs.config import RunConfig
from sanas.runs.worker import run_worker
from sanas.search.chain import FAIL_REASON_KEY, RETRY_OF_KEY, released, trial_tokens
from sanas.search.storage import open_storage


def config(crash_log, crash_times: int) -> RunConfig:
    return RunConfig.from_sources(overrides={
        "space": {"name": "CrashingDartsSpace", "layers": 3, "filter_num": [4, 8, 16], "init_channels": 4,
                  "crash_log": str(crash_log), "crash_times": crash_times},
        "data": {"dataset": "synthetic", "train_size": 60, "test_size": 20},
        "recipe": {"retain_epoch": 2, "batch_size": 16, "cutout": 0, "device": "cpu"},
        "search": {"search_steps": 2, "max_params": "1.0x"},
    })


def study_trials(run_dir):
    return optuna.load_study(study_name="sanas", storage=open_storage(run_dir=run_dir)).get_trials()


@pytest.mark.slow
@pytest.mark.parametrize("crash_times", [1, 2])
def test_a_segfaulting_candidate_fails_and_the_worker_goes_on(tmp_path, crash_times) -> None:
    run_dir = tmp_path / "run"
    summary = run_worker(config(tmp_path / "crashes.log", crash_times), run_dir, progress="none")
    assert summary.evaluated == 2 and summary.failed == crash_times
    trials = study_trials(run_dir)
    crashed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(crashed) == crash_times
    assert all("killed by SIGSEGV (exit status 139)" in t.user_attrs[FAIL_REASON_KEY] for t in crashed)
    assert released(crashed[0]) and crashed[0].user_attrs[FAIL_REASON_KEY].endswith("proposed again")
    init = trial_tokens(crashed[0])
    retry = trials[crashed[0].number + 1]
    assert trial_tokens(retry) == init and retry.system_attrs[RETRY_OF_KEY] == crashed[0].number
    if crash_times == 1:  # the second attempt trained
        assert retry.state == TrialState.COMPLETE
    else:  # crashed again: final, never proposed a third time
        assert retry.state == TrialState.FAIL and not released(retry)
        assert sum(trial_tokens(t) == init for t in trials) == 2
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 2
