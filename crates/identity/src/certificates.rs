//! Client certificate credentials, as Entra ID takes them: a JWT the client
//! signs with the private key of a certificate registered on its app
//! (`client_assertion`), naming the certificate by its thumbprint in the
//! header: `x5t` (SHA-1, with RS256) or `x5t#S256` (SHA-256, with PS256, as
//! MSAL sends when it has the certificate itself).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::public_key::PublicKey;

/// `client_assertion_type`'s one value.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// A registered certificate, as an assertion is checked against it.
#[derive(Clone)]
pub struct ClientCertificate {
    /// Base64url SHA-1 of the DER (`x5t`).
    pub sha1: String,
    /// Base64url SHA-256 of the DER (`x5t#S256`).
    pub sha256: String,
    /// Unix seconds; an expired certificate signs nothing.
    pub not_after: i64,
    key: DecodingKey,
}

impl ClientCertificate {
    /// Reads one PEM certificate with an RSA key (what Entra accepts for apps).
    pub fn parse(pem: &str) -> Result<ClientCertificate, String> {
        let (_, pem) = x509_parser::pem::parse_x509_pem(pem.trim().as_bytes())
            .map_err(|e| format!("not a PEM certificate: {e}"))?;
        if pem.label != "CERTIFICATE" {
            return Err(format!("a PEM {} is not a certificate", pem.label));
        }
        let (_, certificate) = X509Certificate::from_der(&pem.contents)
            .map_err(|e| format!("not an X.509 certificate: {e}"))?;
        let key = match certificate.public_key().parsed() {
            Ok(PublicKey::RSA(rsa)) => {
                DecodingKey::from_rsa_raw_components(rsa.modulus, rsa.exponent)
            }
            _ => return Err("the certificate's key is not an RSA key".into()),
        };
        Ok(ClientCertificate {
            sha1: URL_SAFE_NO_PAD.encode(Sha1::digest(&pem.contents)),
            sha256: URL_SAFE_NO_PAD.encode(Sha256::digest(&pem.contents)),
            not_after: certificate.validity().not_after.timestamp(),
            key,
        })
    }
}

/// Why an assertion was refused: Entra's AADSTS code and words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssertionRefusal {
    pub aadsts: u32,
    pub description: String,
}

fn refused(aadsts: u32, description: impl Into<String>) -> AssertionRefusal {
    AssertionRefusal {
        aadsts,
        description: description.into(),
    }
}

