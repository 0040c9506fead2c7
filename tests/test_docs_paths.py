"""The documents name only modules that exist: every ``dsage_core/...`` and ``dsage_gui/...`` path
in docs/*.md is a file or directory of this tree."""
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent
PATH = re.compile(r"\bdsage_(?:core|gui)/[A-Za-z0-9_/]*(?:\.py\b|/)")

#: modules of issue 19's target layout that other branches of the same session create; the docs
#: describe that layout. Once merged, a path here must be removed (the test says which).
PENDING: set[str] = set()   #: modules the docs name before they are merged (none now)


def named_paths() -> dict[str, str]:
    """Every module path the docs name, with the first document naming it."""
    found: dict[str, str] = {}
    for doc in sorted((ROOT / "docs").glob("*.md")):
        for p in PATH.findall(doc.read_text()):
            found.setdefault(p, doc.name)
    return found


def test_docs_name_only_modules_that_exist():
    """A path in docs/*.md that is neither in the tree nor pending from this session's branches fails."""
    found = named_paths()
    assert len(found) > 20, "the path pattern found almost nothing: is it broken?"
    missing = sorted(f"{doc}: {p}" for p, doc in found.items() if not (ROOT / p).exists() and p not in PENDING)
    assert missing == []


def test_pending_modules_are_still_pending():
    """PENDING lists only modules not merged yet: a merged one must leave the list, so the first
    test checks it like every other path."""
    assert sorted(p for p in PENDING if (ROOT / p).exists()) == []
