"""The worker under faults: a candidate whose process dies natively fails (and is proposed once more); the
worker goes on and the search finishes."""

from __future__ import annotations

import _crash_space  # noqa: F401 - registers CrashingDartsSpace
import optuna
import pytest
from optuna.trial import TrialState

from sanas.cli import main
from sanas.runs.config import RunConfig
from sanas.runs.worker import FAILURE_STREAK, SearchFailed, run_worker
from sanas.search.chain import FAIL_REASON_KEY, RETRY_OF_KEY, released, trial_tokens
from sanas.search.storage import open_storage


def config(crash_log, crash_times: int, every_network: bool = False, search_steps: int = 2,
           filter_num: tuple[int, ...] = (4, 8, 16)) -> RunConfig:
    return RunConfig.from_sources(overrides={
        "space": {"name": "CrashingDartsSpace", "layers": 3, "filter_num": list(filter_num), "init_channels": 4,
                  "crash_log": str(crash_log), "crash_times": crash_times, "every_network": every_network},
        "data": {"dataset": "synthetic", "train_size": 60, "test_size": 20},
        "recipe": {"retain_epoch": 2, "batch_size": 16, "cutout": 0, "device": "cpu"},
        "search": {"search_steps": search_steps, "max_params": "1.0x"},
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


@pytest.mark.slow
def test_a_search_whose_candidates_all_crash_stops_after_a_streak_with_the_reason(tmp_path) -> None:
    """Every candidate's process dies the same way and none finishes: the search stops after FAILURE_STREAK of them,
    in one error that quotes the reason, instead of retrying crashed candidates until it runs out of them."""
    run_dir = tmp_path / "run"
    with pytest.raises(SearchFailed, match=rf"first {FAILURE_STREAK} candidates all failed the same way and none "
                                           rf"finished \(crashed: .*killed by SIGSEGV.*\); fix that"):
        run_worker(config(tmp_path / "crashes.log", 1000, every_network=True, search_steps=20), run_dir,
                   progress="none")
    assert [t.state for t in study_trials(run_dir)] == [TrialState.FAIL] * FAILURE_STREAK


@pytest.mark.slow
def test_the_cli_exits_2_with_one_line_when_every_candidate_crashes(tmp_path, capsys) -> None:
    toml = tmp_path / "crash.toml"
    toml.write_text(f"""[space]
name = "CrashingDartsSpace"
layers = 3
filter_num = [4, 8, 16]
init_channels = 4
crash_log = "{tmp_path / 'crashes.log'}"
crash_times = 1000
every_network = true

[data]
dataset = "synthetic"
train_size = 60
test_size = 20

[recipe]
retain_epoch = 2
batch_size = 16
cutout = 0
device = "cpu"

[search]
search_steps = 20
""")
    assert main(["search", "--config", str(toml), "--run-dir", str(tmp_path / "run"), "--progress", "none"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("sanas search: error: stopped: the first 3 candidates all failed the same way")


@pytest.mark.slow
def test_a_search_that_ends_with_nothing_finished_fails(tmp_path) -> None:
    """Failures with different reasons never trip the streak; a search that then ends with no finished evaluation is
    still an error, not a success."""
    import sanas.runs.worker as worker

    reasons = iter(f"failed: reason {i}" for i in range(100))
    original = worker.check_progress

    def spy(seen, finished, where):  # the real rule, on reasons made distinct
        seen[-1] = next(reasons)
        original(seen, finished, where)

    run_dir = tmp_path / "run"
    mp = pytest.MonkeyPatch()
    mp.setattr(worker, "check_progress", spy)
    try:
        with pytest.raises(SearchFailed, match=r"ended with no finished evaluation: \d+ candidate\(s\) failed"):
            run_worker(config(tmp_path / "crashes.log", 1000, every_network=True, search_steps=3), run_dir,
                       progress="none")
    finally:
        mp.undo()
