"""The fenced blocks of README.md, how each one runs, and the markers that say otherwise.

The rules (also in the report to the lead; test_readme.py enforces them):

* **Every fenced block runs**, unless an HTML comment on the line just before its opening fence
  (blank lines between are allowed) says otherwise. GitHub does not show such comments::

      <!-- readme-test: OPTION; OPTION -->

* How an unmarked block runs depends on what it holds:

  - **a transcript** (lines starting with ``$ ``): one bash per block, in a fresh temporary dir
    holding ``.venv`` (the venv running the tests) and ``examples/``, with a fresh ``DSAGE_HOME``,
    ``.venv/bin`` first on ``PATH`` and ``TMPDIR`` inside the block's dir. Each ``$`` command must
    exit 0. The lines after a command are its expected output (stdout and stderr together); when
    there are none, the output is not checked. A command ending in ``&`` runs in the background,
    its output is compared at the end of the block, and it gets SIGTERM when the block ends. A
    command that starts Python (``python``, ``.venv/bin/python``, ``... -m asyncio``) followed by
    ``>>>`` lines runs those lines at that prompt (``readme_repl.py``): each prompt's output is
    compared with the README like a doctest.
  - **a prompt session** (``>>>`` lines, no ``$``): the same, in ``.venv/bin/python``.
  - **a ```python block**: saved as a file and run with ``.venv/bin/python FILE``; must exit 0.
  - **any other block**: each line that is not a comment is a shell command, which must exit 0.

* Output is compared after normalising: this machine's host name reads as ``myhost``, the login
  name as ``alice``, spaces and blank lines at the ends do not count, ``...`` matches anything.

* Options of the marker:

  - ``skip KIND: WHY``: not run. KIND is one of :data:`SKIP_KINDS` and WHY must be given; for
    ``desktop`` and ``two-machines`` WHY names the test file (``tests/...py``) that covers the
    block, and that file must exist.
  - ``synopsis``: a usage summary (``dsage CMD [--opt X] | dsage CMD2``): each ``dsage`` command
    must exist and accept every ``--option`` the line names (checked against its ``--help``).
  - ``numbers-vary``: in this block's output every number matches any number (pids, ports, CPUs).
  - ``timeout SECONDS``: more than the default :data:`DEFAULT_TIMEOUT` for this block.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"

SKIP_KINDS = {
    "make": "make run / make test: the app itself, or the suite running itself",
    "desktop": "needs a desktop session (tray icon, app window); name the test that covers it",
    "two-machines": "needs a second machine; name the test that covers it",
}
#: kinds whose reason must name an existing test file
SKIP_NEEDS_TEST = {"desktop", "two-machines"}
DEFAULT_TIMEOUT = 180.0

_MARKER = re.compile(r"^\s*<!--\s*readme-test:(.*?)-->\s*$")
_FENCE = re.compile(r"^(\s*)(```+|~~~+)\s*([\w+-]*)\s*$")
_PYTHON_CMD = re.compile(r"^(\S*/)?python3?(\s+-m\s+asyncio)?$")


@dataclass
class Block:
    """One fenced block: where it is, what it holds, and its marker options."""

    ident: str            #: "quick-start-python#1": the section's slug and the block's number in it
    line: int             #: README line of the first line inside the fence
    lang: str
    text: str
    options: dict[str, str] = field(default_factory=dict)
    marker_line: int | None = None

    @property
    def kind(self) -> str:
        if "skip" in self.options:
            return "skip"
        if "synopsis" in self.options:
            return "synopsis"
        lines = self.text.splitlines()
        if any(ln.startswith("$ ") for ln in lines):
            return "transcript"
        if any(ln.startswith(">>>") for ln in lines):
            return "prompt"
        if self.lang in ("python", "py"):
            return "python"
        return "shell"

    @property
    def timeout(self) -> float:
        return float(self.options.get("timeout", DEFAULT_TIMEOUT))


def slug(heading: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", heading.lower()).strip("-") or "top"


def parse_options(body: str) -> dict[str, str]:
    """``skip make: why; numbers-vary`` -> {"skip": "make: why", "numbers-vary": ""}."""
    opts: dict[str, str] = {}
    for part in body.split(";"):
        part = part.strip()
        if part:
            name, _, rest = part.partition(" ")
            opts[name] = rest.strip()
    return opts


def blocks(text: str) -> tuple[list[Block], list[str]]:
    """The README's fenced blocks, and problems found while reading them (orphan markers,
    unclosed fences)."""
    out: list[Block] = []
    problems: list[str] = []
    heading = "top"
    count: dict[str, int] = {}
    pending: tuple[int, dict[str, str]] | None = None   # a marker waiting for its block
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        ln = lines[i]
        m = _MARKER.match(ln)
        f = _FENCE.match(ln)
        if m:
            if pending is not None:
                problems.append(f"README line {pending[0]}: a readme-test marker with no block after it")
            pending = (i + 1, parse_options(m.group(1)))
        elif f:
            fence = f.group(2)
            body = []
            j = i + 1
            while j < len(lines) and not lines[j].strip().startswith(fence):
                body.append(lines[j])
                j += 1
            if j == len(lines):
                problems.append(f"README line {i + 1}: the fence is never closed")
            count[heading] = count.get(heading, 0) + 1
            b = Block(f"{slug(heading)}#{count[heading]}", i + 2, f.group(3).lower(), "\n".join(body) + "\n")
            if pending is not None:
                b.marker_line, b.options = pending
                pending = None
            out.append(b)
            i = j
        elif ln.strip():
            if pending is not None:
                problems.append(f"README line {pending[0]}: a readme-test marker must come just before "
                                f"a fenced block (only blank lines between)")
                pending = None
            if ln.startswith("#"):
                heading = ln.lstrip("#").strip()
        i += 1
    if pending is not None:
        problems.append(f"README line {pending[0]}: a readme-test marker with no block after it")
    return out, problems


def marker_problems(b: Block, repo: Path) -> list[str]:
    """What is wrong with a block's marker (unknown options, a skip without a good reason)."""
    where = f"README line {b.marker_line} ({b.ident})"
    bad = []
    known = {"skip", "synopsis", "numbers-vary", "timeout"}
    for name in b.options:
        if name not in known:
            bad.append(f"{where}: unknown readme-test option {name!r} (known: {', '.join(sorted(known))})")
    if "skip" in b.options:
        kind, _, why = b.options["skip"].partition(":")
        kind, why = kind.strip(), why.strip()
        if kind not in SKIP_KINDS:
            bad.append(f"{where}: 'skip {kind}' is not an allowed case; the allowed ones are: "
                       + "; ".join(f"{k} ({v})" for k, v in SKIP_KINDS.items()))
        elif not why:
            bad.append(f"{where}: 'skip {kind}' needs a reason after a colon")
        elif kind in SKIP_NEEDS_TEST:
            tests = re.findall(r"tests/[\w/.-]+\.py", why)
            if not tests:
                bad.append(f"{where}: 'skip {kind}' must name the test file that covers the block")
            for t in tests:
                if not (repo / t).exists():
                    bad.append(f"{where}: {t} does not exist")
    if "timeout" in b.options:
        try:
            float(b.options["timeout"])
        except ValueError:
            bad.append(f"{where}: timeout needs a number of seconds")
    return bad


