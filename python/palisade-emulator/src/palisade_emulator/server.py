"""Start and stop a real Palisade server (``palisade serve --demo``) for a test."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Union

import requests

from .control import ControlClient, Document, document_body

#: The scope of an MDE access token (client credentials).
MDE_SCOPE = "https://api.securitycenter.microsoft.com/.default"

#: How long a request of the helpers may take before it is given up.
DEFAULT_TIMEOUT = 30.0


class PalisadeNotFound(RuntimeError):
    """Neither ``PALISADE_BIN`` nor a ``palisade`` on ``PATH`` names a binary."""


class PalisadeStartError(RuntimeError):
    """The server did not start; the message carries the end of its log."""


class TokenError(RuntimeError):
    """The token service refused a token. ``status`` is the HTTP status,
    ``body`` the parsed body, ``error`` and ``description`` Entra's
    ``error`` and ``error_description`` (``temporarily_unavailable``,
    ``AADSTS90033: ...``), ``retry_after`` its ``Retry-After`` in seconds (or ``None``)."""

    def __init__(self, response: requests.Response) -> None:
        self.response = response
        self.status: int = response.status_code
        try:
            self.body: Any = response.json()
        except ValueError:
            self.body = None
        body = self.body if isinstance(self.body, dict) else {}
        self.error: Optional[str] = body.get("error")
        self.description: Optional[str] = body.get("error_description")
        retry_after = response.headers.get("Retry-After")
        self.retry_after: Optional[int] = int(retry_after) if retry_after and retry_after.isdigit() else None
        super().__init__(f"the token service refused a token ({self.status}): {response.text}")


def find_binary(explicit: Optional[str] = None) -> str:
    """The Palisade binary: ``explicit``, else ``$PALISADE_BIN``, else ``palisade`` on ``PATH``."""
    given = "the binary given (--palisade-bin, the palisade_bin ini option or binary=)"
    for source, value in ((given, explicit), ("PALISADE_BIN", os.environ.get("PALISADE_BIN"))):
        if value:
            path = Path(value)
            if not path.is_file() or not os.access(path, os.X_OK):
                raise PalisadeNotFound(f"{source} names {value!r}, which is not an executable file")
            return str(path)
    found = shutil.which("palisade")
    if found:
        return found
    raise PalisadeNotFound(
        "No Palisade binary: set PALISADE_BIN to its path (e.g. target/debug/palisade after "
        "`cargo build --bin palisade`) or put `palisade` on PATH"
    )


class ApiSession(requests.Session):
    """A ``requests.Session`` that sends a bearer token and resolves paths
    starting with ``/`` against ``base_url`` (``session.get("/api/machines")``)."""

    def __init__(self, base_url: str, token: Optional[str] = None, verify: Any = None,
                 timeout: Optional[float] = DEFAULT_TIMEOUT) -> None:
        super().__init__()
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        if verify is not None:
            self.verify = verify
        if token:
            self.set_token(token)

    def set_token(self, token: str) -> None:
        self.headers["Authorization"] = f"Bearer {token}"

    def request(self, method, url, *args, **kwargs):  # type: ignore[override]
        if isinstance(url, str) and url.startswith("/"):
            url = self.base_url + url
        kwargs.setdefault("timeout", self.timeout)
        # Explicitly, so that REQUESTS_CA_BUNDLE does not override the server's CA.
        kwargs.setdefault("verify", self.verify)
        return super().request(method, url, *args, **kwargs)


class PalisadeServer:
    """A ``palisade serve --demo`` process of its own, on a fresh SQLite database
    in a temporary directory, on a free loopback port.

    Use it as a context manager::

        with PalisadeServer() as palisade:
            machines = palisade.api_get("/api/machines").json()["value"]
            palisade.control.outcomes.add({"actionType": "Isolate"}, [{"status": "Failed"}], position=0)

    Once started it has ``base_url`` (``http://127.0.0.1:PORT``), ``api_url``
    (``base_url + "/api"``), ``tenant_id``, ``credentials`` (the demo
    credentials file, parsed), ``token`` (an MDE access token of the demo app,
    which holds every permission), ``operator_token``, ``api`` (a session
    sending ``token``) and ``control`` (a :class:`ControlClient` of the demo
    tenant). ``renew_token()`` replaces ``token`` once the tenant's clock has
    moved past it; ``reset()`` puts the demo tenant back as it started.
    ``seed``: tenant documents (mappings, YAML or JSON text, or paths) the
    server creates tenants from at start (``palisade serve --seed FILE``);
    ``app_token(client_id, secret, tenant_id)`` gets a token of their apps.
    On exit the process gets SIGTERM (then SIGKILL after ``stop_timeout``
    seconds) and the directory is removed.
    """

    def __init__(
        self,
        binary: Optional[str] = None,
        extra_args: Sequence[str] = (),
        *,
        listen: str = "127.0.0.1:0",
        env: Optional[Mapping[str, str]] = None,
        start_timeout: float = 60.0,
        stop_timeout: float = 10.0,
        start_attempts: int = 3,
        keep_dir: bool = False,
        seed: Union[None, Document, Sequence[Document]] = None,
    ) -> None:
        self.binary = find_binary(binary)
        self.extra_args: List[str] = [str(a) for a in extra_args]
        if seed is None:
            seed = []
        elif isinstance(seed, (Mapping, str, bytes, os.PathLike)):
            seed = [seed]
        self.seed: List[Document] = list(seed)
        self.listen = listen
        self.env = dict(env or {})
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.start_attempts = max(1, start_attempts)
        self.keep_dir = keep_dir
        self.dir: Optional[Path] = None
        self.process: Optional[subprocess.Popen] = None
        self.base_url = ""
        self.api_url = ""
        self.tenant_id = ""
        self.token = ""
        self.operator_token = ""
        self.ca_file: Optional[str] = None
        self.credentials: Dict[str, Any] = {}
        self.api: Optional[ApiSession] = None
        self.control: Optional[ControlClient] = None
        self.returncode: Optional[int] = None

    # -- life cycle ---------------------------------------------------------

    def __enter__(self) -> "PalisadeServer":
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    def start(self) -> "PalisadeServer":
        """Starts the server and waits until it answers ``GET /healthz`` with 200."""
        if self.process is not None:
            raise RuntimeError("this PalisadeServer is running already")
        self.dir = Path(tempfile.mkdtemp(prefix="palisade-"))
        error: Optional[PalisadeStartError] = None
        try:
            for attempt in range(self.start_attempts):
                try:
                    self._launch(attempt)
                    self._connect()
                    return self
                except PalisadeStartError as e:
                    error = e
                    self._terminate()
                    # Only a port taken meanwhile (a fixed --listen) is worth another try.
                    if "in use" not in str(e).lower():
                        break
            assert error is not None
            raise error
        except BaseException:
            self._terminate()
            self._remove_dir()
            raise

    def stop(self) -> Optional[int]:
        """Stops the server (SIGTERM, then SIGKILL) and removes its directory; answers its exit code."""
        for session in (self.api, self.control.session if self.control else None):
            if session is not None:
                session.close()
        self._terminate()
        self._remove_dir()
        return self.returncode

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _launch(self, attempt: int) -> None:
        assert self.dir is not None
        run_dir = self.dir / f"run{attempt}" if attempt else self.dir
        run_dir.mkdir(exist_ok=True)
        self._credentials_path = run_dir / "demo.json"
        self._log_path = run_dir / "server.log"
        database = "sqlite://" + str(run_dir / "palisade.db")
        seed_args: List[str] = []
        for number, document in enumerate(self.seed):
            seed_args += ["--seed", str(self._seed_file(run_dir, number, document))]
        self.args = [
            self.binary, "serve", "--demo",
            "--demo-credentials", str(self._credentials_path),
            "--database", database,
            "--listen", self.listen,
            *seed_args,
            *self.extra_args,
        ]
        environment = dict(os.environ)
        environment.setdefault("PALISADE_LOG", "info")
        environment.update(self.env)
        with open(self._log_path, "wb") as log:
            self.process = subprocess.Popen(
                self.args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=str(run_dir),
                env=environment,
            )

    @staticmethod
    def _seed_file(run_dir: Path, number: int, document: Document) -> Path:
        """A seed document as a file ``--seed`` reads: a path as it is, else
        written to ``seed-N.json`` or ``seed-N.yaml`` (the server reads a file by its suffix)."""
        if isinstance(document, os.PathLike):
            return Path(document).resolve()
        data, content_type = document_body(document)
        path = run_dir / f"seed-{number}.{'yaml' if content_type.endswith('yaml') else 'json'}"
        path.write_bytes(data)
        return path

    def _connect(self) -> None:
        """Waits for the credentials file and ``/healthz``; gets a token."""
        assert self.process is not None
        deadline = time.monotonic() + self.start_timeout
        credentials = None
        while credentials is None:
            self._fail_if_ended()
            try:
                credentials = json.loads(self._credentials_path.read_text())
            except (OSError, ValueError):
                credentials = None  # not there, or not written whole yet
            if credentials is None:
                self._wait(deadline, "to write its demo credentials")
        self.credentials = credentials
        self.api_url = credentials["api_url"].rstrip("/")
        self.base_url = self.api_url[: -len("/api")] if self.api_url.endswith("/api") else self.api_url
        self.tenant_id = credentials["tenant_id"]
        self.operator_token = credentials["operator_token"]
        self.ca_file = credentials.get("ca_file")
        verify: Any = self.ca_file if self.ca_file else True
        while True:
            self._fail_if_ended()
            try:
                health = requests.get(self.base_url + "/healthz", timeout=2, verify=verify)
                healthy = health.status_code == 200
            except requests.RequestException:
                healthy = False
            if healthy:
                break
            self._wait(deadline, "to answer GET /healthz with 200")
        self.api = ApiSession(self.base_url, verify=verify)
        self.token = self.new_token()
        self.api.set_token(self.token)
        self.control = ControlClient(self.base_url, self.operator_token, self.tenant_id, verify=verify)

    def _wait(self, deadline: float, what: str) -> None:
        if time.monotonic() > deadline:
            raise PalisadeStartError(
                f"Palisade did not start within {self.start_timeout:g} s (waiting for it {what}).\n"
                f"Command: {' '.join(self.args)}\nIts output:\n{self.log_tail()}"
            )
        time.sleep(0.05)

    def _fail_if_ended(self) -> None:
        assert self.process is not None
        code = self.process.poll()
        if code is not None:
            raise PalisadeStartError(
                f"Palisade exited with status {code} while starting.\n"
                f"Command: {' '.join(self.args)}\nIts output:\n{self.log_tail()}"
            )

    def _terminate(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            try:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.returncode = process.returncode

    def _remove_dir(self) -> None:
        if self.dir is not None and not self.keep_dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def log(self) -> str:
        """What the server printed (stdout and stderr) so far."""
        try:
            return self._log_path.read_text(errors="replace")
        except (AttributeError, OSError):
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    # -- tokens -------------------------------------------------------------

    def new_token(self, username: Optional[str] = None, password: Optional[str] = None,
                  scope: str = MDE_SCOPE) -> str:
        """A fresh MDE access token of the demo app (client credentials), or of a
        demo user (password grant; the password is looked up in the credentials
        when not given); ``token`` and ``api`` are left as they are (see
        :meth:`renew_token`). A refusal raises :class:`TokenError`."""
        form = {
            "client_id": self.credentials["client_id"],
            "client_secret": self.credentials["client_secret"],
            "scope": scope,
        }
        if username is None:
            form["grant_type"] = "client_credentials"
        else:
            if password is None:
                users = {u["username"]: u for u in self.credentials.get("users", [])}
                if username not in users:
                    raise KeyError(f"no demo user {username!r}; there are {sorted(users)}")
                password = users[username]["password"]
            form.update(grant_type="password", username=username, password=password)
        return self._token(self.credentials["token_url"], form)

    def token_url(self, tenant_id: Optional[str] = None) -> str:
        """The token endpoint of a tenant (the demo tenant's by default)."""
        return f"{self.base_url}/{tenant_id or self.tenant_id}/oauth2/v2.0/token"

    def app_token(self, client_id: str, client_secret: str, tenant_id: Optional[str] = None,
                  scope: str = MDE_SCOPE) -> str:
        """An MDE access token of any app (client credentials): of a tenant
        made from a document (``seed=``, ``control.create_tenant``, ``put_state``)
        whose app carries a ``clientSecret``. A refusal raises :class:`TokenError`."""
        form = {"grant_type": "client_credentials", "client_id": client_id,
                "client_secret": client_secret, "scope": scope}
        return self._token(self.token_url(tenant_id), form)

    def _token(self, url: str, form: Mapping[str, str]) -> str:
        verify: Any = self.ca_file if self.ca_file else True
        reply = requests.post(url, data=dict(form), timeout=DEFAULT_TIMEOUT, verify=verify)
        if reply.status_code != 200:
            raise TokenError(reply)
        return reply.json()["access_token"]

    def renew_token(self, username: Optional[str] = None, password: Optional[str] = None) -> str:
        """Replaces ``token`` (and what ``api`` sends) with a fresh one, issued
        at the tenant's time, and answers it: after the clock has moved past
        the old token's ``exp`` (an hour), the old one is refused (401).
        ``username``: a demo user's token instead of the app's."""
        token = self.new_token(username, password)
        self.token = token
        self._session().set_token(token)
        return token

    def reset(self) -> None:
        """Puts the demo tenant back as the server made it (``control.reset()``:
        machines, tags, actions, outcome and fault rules, clock; the recorder
        cleared and off) and renews ``token`` (the app's, issued at the
        tenant's time again)."""
        self._control().reset()
        self.renew_token()

    def _control(self) -> ControlClient:
        if self.control is None:
            raise RuntimeError("the server is not started")
        return self.control

    def users(self) -> List[Dict[str, Any]]:
        """The demo users (``username``, ``password``, ``roles``, ``groups``)."""
        return list(self.credentials.get("users", []))

    # -- the MDE API --------------------------------------------------------

    def url(self, path: str) -> str:
        """``path`` (``/api/machines``) on this server."""
        return self.base_url + path

    def api_get(self, path: str, **kwargs: Any) -> requests.Response:
        """``GET base_url + path`` with the demo app's token (``api_get("/api/machines")``)."""
        return self._session().get(path, **kwargs)

    def api_post(self, path: str, json: Any = None, **kwargs: Any) -> requests.Response:
        return self._session().post(path, json=json, **kwargs)

    def api_patch(self, path: str, json: Any = None, **kwargs: Any) -> requests.Response:
        return self._session().patch(path, json=json, **kwargs)

    def api_delete(self, path: str, **kwargs: Any) -> requests.Response:
        return self._session().delete(path, **kwargs)

    def machines(self, **params: Any) -> List[Dict[str, Any]]:
        """``GET /api/machines`` with OData ``params`` (``top=5`` → ``$top=5``); the ``value``."""
        query = {(k if k.startswith("$") else "$" + k): v for k, v in params.items()}
        reply = self.api_get("/api/machines", params=query)
        reply.raise_for_status()
        return reply.json()["value"]

    def _session(self) -> ApiSession:
        if self.api is None:
            raise RuntimeError("the server is not started")
        return self.api

    def __repr__(self) -> str:
        state = f"{self.base_url} tenant {self.tenant_id}" if self.running else "not running"
        return f"<PalisadeServer {state}>"


def start(extra_args: Iterable[str] = (), **kwargs: Any) -> PalisadeServer:
    """Starts a :class:`PalisadeServer` (stop it with ``.stop()``)."""
    return PalisadeServer(extra_args=list(extra_args), **kwargs).start()
