"""A command stops on Ctrl-C and SIGTERM whatever disposition it inherited, and what it forks ends quietly."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import PROJECT_ROOT


def _inheriting(disposition: signal.Handlers):
    """A child's `preexec_fn`: the SIGINT disposition it starts with, whatever this process has."""
    return lambda: signal.signal(signal.SIGINT, disposition)


def _python(script: str, *args: str, disposition: signal.Handlers = signal.SIG_DFL) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(script), *args], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={"PYTHONPATH": str(PROJECT_ROOT)},
                            preexec_fn=_inheriting(disposition))


@pytest.mark.parametrize("sent", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("disposition", [signal.SIG_IGN, signal.SIG_DFL], ids=["background-job", "terminal"])
def test_a_command_stops_on_ctrl_c_and_sigterm_even_when_it_inherited_sigint_ignored(sent, disposition):
    """Issue 42: `cmd &` in a script (a CI runner, nohup) starts with SIGINT ignored, and that survives exec."""
    process = _python('''
        import sys, time
        from transferlab.core.interrupts import stop_on_interrupts

        stop_on_interrupts()
        try:
            print("ready", flush=True)  # inside: the signal may arrive before the next line
            time.sleep(60)
        except KeyboardInterrupt:
            sys.exit(130)
    ''', disposition=disposition)
    assert process.stdout.readline().strip() == "ready"
    process.send_signal(sent)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 130, err


def test_a_fork_pool_terminated_at_work_ends_without_a_traceback(tmp_path):
    """Issue 42: cleanlab's fork pool workers kept the stage's SIGTERM handler; the pool's terminate made them raise
    KeyboardInterrupt (two tracebacks in a successful data report, or a deadlock inside the queue's lock)."""
    process = _python('''
        import multiprocessing, os, sys, time
        from pathlib import Path
        from transferlab.core.interrupts import stop_on_interrupts

        def work(index):
            (Path(sys.argv[1]) / str(index)).touch()
            time.sleep(60)

        stop_on_interrupts()
        pool = multiprocessing.get_context("fork").Pool(2)
        pool.map_async(work, [0, 1], chunksize=1)
        while len(os.listdir(sys.argv[1])) < 2:  # both workers inside a task
            time.sleep(0.01)
        pool.terminate()
        pool.join()
        print("terminated", flush=True)
    ''', str(tmp_path))
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0 and out.strip() == "terminated", err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err


# The tests of the suite that send a signal to a child process, cheap enough to run again here.
SIGNAL_TESTS = ["tests/test_interrupts.py::test_a_command_stops_on_ctrl_c_and_sigterm_even_when_it_inherited_sigint_"
                "ignored", "tests/test_stage_runner.py::test_ctrl_c_and_sigterm_end_in_one_line_and_exit_130",
                "tests/test_child_processes.py"]


def test_the_signal_tests_pass_when_pytest_itself_runs_with_sigint_ignored(tmp_path):
    """`make test &` from a script: pytest and every child it starts inherit SIGINT ignored; the tests set what
    their children start with, so they pass either way."""
    tests = subprocess.run([sys.executable, "-m", "pytest", *SIGNAL_TESTS, "-q", "-p", "no:cacheprovider",
                            f"--basetemp={tmp_path / 'pytest'}"], cwd=PROJECT_ROOT, capture_output=True, text=True,
                           timeout=600, preexec_fn=_inheriting(signal.SIG_IGN))
    assert tests.returncode == 0, tests.stdout[-3000:]
    assert " passed" in tests.stdout and " failed" not in tests.stdout, tests.stdout[-3000:]


def test_dispositions_set_for_a_block_are_put_back_after_it_even_when_it_raises_and_not_set_off_the_main_thread():
    import threading

    from transferlab.core.interrupts import dispositions_while

    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(RuntimeError), dispositions_while({signal.SIGINT: signal.SIG_IGN}):
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
        raise RuntimeError
    assert signal.getsignal(signal.SIGINT) == before
    seen = []

    def elsewhere():
        with dispositions_while({signal.SIGINT: signal.SIG_IGN}):  # Python raises ValueError if it tried
            seen.append(signal.getsignal(signal.SIGINT))

    thread = threading.Thread(target=elsewhere)
    thread.start()
    thread.join()
    assert seen == [before]
