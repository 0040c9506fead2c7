"""Run the ``>>>`` lines of a README block as a user types them at the Python prompt, and compare
what the prompt prints with the README (used by test_readme.py, as a script in a subprocess).

    python readme_repl.py [--asyncio] FILE LINE

*FILE* holds the block's prompt lines; *LINE* is the README line of its first one. ``--asyncio``
is ``python -m asyncio``'s prompt, where ``await`` works at the top level. Each example is compiled
in "single" mode (so an expression's value is printed, as at the prompt) and its printed output
is compared, after :func:`normalise`, with doctest's ELLIPSIS and NORMALIZE_WHITESPACE rules. An
exception matches a ``Traceback (most recent call last):`` example by its last line, as in doctest.
Stops at the first mismatch (later lines usually depend on it), exit code 1, with a report.
"""
from __future__ import annotations

import ast
import asyncio
import doctest
import getpass
import io
import re
import socket
import sys
import traceback
from contextlib import redirect_stdout

#: what the README writes for this machine's host name and login name
README_HOST = "myhost"
README_USER = "alice"

FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def normalise(text: str, numbers_vary: bool = False) -> str:
    """The README's view of an output: this machine's host and user names read as ``myhost`` and
    ``alice``; trailing spaces and leading/trailing blank lines go; with *numbers_vary*, every
    number reads as ``N`` (pids, ports, CPU and memory figures)."""
    host = socket.gethostname().split(".")[0]
    try:
        user = getpass.getuser()
    except Exception:
        user = None
    if host:
        text = re.sub(rf"(?<![\w.-]){re.escape(host)}(?![\w])", README_HOST, text)
    if user:
        text = re.sub(rf"(?<![\w-]){re.escape(user)}(?![\w-])", README_USER, text)
    if numbers_vary:
        text = re.sub(r"\d+(\.\d+)?", "N", text)
    lines = [ln.rstrip() for ln in text.splitlines()]
    return "\n".join(lines).strip("\n") + "\n" if any(lines) else ""


def matches(want: str, got: str, numbers_vary: bool = False) -> bool:
    """Does *got* show what the README's *want* shows (both normalised; ``...`` matches anything)?"""
    return doctest.OutputChecker().check_output(normalise(want, numbers_vary), normalise(got, numbers_vary),
                                                FLAGS)


def run(text: str, first_line: int, use_asyncio: bool) -> int:
    examples = doctest.DocTestParser().get_examples(text)
    ns: dict = {"__name__": "__main__", "__builtins__": __builtins__}
    loop = asyncio.new_event_loop() if use_asyncio else None
    flags = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT if use_asyncio else 0
    sys.displayhook = sys.__displayhook__
    for ex in examples:
        out = io.StringIO()
        exc_line = None
        try:
            code = compile(ex.source, "<stdin>", "single", flags, dont_inherit=True)
            with redirect_stdout(out):
                sys.stdout = out  # the displayhook writes to sys.stdout
                if code.co_flags & 0x80 and loop is not None:   # CO_COROUTINE: a top-level await
                    loop.run_until_complete(eval(code, ns))
                else:
                    exec(code, ns)
        except BaseException as e:  # noqa: BLE001 - a README example may show an exception
            if isinstance(e, SystemExit):
                raise
            exc_line = traceback.format_exception_only(type(e), e)[-1]
            tb = traceback.format_exc()
        finally:
            sys.stdout = sys.__stdout__
        got = out.getvalue()
        where = f"README line {first_line + ex.lineno}: >>> {ex.source.strip()}"
        if exc_line is not None:
            if ex.exc_msg is None or not matches(ex.exc_msg, exc_line):
                print(f"{where}\nraised (the README shows {'no exception' if ex.exc_msg is None else ex.exc_msg!r}):\n"
                      f"{got}{tb}")
                return 1
            continue
        if ex.exc_msg is not None or not matches(ex.want, got):
            print(f"{where}\nthe README shows:\n{ex.want if ex.exc_msg is None else ex.exc_msg}"
                  f"it printed:\n{got}")
            return 1
    return 0


def main(argv: list[str]) -> int:
    use_asyncio = argv[:1] == ["--asyncio"]
    if use_asyncio:
        argv = argv[1:]
    with open(argv[0], encoding="utf-8") as f:
        text = f.read()
    return run(text, int(argv[1]), use_asyncio)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
