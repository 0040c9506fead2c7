"""The ``dsage`` command's argument handling and output, in-process with a fake client: no server."""
import argparse
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

from dsage_core import cli
from dsage_core.client.api import Client
from dsage_core.client.job import JobTracker
from dsage_core.model.job import ALL_STATES

pytestmark = pytest.mark.timeout(60)


class FakeClient:
    """Stands in for ``dsage_core.client.api.Client``: records what the commands send."""

    def __init__(self):
        self.submitted = []
        self.list_queries = []
        self.closed = False
        self.aclient = SimpleNamespace(list_jobs=self._list_jobs)

    def eval(self, code, **options):
        return SimpleNamespace(id=46)

    def _submit(self, subs):
        self.submitted.extend(subs)
        return [SimpleNamespace(id=100 + i, name=s.name) for i, s in enumerate(subs)]

    def _sync(self, fn, *args, **kw):
        return fn(*args, **kw)

    def _list_jobs(self, **query):
        self.list_queries.append(query)
        return []

    def shutdown(self):
        self.closed = True


@pytest.fixture
def fake(monkeypatch):
    """The CLI's client factory returns a FakeClient; ``fake.connects`` counts connections."""
    client = FakeClient()
    client.connects = 0

    def connect(args):
        client.connects += 1
        return client
    monkeypatch.setattr(cli, "_client", connect)
    return client


def test_submit_bad_file_submits_nothing(fake, tmp_path, capsys):
    """A missing file among good ones fails the command before it connects: no job is sent."""
    good = tmp_path / "a.py"
    good.write_text("DSAGE_RESULT = 1\n")
    assert cli.main(["submit", str(good), str(tmp_path / "nope.py")]) == 1
    assert fake.connects == 0 and fake.submitted == []
    assert capsys.readouterr().err == f"dsage: error: no such file: {tmp_path / 'nope.py'}\n"


@pytest.mark.parametrize("bad, message", [("b.txt", "only .py and .sage files"), ("d.py", "is a directory")])
def test_submit_wrong_kind_of_file_submits_nothing(fake, tmp_path, capsys, bad, message):
    """A file that is not a .py/.sage file, or a directory, also stops the whole command first."""
    (tmp_path / "a.py").write_text("DSAGE_RESULT = 1\n")
    (tmp_path / "b.txt").write_text("x")
    (tmp_path / "d.py").mkdir()
    assert cli.main(["submit", str(tmp_path / "a.py"), str(tmp_path / bad)]) == 1
    assert fake.connects == 0 and fake.submitted == []
    assert message in capsys.readouterr().err


def test_submit_without_wait_names_each_job(fake, tmp_path, capsys):
    """Good files go in one batch, with the options; each prints 'submitted job N (FILE)'."""
    paths = [tmp_path / "a.py", tmp_path / "b.py"]
    for p in paths:
        p.write_text("DSAGE_RESULT = 1\n")
    assert cli.main(["submit", *map(str, paths), "--priority", "3", "--timeout", "5"]) == 0
    assert [s.name for s in fake.submitted] == ["a.py", "b.py"]
    assert [(s.options.priority, s.options.timeout) for s in fake.submitted] == [(3, 5.0), (3, 5.0)]
    assert capsys.readouterr().out == f"submitted job 100 ({paths[0]})\nsubmitted job 101 ({paths[1]})\n"
    assert fake.closed


def test_eval_without_wait_says_submitted(fake, capsys):
    """Without --wait, eval prints 'submitted job N', not a bare number that reads like a result."""
    assert cli.main(["eval", "2+2"]) == 0
    assert capsys.readouterr().out == "submitted job 46\n"


def test_jobs_status_choices_are_the_job_states(fake):
    """--status accepts exactly the states a job can be in, and passes them to the server."""
    action = _option(cli.build_parser(), "jobs", "--status")
    assert set(action.choices) == {"waiting", "queued", "assigned", "running", "paused", "completed", "failed", "killed",
                                   "timed_out", "lost"}
    assert tuple(action.choices) == ALL_STATES
    assert cli.main(["jobs", "--status", "timed_out"]) == 0
    assert fake.list_queries[0]["status"] == "timed_out"


def test_jobs_bad_status_is_a_usage_error(fake, capsys):
    """An unknown --status is argparse's usage error (exit 2) naming the allowed values; no connection."""
    with pytest.raises(SystemExit) as e:
        cli.main(["jobs", "--status", "bogus"])
    assert e.value.code == 2 and fake.connects == 0
    err = capsys.readouterr().err
    assert "invalid choice: 'bogus'" in err and "'timed_out', 'lost'" in err


@pytest.mark.parametrize("command", ["job", "kill"])
def test_non_numeric_job_id_is_one_clear_line(fake, capsys, command):
    """dsage job abc / dsage kill abc: usage plus one error line, no traceback, exit 2."""
    with pytest.raises(SystemExit) as e:
        cli.main([command, "abc"])
    assert e.value.code == 2 and fake.connects == 0
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == f"dsage {command}: error: argument id: invalid int value: 'abc'"
    assert "Traceback" not in err


