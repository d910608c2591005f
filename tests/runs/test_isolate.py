"""run_isolated: a candidate's native crash is an outcome with a reason, never the death of the caller."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import _isolated_fns as fns
import pytest
import torch

from sanas.runs.isolate import ISOLATION_ENV, IsolatedRunner, run_isolated


def gone(pid: int, within: float = 20.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def test_value_arguments_and_keywords_pass_through_untouched() -> None:
    outcome = run_isolated(fns.echo, 1, [2, 3], parent=Path("/runs/parent"), early_stop={"after": 2, "rule": "x"})
    assert outcome.ok and outcome.exitcode is None and outcome.signal is None
    assert outcome.value == ((1, [2, 3]), {"parent": Path("/runs/parent"), "early_stop": {"after": 2, "rule": "x"}})


@pytest.mark.parametrize(("fn", "sig", "status"),
                         [(fns.segfault, signal.SIGSEGV, 139), (fns.abort, signal.SIGABRT, 134)])
def test_a_native_crash_is_an_outcome_with_its_signal(fn, sig, status) -> None:
    outcome = run_isolated(fn)
    assert not outcome.ok and outcome.value is None and outcome.signal == sig
    assert outcome.reason == f"killed by {sig.name} (exit status {status})"
    assert run_isolated(fns.echo, "after").value == (("after",), {})  # the caller goes on


def test_a_runner_keeps_its_child_until_a_crash_then_starts_a_fresh_one() -> None:
    data = torch.zeros(4, dtype=torch.uint8)
    with IsolatedRunner() as runner:
        first = runner.run(fns.fill_and_report, data, 1).value[0]
        assert runner.run(fns.fill_and_report, data, 2).value[0] == first == runner.pid  # warm: same process
        with pytest.raises(ValueError, match="bad"):
            runner.run(fns.fail, "bad")
        assert runner.pid == first  # a Python exception does not end the child
        assert runner.run(fns.segfault).signal == signal.SIGSEGV and runner.pid is None
        assert gone(first)
        again = runner.run(fns.fill_and_report, data, 3).value[0]
        assert again not in (first, os.getpid()) and int(data.sum()) == 12
    assert gone(again)  # closed with the runner


def test_an_exit_without_answer_is_an_outcome() -> None:
    outcome = run_isolated(fns.exit_quietly, 3)
    assert not outcome.ok and outcome.exitcode == 3 and outcome.reason == "exited with status 3 without a result"


def test_an_exception_is_raised_again_with_its_type_and_the_childs_traceback() -> None:
    with pytest.raises(ValueError, match="bad setting 7") as info:
        run_isolated(fns.fail, "bad setting 7")
    assert any("raised in the isolated process" in note and "ValueError: bad setting 7" in note
               for note in info.value.__notes__)


def test_tensors_are_shared_not_copied_and_threads_follow_the_caller() -> None:
    data = torch.zeros(1000, 32, dtype=torch.uint8)
    threads = torch.get_num_threads()
    pid, child_threads, shared = run_isolated(fns.fill_and_report, data, 7).value
    assert pid != os.getpid() and child_threads == threads and shared
    assert int(data.sum()) == 7 * data.numel()  # the child wrote into the caller's memory


def test_ctrl_c_in_the_caller_kills_the_child(tmp_path) -> None:
    pid_file = tmp_path / "pid"
    # Ctrl-C as in a terminal: a process a non-interactive shell starts in the background (`cmd &`, as some CI
    # runners do) inherits SIGINT *ignored*, and Python then raises no KeyboardInterrupt at all.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        threading.Timer(0.0, lambda: (_wait_for(pid_file), os.kill(os.getpid(), signal.SIGINT))).start()
        with pytest.raises(KeyboardInterrupt):
            run_isolated(fns.sleep_with_pid, str(pid_file), 120)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert gone(int(pid_file.read_text()))


def _wait_for(path: Path) -> None:
    deadline = time.monotonic() + 120
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)


def test_the_child_ends_when_its_caller_is_killed(tmp_path) -> None:
    pid_file = tmp_path / "pid"
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import _isolated_fns
        from sanas.runs.isolate import run_isolated
        if __name__ == "__main__":
            run_isolated(_isolated_fns.sleep_with_pid, {str(pid_file)!r}, 300)
    """)
    (tmp_path / "caller.py").write_text(script)
    caller = subprocess.Popen([sys.executable, str(tmp_path / "caller.py")])
    try:
        _wait_for(pid_file)
        child = int(pid_file.read_text())
        caller.kill()
        caller.wait(timeout=30)
        assert gone(child), "the isolated child outlived its killed caller"
    finally:
        caller.kill()