/// Checks `assertion` for `client_id` against the app's `certificates` at
/// `now` (Unix seconds): signed by one of them, for one of `audiences` (the
/// token endpoint's URLs), issued by and about the client, not expired.
/// A `jti` is required but, as by Entra, not held to one use: MSAL sends
/// the same assertion again for up to 9 of its 10 minutes.
pub fn check_assertion(
    assertion: &str,
    client_id: &str,
    certificates: &[String],
    audiences: &[String],
    now: i64,
) -> Result<(), AssertionRefusal> {
    let header = jsonwebtoken::decode_header(assertion).map_err(|e| {
        refused(
            50027,
            format!("The client assertion is not a valid JWT: {e}."),
        )
    })?;
    if !matches!(header.alg, Algorithm::RS256 | Algorithm::PS256) {
        return Err(refused(
            5002738,
            format!(
                "The client assertion is signed with {:?}; RS256 or PS256 is accepted.",
                header.alg
            ),
        ));
    }
    let registered: Vec<ClientCertificate> = certificates
        .iter()
        .filter_map(|pem| ClientCertificate::parse(pem).ok())
        .collect();
    // MSAL pads its base64url thumbprints; Entra and RFC 7515 do not.
    let thumbprint = |t: &Option<String>| {
        t.as_deref()
            .map(|t| t.trim_end_matches('=').replace('+', "-").replace('/', "_"))
    };
    let (x5t, x5t_s256) = (thumbprint(&header.x5t), thumbprint(&header.x5t_s256));
    let named = |c: &&ClientCertificate| {
        x5t_s256.as_deref() == Some(c.sha256.as_str()) || x5t.as_deref() == Some(c.sha1.as_str())
    };
    let Some(certificate) = registered.iter().find(named) else {
        let thumbprint = header
            .x5t_s256
            .or(header.x5t)
            .unwrap_or_else(|| "(none)".into());
        return Err(refused(
            700027,
            format!("The certificate with identifier used to sign the client assertion is not registered on application. [Reason - The key was not found., Thumbprint of key used by client: '{thumbprint}']"),
        ));
    };
    if certificate.not_after < now {
        return Err(refused(
            700027,
            "The certificate used to sign the client assertion has expired.",
        ));
    }
    let mut validation = Validation::new(header.alg);
    validation.set_audience(audiences);
    validation.set_issuer(&[client_id]);
    validation.sub = Some(client_id.to_string());
    validation.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
    // The expiry is checked below on the tenant's clock, not the process's.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    let decoded =
        jsonwebtoken::decode::<serde_json::Value>(assertion, &certificate.key, &validation)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind;
                match e.kind() {
                    ErrorKind::InvalidAudience => refused(
                        700212,
                        format!("No matching federated identity record found for presented assertion audience. The audience must be one of: {}.", audiences.join(", ")),
                    ),
                    ErrorKind::InvalidIssuer | ErrorKind::InvalidSubject => refused(
                        700211,
                        "The client assertion's issuer and subject must both be the client id.",
                    ),
                    _ => refused(
                        700027,
                        format!("Client assertion failed signature validation: {e}."),
                    ),
                }
            })?;
    let claims = decoded.claims;
    // MSAL writes its times with fractions of a second.
    let time = |name: &str| {
        let value = claims.get(name)?;
        value.as_i64().or_else(|| value.as_f64().map(|t| t as i64))
    };
    let skew = crate::tokens::CLOCK_SKEW_SECONDS;
    let exp = time("exp").unwrap_or(i64::MIN);
    if exp + skew < now {
        return Err(refused(
            700024,
            "Client assertion is not within its valid time range.",
        ));
    }
    if time("nbf").is_some_and(|nbf| nbf - skew > now) {
        return Err(refused(
            700024,
            "Client assertion is not within its valid time range.",
        ));
    }
    claims
        .get("jti")
        .and_then(serde_json::Value::as_str)
        .filter(|jti| !jti.is_empty())
        .ok_or_else(|| refused(700025, "The client assertion must carry a 'jti' claim."))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};
    use palisade_contract::Timestamp;
    use serde_json::json;

    const CLIENT: &str = "0f5c5a2e-8d3b-4a51-9e1e-2a7c4b9d6e10";
    const TOKEN_URL: &str = "https://palisade.example/t/oauth2/v2.0/token";
    const NOW: i64 = 1_800_000_000;

    /// An RSA key and a self-signed certificate of it, as an app registers.
    fn certificate() -> (EncodingKey, String, ClientCertificate) {
        // An RSA key as the token service makes its own (PKCS#8 PEM).
        let pem = crate::keys::generate("t", Timestamp::now()).private_key;
        let signer =
            rcgen::KeyPair::from_pkcs8_pem_and_sign_algo(&pem, &rcgen::PKCS_RSA_SHA256).unwrap();
        let params = rcgen::CertificateParams::new(vec!["app.example".into()]).unwrap();
        let cert = params.self_signed(&signer).unwrap().pem();
        let parsed = ClientCertificate::parse(&cert).unwrap();
        (
            EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
            cert,
            parsed,
        )
    }

    fn assertion(key: &EncodingKey, thumbprint: &str, claims: serde_json::Value) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.x5t = Some(thumbprint.to_string());
        jsonwebtoken::encode(&header, &claims, key).unwrap()
    }

    #[test]
    fn an_assertion_is_checked_for_its_audience_parties_time_and_id() {
        let (key, pem, registered) = certificate();
        let good = json!({"aud": TOKEN_URL, "iss": CLIENT, "sub": CLIENT, "exp": NOW + 600, "nbf": NOW - 5, "jti": "1"});
        let check = |claims: &serde_json::Value| {
            let jwt = assertion(&key, &registered.sha1, claims.clone());
            check_assertion(
                &jwt,
                CLIENT,
                std::slice::from_ref(&pem),
                &[TOKEN_URL.to_string()],
                NOW,
            )
            .map_err(|refusal| refusal.aadsts)
        };
        assert_eq!(check(&good), Ok(()));
        let with = |field: &str, value: serde_json::Value| {
            let mut claims = good.clone();
            claims[field] = value;
            check(&claims)
        };
        assert_eq!(
            with("aud", json!("https://elsewhere.example/token")),
            Err(700212)
        );
        assert_eq!(with("iss", json!("someone-else")), Err(700211));
        assert_eq!(with("sub", json!("someone-else")), Err(700211));
        assert_eq!(with("exp", json!(NOW - 3600)), Err(700024), "expired");
        assert_eq!(with("nbf", json!(NOW + 3600)), Err(700024), "not yet valid");
        assert_eq!(with("jti", json!("")), Err(700025));
        // Signed by the right key but naming no registered certificate.
        let unnamed = assertion(&key, "bm90IGEgdGh1bWJwcmludA", good.clone());
        let refused = check_assertion(
            &unnamed,
            CLIENT,
            std::slice::from_ref(&pem),
            &[TOKEN_URL.into()],
            NOW,
        );
        assert_eq!(refused.map_err(|r| r.aadsts), Err(700027));
        // Named, but signed by another key.
        let (other_key, _, _) = certificate();
        let forged = assertion(&other_key, &registered.sha1, good);
        let refused = check_assertion(&forged, CLIENT, &[pem], &[TOKEN_URL.into()], NOW);
        assert_eq!(refused.map_err(|r| r.aadsts), Err(700027));
    }

    #[test]
    fn only_pem_certificates_with_rsa_keys_can_be_registered() {
        assert!(ClientCertificate::parse("not a certificate").is_err());
        let ec = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["app.example".into()]).unwrap();
        let ec_cert = params.self_signed(&ec).unwrap().pem();
        let refused = ClientCertificate::parse(&ec_cert).err().unwrap();
        assert!(refused.contains("not an RSA key"), "{refused}");
    }
}
