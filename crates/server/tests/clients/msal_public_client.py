"""A desktop or CLI tool signing a user in with MSAL for Python's
PublicClientApplication (no secret), against Palisade as against Entra ID:
only the authority changes.

    msal_public_client.py CREDENTIALS.json device_code|password|refresh|interactive

- device_code: initiate_device_flow, the user's part done over HTTP in a
  thread (the /devicelogin page, the code, the sign-in form) while MSAL
  polls, then acquire_token_by_device_flow.
- password: acquire_token_by_username_password (and the same without a
  secret through the confidential demo app, which must be refused).
- refresh: a token by password, the demo tenant's clock moved 2 hours
  through the control plane, the old token refused, acquire_token_silent
  with force_refresh through the refresh token; then the rotated-out refresh
  token replayed.
- interactive: acquire_token_interactive, with $BROWSER the test's headless
  Chromium, which signs in on Palisade's page; the code comes back to MSAL's
  listener by form_post (what MSAL asks for) and is redeemed with PKCE.

Reads the demo credentials file; trusts REQUESTS_CA_BUNDLE; prints one
JSON object of what it saw for the Rust test (sign_in_clients.rs).
"""

import json
import sys
import threading
import time

import msal
import requests

from sign_in_helpers import (
    SCOPES,
    RecordingSession,
    api_status,
    claims,
    cookies_set,
    finish,
    form_with,
    origin_of,
    submit,
)

credentials = json.load(open(sys.argv[1]))
mode = sys.argv[2]
authority = credentials["token_url"].split("/oauth2/")[0]
origin = origin_of(credentials["token_url"])
api = credentials["api_url"]
user = credentials["users"][0]
report = {"mode": mode, "username": user["username"]}
DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


def public_app(client_id):
    http = RecordingSession(authority)
    app = msal.PublicClientApplication(
        client_id,
        authority=authority,
        # No instance discovery (login.microsoftonline.com) for a self-hosted authority.
        instance_discovery=False,
        http_client=http,
    )
    return app, http


def describe(result, prefix=""):
    """What a token result says, with the access token's claims."""
    if not result or "access_token" not in result:
        return {prefix + "error": (result or {}).get("error"), prefix + "error_codes": (result or {}).get("error_codes"),
                prefix + "error_description": (result or {}).get("error_description")}
    token = claims(result["access_token"])
    status, _ = api_status(api, result["access_token"])
    return {
        prefix + "token_source": result.get("token_source"),
        prefix + "token_type": result.get("token_type"),
        prefix + "scope": result.get("scope"),
        prefix + "has_refresh_token": "refresh_token" in result,
        prefix + "has_id_token": "id_token" in result,
        prefix + "id_token_claims": result.get("id_token_claims"),
        prefix + "claims": {k: token.get(k) for k in ("aud", "iss", "tid", "scp", "roles", "upn", "oid", "sub", "azp", "appid", "idtyp", "iat", "exp")},
        prefix + "machines_status": status,
    }


def refresh_tokens(app):
    """The refresh tokens MSAL keeps, by their secret."""
    return [rt["secret"] for rt in app.token_cache.search(msal.TokenCache.CredentialType.REFRESH_TOKEN)]


def sign_in_on_the_device_page(flow, report):
    """The user's part: open verification_uri, type the code, sign in."""
    browser = requests.Session()
    steps = report["user_steps"] = {}
    page = browser.get(flow["verification_uri"])
    steps["page_status"] = page.status_code
    steps["page_cookies"] = cookies_set(page)
    code_form = form_with(page.text, "user_code")
    steps["code_form"] = code_form is not None
    if code_form is None:
        steps["page_text"] = page.text[:500]
        return
    steps["code_form_has_csrf"] = any(i["name"] == "csrf_token" and i["type"] == "hidden" for i in code_form["inputs"])
    sign_in = submit(browser, page, code_form, {"user_code": flow["user_code"]})
    steps["code_status"] = sign_in.status_code
    login_form = form_with(sign_in.text, "password")
    steps["sign_in_form"] = login_form is not None and any(i["name"] == "username" for i in login_form["inputs"])
    if login_form is None:
        steps["code_text"] = sign_in.text[:500]
        return
    steps["sign_in_hidden_fields"] = sorted(i["name"] for i in login_form["inputs"] if i["type"] == "hidden")
    done = submit(browser, sign_in, login_form, {"username": user["username"], "password": user["password"]})
    steps["sign_in_status"] = done.status_code
    steps["signed_in_page"] = "signed in" in done.text.lower()
    if not steps["signed_in_page"]:
        steps["sign_in_text"] = done.text[:500]