def test_every_option_has_help():
    """Every argument of every subcommand explains itself in --help."""
    missing = [f"{name} {'/'.join(a.option_strings) or a.dest}"
               for name, sp in _subparsers(cli.build_parser())
               for a in sp._actions if not a.help]
    assert missing == []


def test_help_states_units_order_and_defaults():
    """The help says the timeout unit, what priority means, the allowed statuses and slot defaults."""
    p = cli.build_parser()
    assert "seconds" in _option(p, "eval", "--timeout").help
    assert "seconds" in _option(p, "submit", "--timeout").help
    assert "higher runs first" in _option(p, "eval", "--priority").help
    worker_help = _help(p, "worker")
    assert f"(default: {max(1, (os.cpu_count() or 2) - 1)}," in worker_help
    assert "(default: 2)" in _help(p, "start-all")
    assert "timed_out, lost" in " ".join(_help(p, "jobs").split())


@pytest.mark.parametrize("buffering", [1, -1], ids=["fails-in-print", "fails-in-flush"])
def test_output_to_a_closed_pipe_exits_quietly(fake, capsys, monkeypatch, buffering):
    """When stdout's reader has gone (dsage jobs | head), main returns 141 and prints no error,
    whether the write fails at once (line-buffered) or when main flushes (block-buffered)."""
    r, w = os.pipe()
    os.close(r)
    out = open(w, "w", buffering=buffering)
    monkeypatch.setattr(sys, "stdout", out)
    try:
        assert cli.main(["eval", "2+2"]) == 141
    finally:
        monkeypatch.undo()
        out.close()  # fd w now points at /dev/null: closing flushes without an error
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("unbuffered", ["1", ""], ids=["unbuffered", "buffered"])
def test_command_output_to_a_closed_pipe_exits_quietly(tmp_path, unbuffered):
    """The real command (here ``setup``, which needs no server) writing into a closed pipe exits 141
    with nothing on stderr: no traceback, no 'Exception ignored' from the interpreter's last flush."""
    r, w = os.pipe()
    os.close(r)
    try:
        p = subprocess.run([sys.executable, "-m", "dsage_core", "setup", "--yes"], stdout=w,
                           stderr=subprocess.PIPE, text=True, timeout=30,
                           env=dict(os.environ, DSAGE_HOME=str(tmp_path / "home"), PYTHONUNBUFFERED=unbuffered))
    finally:
        os.close(w)
    assert (p.returncode, p.stderr) == (141, "")


class FakeAsyncClient:
    """Knows job 46 only; records the ids it was asked to watch."""

    def __init__(self):
        self.watched = []

    def watch(self, ids):
        self.watched.append(ids)
        return {i: JobTracker(i) for i in ids if i == 46}


@pytest.fixture
def api_client():
    c = Client(FakeAsyncClient())
    c._sync = lambda fn, *args, **kw: fn(*args)
    return c


@pytest.mark.parametrize("job_id", [46, "46"])
def test_get_job_accepts_ints_and_digit_strings(api_client, job_id):
    """An int or a string of digits (as the CLI prints ids) finds the job."""
    assert api_client.get_job(job_id).id == 46
    assert api_client.aclient.watched == [[46]]


@pytest.mark.parametrize("job_id, error", [("abc", ValueError), ("4.5", ValueError), ("", ValueError),
                                           (True, TypeError), (4.5, TypeError), (None, TypeError)])
def test_get_job_rejects_non_integers_clearly(api_client, job_id, error):
    """A job id that is not an integer fails with a clear message before anything is asked."""
    with pytest.raises(error) as e:
        api_client.get_job(job_id)
    assert str(e.value) == f"job id must be an integer, got {job_id!r}"
    assert api_client.aclient.watched == []


def test_get_job_unknown_id_is_key_error(api_client):
    """A well-formed id the server does not know is still a KeyError."""
    with pytest.raises(KeyError, match="no such job: 7"):
        api_client.get_job("7")


def _subparsers(parser):
    """(name, parser) for every subcommand and sub-subcommand."""
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            for name, sp in a.choices.items():
                yield name, sp
                yield from ((f"{name} {n}", s) for n, s in _subparsers(sp))


def _option(parser, command, option):
    sp = dict(_subparsers(parser))[command]
    return next(a for a in sp._actions if option in a.option_strings)


def _help(parser, command):
    return dict(_subparsers(parser))[command].format_help()


@pytest.mark.parametrize("command, option", [("gui", "--screenshot"), ("tray", "--invite")])
def test_desktop_commands_print_their_own_options_for_help(command, option):
    """`dsage gui --help` and `dsage tray --help` show the app's options, not a forwarding stub."""
    import subprocess
    import sys
    p = subprocess.run([sys.executable, "-m", "dsage_core", command, "--help"], capture_output=True,
                       text=True, timeout=60, env={**__import__("os").environ, "QT_QPA_PLATFORM": "offscreen"})
    assert p.returncode == 0, p.stderr
    assert f"usage: dsage {command}" in p.stdout and option in p.stdout
