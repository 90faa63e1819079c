"""An Azure SDK style script: azure-identity's CertificateCredential with a
PEM file (key and certificate), its authority host pointed at Palisade.

    azure_identity_certificate.py CONFIG.json

CONFIG (written by the Rust test): origin, tenant_id, client_id, api_url,
certificate (as make_certificate.py prints it; its bundle_file is used).

azure-identity takes the authority *host* (`https://host:port`) and adds
the tenant itself; `disable_instance_discovery=True` because instance
discovery would ask login.microsoftonline.com about a host it does not know.
Trusts REQUESTS_CA_BUNDLE (azure-core's requests transport reads it);
prints one JSON object.
"""

import json
import sys

from azure.core.exceptions import ClientAuthenticationError
from azure.identity import CertificateCredential

from sign_in_helpers import SCOPES, api_status, claims, finish

config = json.load(open(sys.argv[1]))
credential = CertificateCredential(
    config["tenant_id"],
    config["client_id"],
    certificate_path=config["certificate"]["bundle_file"],
    authority=config["origin"],
    disable_instance_discovery=True,
)
try:
    token = credential.get_token(*SCOPES)
except ClientAuthenticationError as error:
    finish({"error": str(error)[:2000]}, ok=False)
again = credential.get_token(*SCOPES)
status, body = api_status(config["api_url"], token.token)
seen = claims(token.token)
finish({
    "claims": {k: seen.get(k) for k in ("aud", "tid", "roles", "azp", "appid", "idtyp", "iat", "exp")},
    "expires_on": token.expires_on,
    "cached": again.token == token.token,
    "machines_status": status,
    "machines": len((body or {}).get("value") or []),
})
