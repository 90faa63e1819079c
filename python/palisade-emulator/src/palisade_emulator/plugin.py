"""The pytest plugin (entry point ``pytest11``): the ``palisade`` fixtures.

``palisade`` (function scope) is a fresh :class:`~palisade_emulator.PalisadeServer`
for each test: its own process, database, demo tenant and credentials, stopped
when the test ends. ``palisade_session`` is one server for the whole session
(faster; tests share its state); ``palisade_tenant`` is that server, its demo
tenant reset after each test. The binary comes from ``--palisade-bin``, the
``palisade_bin`` ini option, ``$PALISADE_BIN`` or ``palisade`` on ``PATH``.
Extra ``palisade serve`` flags, and tenants made from documents, for one test::

    @pytest.mark.palisade("--rate-limit", "off", seed={"tenantId": ..., "machines": [...]})
    def test_many_calls(palisade): ...
"""

from __future__ import annotations

from typing import Any, Iterator, List, Optional

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
        "markers",
        "palisade(*args, seed=None): extra `palisade serve` arguments for this test's palisade "
        "fixture; seed: a tenant document (or a list of them) it creates tenants from at start",
    )


def _binary(config: pytest.Config) -> Optional[str]:
    return config.getoption("palisade_bin") or config.getini("palisade_bin") or None


def _common_args(config: pytest.Config) -> List[str]:
    return list(config.getini("palisade_args") or []) + list(config.getoption("palisade_arg") or [])


@pytest.fixture
def palisade(request: pytest.FixtureRequest) -> Iterator[PalisadeServer]:
    """A Palisade server serving the demo tenant, for this test alone."""
    args = _common_args(request.config)
    seed: List[Any] = []
    for marker in reversed(list(request.node.iter_markers("palisade"))):
        args.extend(str(a) for a in marker.args)
        given = marker.kwargs.get("seed")
        if given is not None:
            seed.extend(given if isinstance(given, (list, tuple)) else [given])
    with PalisadeServer(_binary(request.config), args, seed=seed) as server:
        yield server


@pytest.fixture(scope="session")
def palisade_session(request: pytest.FixtureRequest) -> Iterator[PalisadeServer]:
    """One Palisade server for the whole test session (tests share its state)."""
    with PalisadeServer(_binary(request.config), _common_args(request.config)) as server:
        yield server


#: Whether a test used ``palisade_session`` itself since ``palisade_tenant`` last reset it.
_SESSION_USED = pytest.StashKey[bool]()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    names = getattr(item, "fixturenames", ())
    if "palisade_session" in names and "palisade_tenant" not in names:
        item.config.stash[_SESSION_USED] = True


@pytest.fixture
def palisade_tenant(request: pytest.FixtureRequest,
                    palisade_session: PalisadeServer) -> Iterator[PalisadeServer]:
    """The session's server, its demo tenant put back as it started after the
    test (``PalisadeServer.reset()``: machines, tags, actions, rules, clock,
    recorder; ``token`` renewed, the app's), and before it too when a test
    used ``palisade_session`` itself meanwhile: the demo tenant as new for
    each test, without a server start each. Tenants a test created stay."""
    stash = request.config.stash
    if stash.get(_SESSION_USED, False):
        palisade_session.reset()
        stash[_SESSION_USED] = False
    yield palisade_session
    if palisade_session.running:
        palisade_session.reset()