def test_isolation_can_be_switched_off_and_a_bad_setting_is_refused(monkeypatch) -> None:
    monkeypatch.setenv(ISOLATION_ENV, "none")
    assert run_isolated(os.getpid).value == os.getpid()
    monkeypatch.setenv(ISOLATION_ENV, "threads")
    with pytest.raises(ValueError, match=f"{ISOLATION_ENV} is 'threads', expected one of forkserver, spawn, none"):
        run_isolated(os.getpid)


def test_spawn_works_too(monkeypatch) -> None:
    monkeypatch.setenv(ISOLATION_ENV, "spawn")
    data = torch.zeros(10, dtype=torch.uint8)
    assert run_isolated(fns.fill_and_report, data, 3).value[2] and int(data.sum()) == 30
    assert run_isolated(fns.segfault).signal == signal.SIGSEGV


def _open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def _children() -> int:
    me = str(os.getpid())
    count = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1] == me:
                count += 1
        except (OSError, IndexError):
            pass
    return count


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts descriptors through /proc")
def test_failing_calls_leak_no_descriptor_and_no_process(tmp_path, monkeypatch) -> None:
    """200 failed calls that carry a tensor in shared memory — half whose child dies, half whose child cannot
    unpickle the call — leave the caller's open descriptors and child processes where 2 left them. Before, every
    call whose child never took the tensor left its shared-memory descriptor open, and every dead child its
    sentinel until a garbage collection (a search of crashing candidates ran out of descriptors)."""
    (tmp_path / "ghost_module.py").write_text("class Ghost:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import ghost_module

    ghost = ghost_module.Ghost()
    data = torch.zeros(64, 3, 32, 32)
    counts = []
    with IsolatedRunner() as runner:
        for i in range(200):
            if i % 2:
                assert runner.run(fns.exit_quietly_with, 3, data).exitcode == 3
            else:
                # The child cannot import the module (a path the caller added after the child started, then removed).
                sys.path.remove(str(tmp_path))
                try:
                    with pytest.raises(RuntimeError, match="No module named 'ghost_module'"):
                        runner.run(fns.echo, ghost, data)
                finally:
                    sys.path.insert(0, str(tmp_path))
            if i in (1, 199):
                counts.append((_open_descriptors(), _children()))
    # A leak is one descriptor (or more) per failed call: 198 here. A few may come and go with the test process's
    # other threads (a suite's leftovers), so the bound is far below that, not exact equality.
    (fds_2, children_2), (fds_200, children_200) = counts
    assert fds_200 - fds_2 <= 5, counts
    assert children_200 <= children_2, counts


def test_the_child_imports_what_the_caller_can(tmp_path, monkeypatch) -> None:
    """A module the caller found on a folder it put on sys.path (a model module in the working directory, say)
    imports in the child too, whatever folder the child's interpreter started in."""
    (tmp_path / "user_module_xyz.py").write_text("class Thing:\n    value = 7\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import user_module_xyz

    with IsolatedRunner() as runner:
        (args, _), = [runner.run(fns.echo, user_module_xyz.Thing()).value]
    assert args[0].value == 7


def test_a_child_that_re_runs_an_unguarded_script_stops_in_one_line(tmp_path) -> None:
    """A script that starts sanas work at its top level, without `if __name__ == "__main__":`, is run again by
    every forkserver/spawn child: the child stops at the first sanas call with one line, and the caller raises."""
    script = tmp_path / "unguarded.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import _isolated_fns as fns
        from sanas.runs.isolate import run_isolated
        print("top", flush=True)
        print(run_isolated(fns.echo, 1).value)
    """))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 1
    assert "sanas: error: a child process re-ran unguarded.py, which starts an isolated process at its top level; " \
           "put it under `if __name__ == \"__main__\":`" in done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        "sanas.processes.MainReimported: the isolated process re-ran unguarded.py from its top, which starts sanas "
        "work again; put that work under `if __name__ == \"__main__\":`")
    assert "bootstrapping phase" not in done.stderr