if mode == "device_code":
    app, http = public_app(credentials["public_client_id"])
    flow = app.initiate_device_flow(scopes=SCOPES)
    report["flow"] = {k: flow.get(k) for k in ("verification_uri", "expires_in", "interval", "message", "error", "error_description")}
    report["flow"]["user_code_in_message"] = bool(flow.get("user_code")) and flow["user_code"] in (flow.get("message") or "")
    if "user_code" not in flow:
        finish(report, ok=False)
    # The user signs in once MSAL has polled and been told to wait, as a
    # person at another device would: after the first poll, before the next.
    first_poll = threading.Event()
    http.on_token_reply = lambda call: call["grant_type"] == DEVICE_CODE_GRANT and first_poll.set()
    errors = []

    def person_signs_in():
        try:
            first_poll.wait(timeout=30)
            sign_in_on_the_device_page(flow, report)
        except Exception as error:  # reported, not lost in the thread
            errors.append(repr(error))

    person = threading.Thread(target=person_signs_in)
    person.start()
    # Not for ever if the user's part fails: MSAL polls until this says stop.
    flow["expires_at"] = min(flow["expires_at"], time.time() + 60)
    result = app.acquire_token_by_device_flow(flow)
    person.join()
    report["user_errors"] = errors
    report["polls"] = [c["error"] or c["status"] for c in http.token_calls if c["endpoint"] == "token"]
    report["devicecode_status"] = next((c["status"] for c in http.token_calls if c["endpoint"] == "devicecode"), None)
    report.update(describe(result))
    report["accounts"] = [a.get("username") for a in app.get_accounts()]
    finish(report, ok="access_token" in result)

elif mode == "password":
    app, http = public_app(credentials["public_client_id"])
    result = app.acquire_token_by_username_password(user["username"], user["password"], scopes=SCOPES)
    report.update(describe(result))
    report["userrealm"] = http.userrealm
    report["sent"] = [c["sent"] for c in http.token_calls]
    report["accounts"] = [a.get("username") for a in app.get_accounts()]
    # The confidential demo app without its secret: not a public client.
    confidential, http = public_app(credentials["client_id"])
    refused = confidential.acquire_token_by_username_password(user["username"], user["password"], scopes=SCOPES)
    report["confidential_without_secret"] = {
        "status": http.token_calls[-1]["status"] if http.token_calls else None,
        "error": refused.get("error"),
        "error_codes": refused.get("error_codes"),
        "got_token": "access_token" in refused,
    }
    finish(report, ok="access_token" in result)

elif mode == "refresh":
    app, http = public_app(credentials["public_client_id"])
    first = app.acquire_token_by_username_password(user["username"], user["password"], scopes=SCOPES)
    report.update(describe(first, "first_"))
    if "access_token" not in first:
        finish(report, ok=False)
    first_refresh_tokens = refresh_tokens(app)
    report["first_refresh_tokens"] = len(first_refresh_tokens)

    tenant = credentials["tenant_id"]
    moved = requests.put(
        "{}/_palisade/v1/tenants/{}/clock".format(origin, tenant),
        json={"advance": "PT2H"},
        headers={"Authorization": "Bearer " + credentials["operator_token"]},
    )
    report["clock_status"] = moved.status_code
    report["clock"] = moved.json() if moved.headers.get("content-type", "").startswith("application/json") else moved.text
    status, body = api_status(api, first["access_token"])
    report["old_token_status"] = status
    report["old_token_error"] = ((body or {}).get("error") or {}).get("code")

    account = app.get_accounts()[0]
    # MSAL's own clock has not moved: without force_refresh it answers from its cache.
    cached = app.acquire_token_silent(SCOPES, account=account)
    report["silent_source"] = (cached or {}).get("token_source")
    refreshed = app.acquire_token_silent_with_error(SCOPES, account=account, force_refresh=True)
    report.update(describe(refreshed, "refreshed_"))
    refresh_calls = [c for c in http.token_calls if c["grant_type"] == "refresh_token"]
    report["refresh_requests"] = [{"status": c["status"], "sent": c["sent"], "rotated": bool(c["refresh_token"]) and c["refresh_token"] not in first_refresh_tokens} for c in refresh_calls]
    if not refreshed or "access_token" not in refreshed:
        finish(report, ok=False)

    # The refresh token the refresh replaced, presented again: a replay.
    replay = requests.post(
        credentials["token_url"],
        data={
            "grant_type": "refresh_token",
            "client_id": credentials["public_client_id"],
            "refresh_token": first_refresh_tokens[0],
            "scope": " ".join(SCOPES + ["offline_access"]),
        },
    )
    replayed = replay.json() if replay.headers.get("content-type", "").startswith("application/json") else {}
    report["replay"] = {"status": replay.status_code, "error": replayed.get("error"), "error_codes": replayed.get("error_codes")}
    # ... which revokes the sign-in: the newest refresh token stops working too.
    after = app.acquire_token_silent_with_error(SCOPES, account=account, force_refresh=True)
    report["after_replay"] = {"got_token": bool(after) and "access_token" in after, "error": (after or {}).get("error"),
                              "error_codes": (after or {}).get("error_codes")}
    finish(report)

elif mode == "interactive":
    # The browser MSAL opens is $BROWSER (the test's Chromium, tests/browser/browse.mjs).
    app, http = public_app(credentials["public_client_id"])
    result = app.acquire_token_interactive(SCOPES, timeout=60, login_hint=user["username"])
    report.update(describe(result))
    report["code_redemptions"] = [
        {"status": c["status"], "sent": c["sent"]} for c in http.token_calls if c["grant_type"] == "authorization_code"
    ]
    report["accounts"] = [a.get("username") for a in app.get_accounts()]
    finish(report, ok="access_token" in result)

else:
    finish({"usage": "msal_public_client.py CREDENTIALS.json device_code|password|refresh|interactive"}, ok=False)
