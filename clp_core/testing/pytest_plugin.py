"""pytest plugin of clp-core: ``--require-services`` turns "server not reachable" skips into failures."""

from __future__ import annotations

import os

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--require-services",
        action="store_true",
        default=os.environ.get("CLP_REQUIRE_SERVICES") == "1",
        help="fail, instead of skipping, tests whose server (Redis, PostgreSQL...) is not reachable",
    )


def service_unavailable(config: pytest.Config, what: str) -> None:
    """Skip (or fail, under ``--require-services``) because ``what`` is not reachable."""
    if config.getoption("--require-services"):
        pytest.fail(f"{what} is not reachable and --require-services is set", pytrace=False)
    pytest.skip(f"{what} is not reachable")
