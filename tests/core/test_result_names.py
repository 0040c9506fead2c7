"""One naming scheme for result files (dsage_core/result_files.py), used by the store, the server's
check of a worker's file, the monitor and its children."""
from dsage_core import local_results, result_files


def test_every_writer_names_result_files_one_way():
    """The store's, a worker's and a child's scratch names come from one function and all match
    the only pattern the server accepts."""
    assert result_files.result_name(1234567) == "results/001234/1234567.bin"
    assert local_results.result_name(1234567, 3) == result_files.result_name(1234567, 3) \
        == "results/001234/1234567-3.bin"
    for rel in (result_files.result_name(5), result_files.result_name(5, 2)):
        assert result_files.split(rel) == (rel.split("/")[1], rel.split("/")[2])
    assert result_files.scratch_result_path("/s/1", 7, 2) == "/s/1/results/7-2.bin"