@dataclass
class Step:
    """One command of a transcript, with the output the README shows after it."""

    line: int
    command: str                  #: without the comment and the trailing "&"
    background: bool = False
    want: str = ""
    prompt: str = ""              #: the ">>>" lines typed at a Python prompt this command starts
    prompt_line: int = 0
    asyncio: bool = False


def strip_comment(cmd: str) -> str:
    """The command without a trailing ``# comment`` (a ``#`` after whitespace, outside quotes)."""
    quote = None
    for k, ch in enumerate(cmd):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (k == 0 or cmd[k - 1].isspace()):
            return cmd[:k].rstrip()
    return cmd.rstrip()


def steps(b: Block) -> list[Step]:
    """The commands of a transcript, prompt session or plain shell block."""
    kind = b.kind
    lines = b.text.splitlines()
    if kind == "prompt":
        return [Step(b.line, ".venv/bin/python", prompt=b.text, prompt_line=b.line)]
    if kind == "shell":
        out, buf = [], ""
        for k, ln in enumerate(lines):
            if not ln.strip() or ln.lstrip().startswith("#"):
                continue
            buf += ln[:-1] + " " if ln.endswith("\\") else ln
            if not ln.endswith("\\"):
                out.append(_step(b.line + k, buf))
                buf = ""
        return out
    out = []
    for k, ln in enumerate(lines):
        if ln.startswith("$ "):
            out.append(_step(b.line + k, ln[2:]))
        elif not out:
            continue  # text before the first command (none in the README today)
        elif ln.startswith(">>>") or (out[-1].prompt and not ln.startswith("$")):
            s = out[-1]
            if not _PYTHON_CMD.match(s.command):
                raise ValueError(f"README line {b.line + k}: '>>>' lines after a command that does not start "
                                 f"Python ({s.command!r})")
            if not s.prompt:
                s.prompt_line = b.line + k
                s.asyncio = "asyncio" in s.command
            s.prompt += ln + "\n"
        else:
            out[-1].want += ln + "\n"
    return out


def _step(line: int, raw: str) -> Step:
    cmd = strip_comment(raw)
    bg = cmd.endswith("&") and not cmd.endswith("&&")
    return Step(line, cmd[:-1].rstrip() if bg else cmd, background=bg)


def synopsis_commands(b: Block) -> list[tuple[int, list[str], list[str]]]:
    """(line, ["user", "add"], ["--key", "--role"]) for each ``dsage ...`` of a synopsis block."""
    found = []
    for k, ln in enumerate(b.text.splitlines()):
        text = strip_comment(ln)
        for part in re.split(r"\s\|\s(?=dsage\b)", text):
            words = part.split()
            if not words or words[0] != "dsage":
                continue
            sub = []
            for w in words[1:]:
                if re.fullmatch(r"[a-z][a-z-]*", w):
                    sub.append(w)
                else:
                    break
            found.append((b.line + k, sub, re.findall(r"(?<![\w-])--[a-z][a-z-]*", part)))
    return found
