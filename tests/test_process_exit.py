"""A stage's process ends as the interpreter would (threads, atexit handlers, flushed streams, its exit code)
but skips the finalization of its modules."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.conftest import PROJECT_ROOT


def test_the_exit_waits_for_threads_runs_atexit_handlers_and_flushes_then_skips_the_teardown(tmp_path):
    script = textwrap.dedent('''
        import atexit, pathlib, sys, threading, time
        from transferlab.core.process_exit import exit_without_teardown

        out = pathlib.Path(sys.argv[1])

        class Finalized:
            def __del__(self):
                (out / "finalized").write_text("teardown ran")

        kept = Finalized()  # a module global: collected only by the teardown this exit skips
        atexit.register(lambda: (out / "atexit").write_text("ran"))
        threading.Thread(target=lambda: (time.sleep(0.3), (out / "thread").write_text("done"))).start()
        sys.stdout.write("last words, unflushed")
        sys.stderr.write("and on stderr")
        exit_without_teardown(3)
    ''')
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True,
                            env={"PYTHONPATH": str(PROJECT_ROOT)}, timeout=60)
    assert result.returncode == 3
    assert (result.stdout, result.stderr) == ("last words, unflushed", "and on stderr")
    assert (tmp_path / "atexit").read_text() == "ran" and (tmp_path / "thread").read_text() == "done"
    assert not (tmp_path / "finalized").exists()
