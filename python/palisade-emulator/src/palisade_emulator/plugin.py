"""The pytest plugin (entry point ``pytest11``): the ``palisade`` fixture.

``palisade`` (function scope) is a fresh :class:`~palisade_emulator.PalisadeServer`
for each test: its own process, database, demo tenant and credentials, stopped
when the test ends. ``palisade_session`` is one server for the whole session
(faster; tests share its state). The binary comes from ``--palisade-bin``, the
``palisade_bin`` ini option, ``$PALISADE_BIN`` or ``palisade`` on ``PATH``.
Extra ``palisade serve`` flags for one test::

    @pytest.mark.palisade("--rate-limit", "off")
    def test_many_calls(palisade): ...
"""

from __future__ import annotations

from typing import Iterator, List, Optional

import pytest

from .server import PalisadeServer


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("palisade", "Palisade MDE emulator")
    group.addoption("--palisade-bin", default=None,
                    help="the palisade binary (default: $PALISADE_BIN, else palisade on PATH)")
    group.addoption("--palisade-arg", action="append", default=[], metavar="ARG",
                    help="an extra `palisade serve` argument for every server (repeatable)")
    parser.addini("palisade_bin", "the palisade binary (default: $PALISADE_BIN, else palisade on PATH)")
    parser.addini("palisade_args", "extra `palisade serve` arguments for every server", type="args")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "palisade(*args): extra `palisade serve` arguments for this test's palisade fixture"
    )


def _binary(config: pytest.Config) -> Optional[str]:
    return config.getoption("palisade_bin") or config.getini("palisade_bin") or None


def _common_args(config: pytest.Config) -> List[str]:
    return list(config.getini("palisade_args") or []) + list(config.getoption("palisade_arg") or [])


@pytest.fixture
def palisade(request: pytest.FixtureRequest) -> Iterator[PalisadeServer]:
    """A Palisade server serving the demo tenant, for this test alone."""
    args = _common_args(request.config)
    for marker in reversed(list(request.node.iter_markers("palisade"))):
        args.extend(str(a) for a in marker.args)
    with PalisadeServer(_binary(request.config), args) as server:
        yield server


@pytest.fixture(scope="session")
def palisade_session(request: pytest.FixtureRequest) -> Iterator[PalisadeServer]:
    """One Palisade server for the whole test session (tests share its state)."""
    with PalisadeServer(_binary(request.config), _common_args(request.config)) as server:
        yield server
