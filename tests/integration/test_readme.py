"""Every fenced block of README.md runs as a user would type it, so the README cannot drift.

How blocks run, and how to mark one that cannot (a ``<!-- readme-test: ... -->`` comment before
its fence): see :mod:`tests.integration.readme_blocks`. One test per block, named by the block's
section and number (``test_block[on-one-machine#1]``); a failure names the README line.
"""
from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.integration import readme_blocks as rb
from tests.integration.readme_repl import matches

REPO = Path(__file__).resolve().parents[2]
REPL = Path(__file__).resolve().with_name("readme_repl.py")
BLOCKS, PARSE_PROBLEMS = rb.blocks(rb.README.read_text(encoding="utf-8"))

pytestmark = pytest.mark.timeout(rb.DEFAULT_TIMEOUT + 60)


def test_readme_markers_are_valid():
    """The README parses (closed fences, no orphan marker), every marker option is known, and every
    skip is an allowed case with a reason (and, where required, an existing covering test)."""
    problems = list(PARSE_PROBLEMS)
    for b in BLOCKS:
        problems += rb.marker_problems(b, REPO)
    assert not problems, "\n".join(problems)
    assert len({b.ident for b in BLOCKS}) == len(BLOCKS)


def test_parser_sees_markers_and_kinds():
    """The parser's rules, on a small README: a marker binds to the next block only, a block
    without one runs, prompt lines after a python command form its session, & means background."""
    text = ("# A\n\n<!-- readme-test: skip make: the suite itself -->\n\n```\nmake test\n```\n"
            "```\n$ dsage server &   # a comment\npb://x\n$ .venv/bin/python -m asyncio\n>>> 1 + 1\n2\n"
            "$ echo '#not a comment'\n```\n## B c\n```python\nprint(1)\n```\n<!-- readme-test: bogus -->\ntext\n")
    bs, problems = rb.blocks(text)
    assert [(b.ident, b.kind) for b in bs] == [("a#1", "skip"), ("a#2", "transcript"), ("b-c#1", "python")]
    assert problems == ["README line 20: a readme-test marker must come just before a fenced block "
                        "(only blank lines between)"]
    s = rb.steps(bs[1])
    assert [(x.command, x.background, x.want, x.prompt, x.asyncio) for x in s] == [
        ("dsage server", True, "pb://x\n", "", False),
        (".venv/bin/python -m asyncio", False, "", ">>> 1 + 1\n2\n", True),
        ("echo '#not a comment'", False, "", "", False)]
    assert rb.marker_problems(rb.Block("x#1", 1, "", "", {"skip": "desktop: trust me"}, 1), REPO) == [
        "README line 1 (x#1): 'skip desktop' must name the test file that covers the block"]
    assert "not an allowed case" in rb.marker_problems(rb.Block("x#1", 1, "", "", {"skip": "slow: x"}, 1), REPO)[0]


def test_output_comparison_rules():
    """Host and user names, trailing spaces and '...' are normalised; other differences are not."""
    import getpass
    import socket
    host = socket.gethostname().split(".")[0]
    assert matches("myhost-1 keyed (alice)\n", f"{host}-1   keyed ({getpass.getuser()})  \n\n")
    assert matches("pb://...@tcp:127.0.0.1:.../login\n", "pb://abc@tcp:127.0.0.1:4711/login\n")
    assert not matches("4\n", "5\n")
    assert matches("pid 12345\n", "pid 99\n", numbers_vary=True)


def _params():
    return [pytest.param(b, id=b.ident) for b in BLOCKS]


@pytest.mark.e2e
@pytest.mark.parametrize("block", _params())
def test_block(block, tmp_path):
    """Run one README block the way its kind says (see readme_blocks) and compare its output."""
    kind = block.kind
    if kind == "skip":
        pytest.skip(f"README line {block.line}: {block.options['skip']}")
    if kind == "synopsis":
        return _check_synopsis(block)
    with tempfile.TemporaryDirectory(prefix="dsage-rd-") as d:  # short: HOME/server.sock fits
        _run_block(block, Path(d))


def _check_synopsis(block: rb.Block) -> None:
    problems = []
    helps: dict[tuple[str, ...], str] = {}
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    for line, sub, opts in rb.synopsis_commands(block):
        key = tuple(sub)
        if key not in helps:
            if sub[:1] in (["gui"], ["tray"]):  # the desktop commands parse their own options
                argv = [sys.executable, "-m", "dsage_gui" if sub[0] == "gui" else "dsage_gui.tray", "--help"]
            else:
                argv = [sys.executable, "-m", "dsage_core", *sub, "--help"]
            p = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env)
            helps[key] = p.stdout if p.returncode == 0 else ""
            if p.returncode != 0:
                problems.append(f"README line {line}: 'dsage {' '.join(sub)} --help' failed: {p.stderr[-300:]}")
                continue
        for o in opts:
            if o not in helps[key].split() and f"{o}" not in helps[key].replace("[", " ").replace("]", " ").split():
                problems.append(f"README line {line}: 'dsage {' '.join(sub)}' has no option {o}")
    assert not problems, "\n".join(problems)


