"""A client of Palisade's emulator control plane (``/_palisade/v1``).

Every call carries the operator token and is made for one tenant; an answer
that is not a success raises :class:`ControlError`, which carries the status
and the MDE-shaped error body (``{"error": {"code", "message", "target"}}``).
"""

from __future__ import annotations

import datetime as _dt
import json as _json
import os
import re
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import requests

#: Where the control plane is served.
BASE_PATH = "/_palisade/v1"

JSON_TYPE = "application/json"
YAML_TYPE = "application/yaml"

Duration = Union[str, int, float, _dt.timedelta]
Instant = Union[str, _dt.datetime]


class ControlError(Exception):
    """The control plane answered with an error.

    ``status`` is the HTTP status, ``body`` the parsed body (or ``None``),
    ``code``, ``message`` and ``target`` the fields of its ``error``."""

    def __init__(self, response: requests.Response) -> None:
        self.response = response
        self.status: int = response.status_code
        try:
            self.body: Any = response.json()
        except ValueError:
            self.body = None
        error = self.body.get("error") if isinstance(self.body, dict) else None
        error = error if isinstance(error, dict) else {}
        self.code: Optional[str] = error.get("code")
        self.message: str = error.get("message") or response.text
        self.target: Optional[str] = error.get("target")
        request = response.request
        where = f"{request.method} {request.path_url}" if request is not None else response.url
        super().__init__(f"{where}: {self.status} {self.code or response.reason}: {self.message}")


def iso_duration(value: Duration) -> str:
    """An ISO-8601 duration: a string is taken as it is; a number is seconds."""
    if isinstance(value, str):
        return value
    seconds = value.total_seconds() if isinstance(value, _dt.timedelta) else float(value)
    if seconds < 0:
        raise ValueError(f"a duration cannot be negative: {value!r}")
    text = f"{seconds:.3f}".rstrip("0").rstrip(".")
    return f"PT{text}S"


def iso_instant(value: Instant) -> str:
    """An ISO-8601 UTC time: a string is taken as it is; a naive datetime is UTC.
    Written to the millisecond, or to the microsecond when it has one (never
    rounded: a time cut short could fall before the tenant's clock)."""
    if isinstance(value, str):
        return value
    if value.tzinfo is not None:
        value = value.astimezone(_dt.timezone.utc).replace(tzinfo=None)
    spec = "milliseconds" if value.microsecond % 1000 == 0 else "microseconds"
    return value.isoformat(timespec=spec) + "Z"


_INSTANT = re.compile(
    r"^(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(?:\.(\d+))?(Z|z|[+-]\d\d:?\d\d)$"
)


