"""What the sign-in client scripts share: an HTTP session for MSAL that
records the token requests it sends, a reader of HTML forms, a JWT decoder.

Not a test itself: the scripts beside it import it (Python puts a script's
own directory first on its path).
"""

import base64
import json
import sys
from html.parser import HTMLParser
from urllib.parse import parse_qs, urljoin, urlsplit, urlunsplit

import requests

SCOPES = ["https://api.securitycenter.microsoft.com/.default"]


def claims(jwt):
    """The payload of a JWT, unverified (the scripts only report it)."""
    return json.loads(_b64url(jwt.split(".")[1]))


def header(jwt):
    return json.loads(_b64url(jwt.split(".")[0]))


def _b64url(part):
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def origin_of(url):
    parts = urlsplit(url)
    return "{}://{}".format(parts.scheme, parts.netloc)


def api_status(api_url, token, path="/machines", params=None):
    """GET `api_url + path` with `token`: (status, body as JSON or None)."""
    reply = requests.get(
        api_url + path,
        params={"$top": "1"} if params is None else params,
        headers={"Authorization": "Bearer " + token},
    )
    try:
        body = reply.json()
    except ValueError:
        body = None
    return reply.status_code, body


def finish(report, ok=True):
    """Prints the one JSON object the Rust test reads; exits 1 when not `ok`."""
    print(json.dumps(report))
    sys.exit(0 if ok else 1)


class RecordingSession(requests.Session):
    """The HTTP client handed to MSAL (`http_client=`): a requests session
    that keeps what each token or device-code request sent and got back.

    It also puts the port back into the user realm discovery URL: MSAL
    builds it as `https://{host}/common/userrealm/...` from the authority's
    host name without its port, so against an authority on another port than
    443 the password grant would ask port 443 and fail to connect.
    """

    def __init__(self, authority):
        super().__init__()
        parts = urlsplit(authority)
        self._host, self._netloc = parts.hostname, parts.netloc
        self.token_calls = []
        self.userrealm = None
        self.on_token_reply = None

    def request(self, method, url, *args, **kwargs):
        parts = urlsplit(url)
        is_userrealm = parts.path.startswith("/common/userrealm/")
        if is_userrealm and parts.netloc == self._host and self._netloc != self._host:
            url = urlunsplit(parts._replace(netloc=self._netloc))
        reply = super().request(method, url, *args, **kwargs)
        if is_userrealm:
            self.userrealm = {"status": reply.status_code, "account_type": _json(reply).get("account_type")}
        path = urlsplit(url).path
        if method.upper() == "POST" and (path.endswith("/token") or path.endswith("/devicecode")):
            sent = kwargs.get("data") or {}
            if isinstance(sent, (str, bytes)):
                sent = {k: v[0] for k, v in parse_qs(sent if isinstance(sent, str) else sent.decode()).items()}
            body = _json(reply)
            call = {
                "endpoint": path.rsplit("/", 1)[1],
                "url": url,
                "grant_type": sent.get("grant_type"),
                "scope": sent.get("scope"),
                "sent": sorted(sent),
                "status": reply.status_code,
                "error": body.get("error"),
                "error_codes": body.get("error_codes"),
                "refresh_token": body.get("refresh_token"),
                "has_id_token": "id_token" in body,
                "has_client_info": "client_info" in body,
            }
            assertion = sent.get("client_assertion")
            if assertion:
                # MSAL sends the assertion it signed as bytes.
                assertion = assertion.decode() if isinstance(assertion, bytes) else assertion
                call["assertion_header"] = header(assertion)
                call["assertion_claims"] = claims(assertion)
                call["assertion"] = assertion
            self.token_calls.append(call)
            if self.on_token_reply:
                self.on_token_reply(call)
        return reply


def _json(reply):
    try:
        value = reply.json()
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


class _Forms(HTMLParser):
    def __init__(self):
        super().__init__()
        self.forms = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self.forms.append({"action": attrs.get("action"), "method": (attrs.get("method") or "get").lower(), "inputs": []})
        elif tag in ("input", "button", "textarea", "select") and self.forms and attrs.get("name"):
            self.forms[-1]["inputs"].append(
                {"name": attrs["name"], "type": (attrs.get("type") or "text").lower(), "value": attrs.get("value") or ""}
            )


def form_with(html, field):
    """The first form of `html` with an input named `field`, or None."""
    parser = _Forms()
    parser.feed(html)
    for form in parser.forms:
        if any(i["name"] == field for i in form["inputs"]):
            return form
    return None


def submit(session, page, form, fields):
    """POSTs `form` of the answer `page` as a browser would: its hidden fields
    as they are, `fields` filled in, to its action (relative to the page)."""
    data = {i["name"]: i["value"] for i in form["inputs"] if i["type"] == "hidden"}
    data.update(fields)
    return session.post(urljoin(page.url, form["action"] or page.url), data=data)


def cookies_set(reply):
    """The Set-Cookie headers of an answer (and of the redirects before it), as sent."""
    return [c for r in reply.history + [reply] for c in r.raw.headers.getlist("Set-Cookie")]
