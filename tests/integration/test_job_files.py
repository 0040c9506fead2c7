"""``files=``: local files travel with a job (function or code) into its working directory."""
import pytest

from dsage_core.client.payload import SubmitError


def _read(name):
    with open(name) as f:
        return f.read()


def _listdir():
    import os
    return sorted(os.listdir("."))


def test_a_function_job_finds_its_files_in_its_working_directory(cluster, tmp_path):
    """submit and map carry files=; the next job's directory is clean again."""
    data = tmp_path / "data.csv"
    data.write_text("a,b\n1,2\n")
    j = cluster.client.submit(_read, "data.csv", dsage_options={"files": [str(data)]}).wait(60)
    assert j.status == "completed", j.error
    assert j.result == "a,b\n1,2\n"
    assert cluster.client.map(_read, ["data.csv"] * 3, files=[data]).wait(60).results == ["a,b\n1,2\n"] * 3
    assert cluster.client.submit(_listdir).wait(60).result == []


def test_a_code_job_takes_files_as_an_option_too(cluster, tmp_path):
    """files= beside load_files=: both land in the job's directory."""
    (tmp_path / "x.txt").write_text("42")
    j = cluster.client("int(open('x.txt').read())", files=[tmp_path / "x.txt"]).wait(60)
    assert j.status == "completed" and j.result == 42


@pytest.mark.parametrize("bad, message", [("data.csv", "list of paths"), (["nope.txt"], "no such file"),
                                          (["a/x.txt", "b/x.txt"], "two files named 'x.txt'")])
def test_bad_files_are_refused_before_anything_is_sent(cluster, tmp_path, bad, message):
    """A string instead of a list, a missing file, two files of one name: a clear SubmitError."""
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "x.txt").write_text(d)
    bad = bad if isinstance(bad, str) else [str(tmp_path / p) for p in bad]
    with pytest.raises(SubmitError, match=message):
        cluster.client.submit(_read, "x.txt", dsage_options={"files": bad})