def _workdir(d: Path) -> dict[str, str]:
    """The block's dir: .venv (the venv running the tests), examples/, a fresh home, TMPDIR."""
    venv = Path(sys.prefix)
    if not (venv / "bin" / "dsage").exists():
        pytest.fail(f"{venv}/bin/dsage is missing: run the tests with the venv's python (make test)")
    (d / ".venv").symlink_to(venv)
    (d / "examples").symlink_to(REPO / "examples")
    (d / "home").mkdir()
    (d / "tmp").mkdir()
    return dict(os.environ, DSAGE_HOME=str(d / "home"), TMPDIR=str(d / "tmp"), VIRTUAL_ENV=str(venv),
                PATH=f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}", QT_QPA_PLATFORM="offscreen",
                PYTHONUNBUFFERED="1")


def _run_block(block: rb.Block, d: Path) -> None:
    env = _workdir(d)
    if block.kind == "python":
        (d / "block.py").write_text(block.text)
        steps = [rb.Step(block.line, ".venv/bin/python block.py")]
    else:
        steps = rb.steps(block)
    out = d / ".readme-test"
    out.mkdir()
    script = ["set +e", 'trap \'kill -TERM $(jobs -p) 2>/dev/null; wait\' EXIT']
    bg = []
    for i, s in enumerate(steps):
        o = f"{out}/out{i}"
        if s.prompt:
            (out / f"prompt{i}").write_text(s.prompt)
            py = shlex.split(s.command)[0]
            cmd = f"{py} {REPL} {'--asyncio ' if s.asyncio else ''}{out}/prompt{i} {s.prompt_line}"
        else:
            cmd = s.command
        if s.background:
            script.append(f"{cmd} > {o} 2>&1 < /dev/null &")
            bg.append(i)
        else:
            script.append(f"{{ {cmd}\n}} > {o} 2>&1 < /dev/null; echo $? > {out}/rc{i}")
            script.append(f'[ "$(cat {out}/rc{i})" = 0 ] || exit 0')
    # what the background commands printed, before SIGTERM adds their goodbyes
    script += [f"cp {out}/out{i} {out}/final{i}" for i in bg]
    (out / "block.sh").write_text("\n".join(script) + "\n")
    p = subprocess.Popen(["bash", str(out / "block.sh")], cwd=d, env=env, start_new_session=True,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        shell_out, _ = p.communicate(timeout=block.timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        done = [i for i in range(len(steps)) if (out / f"rc{i}").exists()]
        i = len(done)
        pytest.fail(f"{block.ident}: README line {steps[min(i, len(steps) - 1)].line} did not finish within "
                    f"{block.timeout:g} s: $ {steps[min(i, len(steps) - 1)].command}\n{_tail(out, i)}")
    finally:
        try:
            os.killpg(p.pid, signal.SIGKILL)   # anything the block left behind
        except ProcessLookupError:
            pass
    numbers = "numbers-vary" in block.options
    for i, s in enumerate(steps):
        where = f"{block.ident}: README line {s.line}: $ {s.command}"
        if s.background:
            continue
        rc_file = out / f"rc{i}"
        assert rc_file.exists(), f"{where}\nnot run (bash said: {shell_out[-500:]})"
        got = (out / f"out{i}").read_text(errors="replace")
        rc = int(rc_file.read_text())
        assert rc == 0, f"{where}\nexited {rc}:\n{got[-3000:]}"
        if s.want and not matches(s.want, got, numbers):
            pytest.fail(f"{where}\nthe README shows:\n{s.want}it printed:\n{got[-3000:]}")
    for i in bg:
        s = steps[i]
        got = (out / f"final{i}").read_text(errors="replace") if (out / f"final{i}").exists() else ""
        if s.want and not matches(s.want, got, numbers):
            pytest.fail(f"{block.ident}: README line {s.line}: $ {s.command} &\nthe README shows:\n{s.want}"
                        f"it printed by the end of the block:\n{got[-3000:]}")


def _tail(out: Path, i: int) -> str:
    f = out / f"out{i}"
    return f.read_text(errors="replace")[-3000:] if f.exists() else ""
