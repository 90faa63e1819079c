"""Test Microsoft Defender for Endpoint automation against Palisade.

- :class:`PalisadeServer` starts ``palisade serve --demo`` on a free port in a
  temporary directory and gives its URLs, credentials, a token and clients;
- :class:`ControlClient` drives the emulator control plane (``/_palisade/v1``):
  outcome rules, clock, faults, state, alerts, recorder;
- the pytest plugin (installed with the package) gives the ``palisade``,
  ``palisade_session`` and ``palisade_tenant`` fixtures.
"""

from .control import (
    ControlClient,
    ControlError,
    iso_duration,
    iso_instant,
    parse_duration,
    parse_instant,
    whole_seconds,
)
from .server import (
    MDE_SCOPE,
    ApiSession,
    PalisadeNotFound,
    PalisadeServer,
    PalisadeStartError,
    TokenError,
    find_binary,
    start,
)

__all__ = [
    "MDE_SCOPE",
    "ApiSession",
    "ControlClient",
    "ControlError",
    "PalisadeNotFound",
    "PalisadeServer",
    "PalisadeStartError",
    "TokenError",
    "find_binary",
    "iso_duration",
    "iso_instant",
    "parse_duration",
    "parse_instant",
    "start",
    "whole_seconds",
]

__version__ = "0.1.0"
