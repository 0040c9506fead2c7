import pytest

from tests.integration.cluster import start_cluster


@pytest.fixture
def cluster(tmp_path):
    c = start_cluster(tmp_path / "home", slots=2)
    yield c
    c.stop()
