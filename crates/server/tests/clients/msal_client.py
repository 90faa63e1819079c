"""An MDE automation script as users write them, against Palisade.

It uses MSAL for Python exactly as against Entra ID, changing only the
authority: client credentials for the WindowsDefenderATP resource, then the
machine API over HTTPS. Reads the demo credentials file named on the command
line; prints one JSON object of what it saw, for the Rust test to check.
Trusts the CA named by REQUESTS_CA_BUNDLE, as such scripts do.
"""

import json
import sys

import msal
import requests

credentials = json.load(open(sys.argv[1]))
authority = credentials["token_url"].split("/oauth2/")[0]
app = msal.ConfidentialClientApplication(
    credentials["client_id"],
    authority=authority,
    client_credential=credentials["client_secret"],
    # Entra's instance discovery lives at login.microsoftonline.com; a
    # self-hosted authority skips it, as for any non-Microsoft host.
    instance_discovery=False,
)
scopes = ["https://api.securitycenter.microsoft.com/.default"]
token = app.acquire_token_for_client(scopes=scopes)
if "access_token" not in token:
    print(json.dumps({"token_error": token}))
    sys.exit(1)
again = app.acquire_token_for_client(scopes=scopes)

api = credentials["api_url"]
session = requests.Session()
session.headers["Authorization"] = "Bearer " + token["access_token"]
listed = session.get(
    api + "/machines",
    params={"$filter": "osPlatform eq 'Windows11' and onboardingStatus eq 'Onboarded'", "$top": "3"},
)
listed.raise_for_status()
machines = listed.json()["value"]
isolated = session.post(
    api + "/machines/" + machines[0]["id"] + "/isolate",
    json={"Comment": "Isolated by an MSAL script", "IsolationType": "Full"},
)
action = isolated.json()
fetched = session.get(api + "/machineactions/" + action["id"])
denied = requests.get(api + "/machines")

print(
    json.dumps(
        {
            "token_type": token["token_type"],
            "token_source": token.get("token_source"),
            "cached_source": again.get("token_source"),
            "machines": len(machines),
            "isolate_status": isolated.status_code,
            "action_type": action.get("type"),
            "action_status": action.get("status"),
            "requestor": action.get("requestor"),
            "fetched_status": fetched.status_code,
            "unauthenticated_status": denied.status_code,
            "unauthenticated_code": denied.json()["error"]["code"],
        }
    )
)