def parse_instant(text: str) -> _dt.datetime:
    """An RFC 3339 time as the server writes it (``2030-01-02T03:04:05.1234567Z``)
    as an aware UTC ``datetime``; digits past the microsecond are dropped."""
    found = _INSTANT.match(text.strip())
    if not found:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    year, month, day, hour, minute, second, fraction, zone = found.groups()
    micros = int((fraction or "0")[:6].ljust(6, "0"))
    if zone in ("Z", "z"):
        tz = _dt.timezone.utc
    else:
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        tz = _dt.timezone(sign * _dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
    at = _dt.datetime(int(year), int(month), int(day), int(hour), int(minute), int(second),
                      micros, tzinfo=tz)
    return at.astimezone(_dt.timezone.utc)


_NUMBER = r"(\d+(?:[.,]\d+)?)"
_DURATION = re.compile(
    rf"^([-+])?P(?:{_NUMBER}W)?(?:{_NUMBER}D)?(?:T(?:{_NUMBER}H)?(?:{_NUMBER}M)?(?:{_NUMBER}S)?)?$"
)


def parse_duration(text: str) -> _dt.timedelta:
    """An ISO-8601 duration of weeks, days, hours, minutes and seconds as the
    server writes them (``P3DT1M``, ``PT0.300S``, ``-PT5S``) as a ``timedelta``."""
    found = _DURATION.match(text.strip())
    if not found or not any(found.groups()[1:]) or text.strip().endswith("T"):
        raise ValueError(f"not an ISO-8601 duration of days, hours, minutes, seconds: {text!r}")
    sign, *parts = found.groups()
    weeks, days, hours, minutes, seconds = (float(p.replace(",", ".")) if p else 0.0 for p in parts)
    span = _dt.timedelta(weeks=weeks, days=days, hours=hours, minutes=minutes, seconds=seconds)
    return -span if sign == "-" else span


def whole_seconds(value: Duration, field: str = "retryAfter") -> int:
    """Whole seconds (``Retry-After``'s unit) from a number, a ``timedelta`` or
    an ISO-8601 duration; a fraction of a second or a negative span is refused."""
    if isinstance(value, bool):
        raise ValueError(f"{field}: seconds, not {value!r}")
    if isinstance(value, str):
        seconds = parse_duration(value).total_seconds()
    elif isinstance(value, _dt.timedelta):
        seconds = value.total_seconds()
    else:
        seconds = float(value)
    if seconds < 0 or seconds != int(seconds):
        raise ValueError(f"{field} is whole seconds, at least 0: {value!r}")
    return int(seconds)


def camel(name: str) -> str:
    """``retry_after`` → ``retryAfter``; camelCase names are kept."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _camel_keys(values: Mapping[str, Any]) -> Dict[str, Any]:
    return {camel(k): v for k, v in values.items() if v is not None}


def _with_durations(script: Sequence[Mapping[str, Any]]) -> List[Dict[str, Any]]:
    steps = []
    for step in script:
        step = _camel_keys(step)
        if "duration" in step:
            step["duration"] = iso_duration(step["duration"])
        steps.append(step)
    return steps


class _Part:
    def __init__(self, client: "ControlClient") -> None:
        self._client = client


class Outcomes(_Part):
    """How actions of machines without an enrolled device go on (``/outcomes``)."""

    def list(self) -> List[Dict[str, Any]]:
        """The rules in order, with their ``hits``."""
        return self._client.get("/outcomes")["value"]

    def add(self, match: Optional[Mapping[str, Any]], script: Sequence[Mapping[str, Any]],
            position: Optional[int] = None) -> Dict[str, Any]:
        """Adds a rule last (``position=0``: first); answers it with its ``id``.

        ``match``: ``actionType``, ``machineId``, ``namePrefix``, ``tag``,
        ``osPlatform`` (absent: anything). ``script``: steps such as
        ``{"status": "InProgress", "polls": 2}``, ``{"status": "Pending",
        "duration": "PT3S"}`` (or a ``timedelta``, or seconds), the last one final."""
        body = {"match": _camel_keys(match or {}), "script": _with_durations(script)}
        return self._client.post("/outcomes", body, params=_position(position))

    def delete(self, rule_id: str) -> None:
        self._client.delete(f"/outcomes/{rule_id}")

    def clear(self) -> None:
        """Removes every rule (the demo tenant's default one too)."""
        self._client.delete("/outcomes")


class Clock(_Part):
    """The tenant's clock (``/clock``). Every call answers the reading
    ``{"mode": "running"|"frozen", "now", "offset"}`` (``now`` RFC 3339 UTC,
    ``offset`` from the server's time as an ISO-8601 duration, ``-`` before a
    negative one: read them with :func:`parse_instant` and :func:`parse_duration`,
    or :meth:`now`). Time never goes backwards for a tenant: a ``now`` before
    its reading raises :class:`ControlError` (400 ``InvalidInput``)."""

    def get(self) -> Dict[str, Any]:
        """``{"mode": "running"|"frozen", "now", "offset"}``."""
        return self._client.get("/clock")

    def now(self) -> _dt.datetime:
        """The tenant's time, an aware UTC ``datetime`` (to the microsecond)."""
        return parse_instant(self.get()["now"])

    def offset(self) -> _dt.timedelta:
        """How far the tenant's time is from the server's."""
        return parse_duration(self.get()["offset"])

    def set(self, mode: Optional[str] = None, *, now: Optional[Instant] = None,
            advance: Optional[Duration] = None) -> Dict[str, Any]:
        """One change (``PUT /clock``): ``mode`` (``"frozen"``, at ``now`` or at
        the reading; ``"running"``, on from the reading) and/or ``advance``
        (applied after the mode): ``set("frozen", advance="PT1H")``."""
        body: Dict[str, Any] = {}
        if mode is not None:
            body["mode"] = mode
        if now is not None:
            body["now"] = iso_instant(now)
        if advance is not None:
            body["advance"] = iso_duration(advance)
        return self._client.put("/clock", body)

    def freeze(self, now: Optional[Instant] = None) -> Dict[str, Any]:
        """Stops the clock, at its reading or at ``now`` (never backwards)."""
        return self.set("frozen", now=now)

    def run(self) -> Dict[str, Any]:
        """Lets the clock run on from its reading."""
        return self.set("running")

    def advance(self, duration: Duration) -> Dict[str, Any]:
        """Moves the clock forward in either mode (``"PT72H"``,
        ``timedelta(days=3)``, seconds); the next read sees what that implies
        (actions timed out, tokens expired)."""
        return self.set(advance=duration)


class Faults(_Part):
    """Errors and latency injected into the MDE API and the token service
    (``/faults``), by rules in order: the first that takes a call wins."""

    def list(self) -> List[Dict[str, Any]]:
        """The rules in order, with their ``hits`` and whether they are ``spent``."""
        return self._client.get("/faults")["value"]

    def add(
        self,
        match: Union[None, str, Mapping[str, Any]] = None,
        response: Union[None, int, Mapping[str, Any]] = None,
        *,
        latency: Optional[Duration] = None,
        probability: Optional[float] = None,
        count: Optional[int] = None,
        every_nth: Optional[int] = None,
        position: Optional[int] = None,
        **extra: Any,
    ) -> Dict[str, Any]:
        """Adds a fault rule (last; ``position=0``: first); answers it as the
        server keeps it: the fields sent (``latency`` as the server writes it,
        ``PT0.300S``) with ``id``, ``hits`` (calls it took) and ``spent``
        (its ``count`` used up).

        ``match``: ``operation`` (an operation id of the MDE API's
        ``/openapi.json``: ``ListMachines``, ``GetAction``, ``Isolate``, ...;
        or ``Token`` for the token service; a string alone is taken as the
        operation), ``caller`` (client id or user principal name); none: every
        call. ``response`` (a status alone, or a mapping): ``status`` (400 to
        599), ``retryAfter``/``retry_after`` (whole seconds, a ``timedelta``
        or a duration; sent as ``Retry-After``), ``code`` (an MDE error code),
        ``message``; the call is answered by it instead. ``latency`` delays
        the answer (at most 300 s). ``count``: the first N calls it matches,
        then it is spent; ``every_nth``: every Nth; ``probability``: above 0,
        at most 1."""
        if isinstance(match, str):
            match = {"operation": match}
        body: Dict[str, Any] = {"match": _camel_keys(match or {})}
        if response is not None:
            body["response"] = _fault_response(response)
        if latency is not None:
            body["latency"] = iso_duration(latency)
        body.update(_camel_keys({"probability": probability, "count": count, "every_nth": every_nth}))
        body.update(_camel_keys(extra))
        return self._client.post("/faults", body, params=_position(position))

    def delete(self, rule_id: str) -> None:
        self._client.delete(f"/faults/{rule_id}")

    def clear(self) -> None:
        self._client.delete("/faults")


class Recorder(_Part):
    """What the tenant's callers asked and were answered (``/recorder``): the
    MDE API calls made while it is on (a reset clears them and turns it off)."""

    def get(self) -> Dict[str, Any]:
        """``{"enabled": bool}``."""
        return self._client.get("/recorder")

    def set(self, enabled: bool) -> Dict[str, Any]:
        """Turns recording on or off (what was recorded stays); answers ``{"enabled"}``."""
        return self._client.put("/recorder", {"enabled": bool(enabled)})

    def enable(self) -> Dict[str, Any]:
        return self.set(True)

    def disable(self) -> Dict[str, Any]:
        return self.set(False)

    @property
    def enabled(self) -> bool:
        return bool(self.get()["enabled"])

    def entries(self, top: Optional[int] = None, skip: Optional[int] = None) -> List[Dict[str, Any]]:
        """The calls, oldest first (at most 1,000 unless ``top``): ``time``,
        ``caller`` (the app's client id, or the user's name), ``operation``
        (``ListMachines``), ``method``, ``path``, ``query`` (as sent,
        ``%24top=1``), ``status``, ``latencyMs``, ``requestBody`` and
        ``responseBody`` (text, or ``None``). Headers are not kept."""
        params = {k: v for k, v in (("$top", top), ("$skip", skip)) if v is not None}
        return self._client.get("/recorder/entries", params=params)["value"]

    def har(self) -> Dict[str, Any]:
        """The calls as a HAR 1.2 log (``{"log": {"version": "1.2", "entries": [...]}}``)."""
        return self._client.get("/recorder/har")

    def report(self) -> List[Dict[str, Any]]:
        """Per caller: ``caller``, ``calls``, ``retryAfterIgnored``,
        ``pagingUrlsBuilt``, ``fastPolls``, ``permissionsUsed``,
        ``permissionsGranted``, ``permissionsNeverUsed``."""
        return self._client.get("/recorder/report")["value"]

    def report_of(self, caller: str) -> Dict[str, Any]:
        """The report of one caller (a client id or user name); ``KeyError`` if it made no call."""
        for entry in self.report():
            if entry.get("caller") == caller:
                return entry
        raise KeyError(f"the recorder has no call of {caller!r}")

    def clear(self) -> None:
        """Forgets the recorded calls."""
        self._client.delete("/recorder/entries")


def _fault_response(response: Union[int, Mapping[str, Any]]) -> Dict[str, Any]:
    if isinstance(response, int) and not isinstance(response, bool):
        return {"status": response}
    body = _camel_keys(response)
    if "retryAfter" in body:
        body["retryAfter"] = whole_seconds(body["retryAfter"], "response.retryAfter")
    return body


def _position(position: Optional[int]) -> Optional[Dict[str, Any]]:
    return None if position is None else {"position": position}


#: A tenant document: a mapping, YAML or JSON text (``str`` or ``bytes``), or a file's path.
Document = Union[Mapping[str, Any], str, bytes, "os.PathLike[str]"]


def _yaml_module() -> Any:
    try:
        import yaml  # type: ignore[import-untyped]
    except ImportError:
        raise RuntimeError("YAML from a mapping needs PyYAML (pip install pyyaml); "
                           "send the mapping as JSON, or YAML text") from None
    return yaml


# Plain scalars YAML 1.2 (the server's reader) takes for other than text, and
# PyYAML (YAML 1.1) may write unquoted: a MAC address such as 8923264298E3 is a number there.
_NOT_TEXT_IN_YAML_12 = re.compile(
    r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+"
    r"|[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)"
    r"|true|True|TRUE|false|False|FALSE|null|Null|NULL|~|)$"
)


def _yaml_dump(document: Mapping[str, Any]) -> str:
    """YAML the server reads back as the same document: text that YAML 1.2
    would read as a number, boolean or null is quoted."""
    yaml = _yaml_module()

    class Dumper(yaml.SafeDumper):
        pass

    def text(dumper: Any, value: str) -> Any:
        style = '"' if _NOT_TEXT_IN_YAML_12.match(value) else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, text)
    return yaml.dump(dict(document), Dumper=Dumper, sort_keys=False, allow_unicode=True)


def document_body(document: Document, *, yaml: bool = False) -> Tuple[bytes, str]:
    """A tenant document as a request body and its ``Content-Type``: a mapping
    as JSON (as YAML with ``yaml=True``, which needs PyYAML); text as it is,
    JSON when it starts with ``{``, else YAML; a path by its suffix
    (``.yaml``/``.yml``: YAML, else JSON)."""
    if isinstance(document, Mapping):
        if yaml:
            return _yaml_dump(document).encode(), YAML_TYPE
        return _json.dumps(document).encode(), JSON_TYPE
    if isinstance(document, os.PathLike):
        path = Path(document)
        kind = YAML_TYPE if path.suffix.lower() in (".yaml", ".yml") else JSON_TYPE
        return path.read_bytes(), kind
    if isinstance(document, str):
        document = document.encode()
    if isinstance(document, (bytes, bytearray)):
        kind = JSON_TYPE if bytes(document).lstrip().startswith(b"{") else YAML_TYPE
        return bytes(document), kind
    raise TypeError(f"a tenant document is a mapping, text or a path, not {type(document).__name__}")


class ControlClient:
    """The control plane of one tenant of the server at ``base_url``.

    ``outcomes``, ``clock``, ``faults`` and ``recorder`` hold their calls;
    ``reset()``, ``get_state()``, ``put_state(doc)``, ``create_tenant(doc)``
    and ``raise_alert(machine_id, ...)`` the rest; ``request(...)`` makes any call.
    """

    def __init__(self, base_url: str, operator_token: str, tenant_id: str, *,
                 verify: Any = True, timeout: Optional[float] = 30.0,
                 session: Optional[requests.Session] = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.operator_token = operator_token
        self.tenant_id = tenant_id
        self.verify = verify
        self.timeout = timeout
        self.session = session or requests.Session()
        self.outcomes = Outcomes(self)
        self.clock = Clock(self)
        self.faults = Faults(self)
        self.recorder = Recorder(self)

    def for_tenant(self, tenant_id: str) -> "ControlClient":
        """The same server's control plane for another tenant."""
        return ControlClient(self.base_url, self.operator_token, tenant_id, verify=self.verify,
                             timeout=self.timeout, session=self.session)

    @property
    def tenant_url(self) -> str:
        return f"{self.base_url}{BASE_PATH}/tenants/{self.tenant_id}"

    # -- calls --------------------------------------------------------------

    def request(self, method: str, path: str, json: Any = None, *, params: Any = None,
                data: Any = None, headers: Optional[Mapping[str, str]] = None,
                tenant: bool = True) -> Any:
        """``method`` on ``path`` (under the tenant, or under ``/_palisade/v1``
        with ``tenant=False``); answers the parsed body (``None`` when empty).
        Raises :class:`ControlError` on an error status."""
        url = (self.tenant_url if tenant else self.base_url + BASE_PATH) + path
        sent = {"Authorization": f"Bearer {self.operator_token}"}
        sent.update(headers or {})
        reply = self.session.request(method, url, json=json, params=params, data=data,
                                     headers=sent, verify=self.verify, timeout=self.timeout)
        if reply.status_code >= 400:
            raise ControlError(reply)
        if not reply.content:
            return None
        try:
            return reply.json()
        except ValueError:
            return reply.text

    def get(self, path: str, params: Any = None) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, json: Any = None, params: Any = None) -> Any:
        return self.request("POST", path, json, params=params)

    def put(self, path: str, json: Any = None, params: Any = None) -> Any:
        return self.request("PUT", path, json, params=params)

    def delete(self, path: str, params: Any = None) -> Any:
        return self.request("DELETE", path, params=params)

    # -- state --------------------------------------------------------------

    def reset(self) -> None:
        """The tenant back to the document it was made from (the demo tenant:
        its machines and default outcome rule): machines, groups, tags,
        actions, alerts, indicators, audit, outcome and fault rules, clock;
        the recorder is cleared and off. Apps and users stay."""
        self.post("/reset")

    def get_state(self, *, yaml: bool = False) -> Any:
        """The tenant as a document (``tenantId``, ``name``, ``retentionDays``,
        ``deviceGroups``, ``machines``, ``machineActions``, ``apps``,
        ``users``, ``outcomes``, ``faults``; no secrets or passwords).
        ``yaml=True``: as YAML text (needs PyYAML)."""
        document = self.get("/state")
        return _yaml_dump(document) if yaml else document

    def put_state(self, document: "Document", *, yaml: bool = False) -> Dict[str, Any]:
        """Replaces the tenant's state with a document (checked whole first:
        a bad one raises :class:`ControlError` naming the field, such as
        ``machines[1].osPlatform``, and changes nothing); answers the state as
        it now is. ``document``: a mapping (sent as JSON, or as YAML with
        ``yaml=True``, which needs PyYAML), YAML or JSON text, or a path to a
        ``.json``/``.yaml`` file."""
        data, content_type = document_body(document, yaml=yaml)
        return self.request("PUT", "/state", data=data, headers={"Content-Type": content_type})

    def create_tenant(self, document: "Document", *, yaml: bool = False) -> Dict[str, Any]:
        """Creates the tenant a document describes (409 if it exists); answers
        it as exported. A reset puts it back to this document;
        ``for_tenant(document["tenantId"])`` controls it. ``document`` as for
        :meth:`put_state`."""
        data, content_type = document_body(document, yaml=yaml)
        return self.request("POST", "/tenants", data=data, headers={"Content-Type": content_type},
                            tenant=False)

    # -- alerts -------------------------------------------------------------

    def raise_alert(self, machine_id: str, **fields: Any) -> Dict[str, Any]:
        """Raises an alert on the machine (``title``, ``severity``, ``category``,
        ``detection_source``/``detectionSource``, ``evidence``,
        ``mitre_techniques``, ...); answers it as ``GET /api/alerts/{id}`` shows it."""
        body = {"machineId": machine_id}
        body.update(_camel_keys(fields))
        return self.post("/alerts", body)

    def openapi(self) -> Dict[str, Any]:
        """The control plane's own OpenAPI document."""
        reply = self.session.get(f"{self.base_url}{BASE_PATH}/openapi.json", verify=self.verify,
                                 timeout=self.timeout)
        if reply.status_code >= 400:
            raise ControlError(reply)
        return reply.json()

    def __repr__(self) -> str:
        return f"<ControlClient {self.tenant_url}>"
