"""A daemon authenticating with a certificate, through MSAL for Python's
ConfidentialClientApplication, against Palisade as against Entra ID.

    msal_certificate.py CONFIG.json forms|reuse

CONFIG (written by the Rust test): authority, client_id, api_url,
certificate and unregistered (each as make_certificate.py prints it).

- forms: acquire_token_for_client with each form of client_credential MSAL
  takes for a PEM key (with the SHA-1 thumbprint; the thumbprint and the
  certificate; the certificate alone), each through an app object of its
  own, and a certificate the app does not have (refused). Reports the
  header of the client assertion MSAL sent and the token's claims.
- reuse: one app object asks for tokens for two resources (two cache
  misses): MSAL signs one assertion and sends it again for the second
  (it keeps an assertion for up to 9 of its 10 minutes).

Trusts REQUESTS_CA_BUNDLE; prints one JSON object.
"""

import json
import sys

import msal

from sign_in_helpers import SCOPES, RecordingSession, api_status, claims, finish

config = json.load(open(sys.argv[1]))
mode = sys.argv[2]
authority = config["authority"]
registered = config["certificate"]
key = open(registered["key_file"]).read()
cert = open(registered["cert_file"]).read()


def app_with(credential):
    http = RecordingSession(authority)
    app = msal.ConfidentialClientApplication(
        config["client_id"],
        authority=authority,
        client_credential=credential,
        instance_discovery=False,
        http_client=http,
    )
    return app, http


def attempt(credential, scopes=SCOPES):
    app, http = app_with(credential)
    return describe(app.acquire_token_for_client(scopes=scopes), http)


def describe(result, http):
    call = http.token_calls[-1] if http.token_calls else {}
    seen = {
        "status": call.get("status"),
        "sent": call.get("sent"),
        "assertion_header": call.get("assertion_header"),
        "assertion_claims": call.get("assertion_claims"),
        "token_endpoint": call.get("url"),
        "error": result.get("error"),
        "error_codes": result.get("error_codes"),
        "error_description": result.get("error_description"),
        "token_source": result.get("token_source"),
    }
    if "access_token" in result:
        token = claims(result["access_token"])
        seen["claims"] = {k: token.get(k) for k in ("aud", "tid", "roles", "scp", "azp", "appid", "idtyp", "sub")}
        seen["machines_status"], body = api_status(config["api_url"], result["access_token"])
        seen["machines"] = len((body or {}).get("value") or [])
    return seen


if mode == "forms":
    report = {
        "thumbprint": attempt({"private_key": key, "thumbprint": registered["sha1"]}),
        "thumbprint_and_certificate": attempt(
            {"private_key": key, "thumbprint": registered["sha1"], "public_certificate": cert}
        ),
        "certificate": attempt({"private_key": key, "public_certificate": cert}),
    }
    other = config["unregistered"]
    report["unregistered"] = attempt(
        {"private_key": open(other["key_file"]).read(), "thumbprint": other["sha1"]}
    )
    finish(report)

elif mode == "reuse":
    app, http = app_with({"private_key": key, "thumbprint": registered["sha1"]})
    first = describe(app.acquire_token_for_client(scopes=SCOPES), http)
    second = describe(
        app.acquire_token_for_client(scopes=["https://api.security.microsoft.com/.default"]), http
    )
    assertions = [c.get("assertion") for c in http.token_calls]
    finish({
        "first": first,
        "second": second,
        "requests": len(http.token_calls),
        "same_assertion": len(assertions) == 2 and assertions[0] == assertions[1],
    })

else:
    finish({"usage": "msal_certificate.py CONFIG.json forms|reuse"}, ok=False)
