"""Makes what an app's certificate credential is: an RSA key and a
self-signed certificate, as `openssl req -x509` or Azure Key Vault would.

    make_certificate.py DIR [NAME]

Writes DIR/NAME-key.pem, DIR/NAME-cert.pem and DIR/NAME.pem (key then
certificate: what azure-identity's certificate_path takes); prints one JSON
object: the certificate PEM and its thumbprints (SHA-1 and SHA-256, hex).
"""

import datetime
import json
import os
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

directory = sys.argv[1]
name = sys.argv[2] if len(sys.argv) > 2 else "app"
key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Palisade test app " + name)])
now = datetime.datetime.now(datetime.timezone.utc)
certificate = (
    x509.CertificateBuilder()
    .subject_name(subject)
    .issuer_name(subject)
    .public_key(key.public_key())
    .serial_number(x509.random_serial_number())
    .not_valid_before(now - datetime.timedelta(days=1))
    .not_valid_after(now + datetime.timedelta(days=365))
    .sign(key, hashes.SHA256())
)
key_pem = key.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
).decode()
cert_pem = certificate.public_bytes(serialization.Encoding.PEM).decode()
paths = {kind: os.path.join(directory, name + suffix) for kind, suffix in
         (("key_file", "-key.pem"), ("cert_file", "-cert.pem"), ("bundle_file", ".pem"))}
for kind, text in (("key_file", key_pem), ("cert_file", cert_pem), ("bundle_file", key_pem + cert_pem)):
    with open(paths[kind], "w") as f:
        f.write(text)
print(json.dumps(dict(
    paths,
    certificate=cert_pem,
    sha1=certificate.fingerprint(hashes.SHA1()).hex(),
    sha256=certificate.fingerprint(hashes.SHA256()).hex(),
)))
