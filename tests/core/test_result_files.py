"""Result files are opened only the safe way: strict names, no links followed, no FIFO waited on,
only regular files of the expected uid with one link (dsage_core/result_files.py), on a real
directory."""
import os
import threading

import pytest

from dsage_core.result_files import ResultFileError, ResultsDir, split

REL = "results/000001/1234-2.bin"


@pytest.fixture
def rd(tmp_path):
    d = ResultsDir(tmp_path, uid=os.geteuid(), create=True)
    yield d
    d.close()


def test_only_names_the_server_makes_are_accepted():
    """Anything but results/NNNNNN/<id>[-<attempt>].bin is refused before any file is touched."""
    assert split(REL) == ("000001", "1234-2.bin")
    assert split("results/000000/7.bin") == ("000000", "7.bin")
    for bad in ("results/../../etc/passwd", "/etc/passwd", "results/000001/../x.bin", "results/1/2.bin",
                "results/000001/1234-2.bin/", "results/000001/a.bin", None, 5, "results/000001//1.bin"):
        with pytest.raises(ResultFileError, match="not a result file name"):
            split(bad)


def test_a_regular_file_of_ours_is_read_and_a_wrong_size_refused(rd):
    """The expected file is read whole; a size other than the reported one is a clear error."""
    rd.write(REL, b"x" * 1000)
    assert rd.read(REL) == b"x" * 1000
    assert rd.check(REL, 1000) is None
    assert "has 1000 bytes, not the 999" in rd.check(REL, 999)
    assert "missing" in rd.check("results/000001/1-1.bin", 0)


def test_a_symlink_at_the_name_is_refused_and_removed_as_a_link(rd, tmp_path):
    """A link to a file elsewhere is never followed: not to read it, not to remove it."""
    secret = tmp_path / "secret"
    secret.write_bytes(b"secret")
    rd.write(REL, b"")
    os.unlink(tmp_path / REL)
    os.symlink(secret, tmp_path / REL)
    assert "symbolic link" in rd.check(REL, 6)
    with pytest.raises(ResultFileError, match="symbolic link"):
        rd.read(REL)
    assert rd.unlink(REL) and secret.read_bytes() == b"secret"


def test_a_linked_subdirectory_is_refused(rd, tmp_path):
    """results/NNNNNN itself may not be a link to another directory."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "1234-2.bin").write_bytes(b"abc")
    os.symlink(elsewhere, tmp_path / "results" / "000001")
    assert "not a plain directory" in rd.check(REL, 3)
    assert not rd.unlink(REL) and (elsewhere / "1234-2.bin").exists()
    rd.write(REL, b"mine")   # the server's own write replaces the link by a directory of its own
    assert rd.read(REL) == b"mine" and (elsewhere / "1234-2.bin").read_bytes() == b"abc"


def test_a_fifo_at_the_name_does_not_block(rd, tmp_path):
    """A FIFO is refused at once (opened non-blocking), not waited on forever."""
    rd.write(REL, b"")
    os.unlink(tmp_path / REL)
    os.mkfifo(tmp_path / REL)
    out = []
    t = threading.Thread(target=lambda: out.append(rd.check(REL, 0)), daemon=True)
    t.start()
    t.join(10)
    assert out and "not a regular file" in out[0]


@pytest.mark.skipif(os.geteuid() != 0, reason="making a file of another uid needs root")
def test_a_file_of_another_uid_or_a_hard_link_is_refused(rd, tmp_path):
    """A file owned by another user, or a hard link to a file elsewhere, is refused."""
    import pwd
    nobody = pwd.getpwnam("nobody").pw_uid
    rd.write(REL, b"abc")
    os.chown(tmp_path / REL, nobody, -1)
    assert f"belongs to uid {nobody}" in rd.check(REL, 3)
    os.unlink(tmp_path / REL)
    outside = tmp_path / "outside"
    outside.write_bytes(b"abc")
    os.link(outside, tmp_path / REL)
    assert "2 hard links" in rd.check(REL, 3)


def test_sweep_skips_linked_directories_and_removes_links_as_links(rd, tmp_path):
    """The start-up sweep removes unnamed files but never reaches through a link."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "5-1.bin").write_bytes(b"keep me")
    os.symlink(elsewhere, tmp_path / "results" / "000002")
    rd.write("results/000000/5-1.bin", b"orphan")
    rd.write("results/000000/6.bin", b"named")
    os.symlink(elsewhere / "5-1.bin", tmp_path / "results" / "000000" / "7-1.bin")
    removed = rd.sweep(lambda sub, names: {"results/000000/6.bin"})
    assert removed == 2
    assert sorted(os.listdir(tmp_path / "results" / "000000")) == ["6.bin"]
    assert (elsewhere / "5-1.bin").read_bytes() == b"keep me"


def test_results_directory_itself_may_not_be_a_link(tmp_path):
    """A home whose results/ is a link is refused with a clear error."""
    (tmp_path / "real").mkdir()
    home = tmp_path / "home"
    home.mkdir()
    os.symlink(tmp_path / "real", home / "results")
    with pytest.raises(ResultFileError, match="not a link"):
        ResultsDir(home)
