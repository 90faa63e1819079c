//! A deterministic randomized robustness test for the bearer-token path,
//! runnable on stable Rust (the coverage-guided fuzzer is `/fuzz`, target
//! `token`).
//!
//! Two halves:
//! - `bearer_token` gets random and mutated `Authorization` header values and
//!   must never panic; whatever token passes it and `check_token_syntax`
//!   must be plain base64url parts.
//! - `Validator::verify`, backed by a real SQLite store holding a real RSA
//!   key, gets one genuine token (which must pass) and thousands of tampered
//!   versions and forgeries of it, each of which must be refused without a
//!   panic. The only exception is a "mutation" that leaves the token
//!   byte-identical, which must still pass.
//!
//! `SEED` fixes every choice the test makes. The RSA key, its `kid` and the
//! token's times are fresh on each run, so the exact bytes differ from run to
//! run; a failure therefore prints the token it failed on.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use palisade_contract::Timestamp;
use palisade_domain::identity::SigningKey;
use palisade_domain::{Store, SystemClock, Tenant};
use palisade_identity::keys;
use palisade_identity::tokens::{self, issuer, Claims, TokenVersion, ACCEPTED_AUDIENCES};
use palisade_identity::validate::MAX_TOKEN_BYTES;
use palisade_identity::{bearer_token, check_token_syntax, TokenError, Validator};
use palisade_store_sqlite as sqlite;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

/// Fixed so that a failure reproduces; change it to explore other inputs.
const SEED: u64 = 0x7E4E_B0A7_D000_0002;
const HEADER_CASES: usize = 40_000;
const TOKEN_CASES: usize = 6_000;

const ORIGIN: &str = "https://palisade.test:8443";
const TENANT_ID: &str = "8a1f0c2e-5b7d-4e39-9c64-2f3b1d0e7a55";

/// A realistic (unsigned, never verified) token shape for the header half.
const SAMPLE_TOKEN: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiIsImtpZCI6ImFiYyJ9.\
eyJhdWQiOiJodHRwczovL2FwaS5zZWN1cml0eWNlbnRlci5taWNyb3NvZnQuY29tIiwidGlkIjoidCJ9.\
c2lnbmF0dXJlLXNpZ25hdHVyZS1zaWduYXR1cmU_-w";

const TOKEN_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=";

/// Bytes that are likely to matter to a header parser: separators, ASCII and
/// Unicode whitespace (UTF-8 encoded), standard base64, quotes, control bytes
/// and invalid UTF-8.
const NASTY: &[&[u8]] = &[
    b" ",
    b"  ",
    b"\t",
    b"\r\n",
    b"\n",
    b"\x0b",
    b"\x0c",
    b"\0",
    b"\x7f",
    b"\xc2\xa0",     // NO-BREAK SPACE
    b"\xe2\x80\x83", // EM SPACE
    b"\xe3\x80\x80", // IDEOGRAPHIC SPACE
    b"\xe2\x80\xa8", // LINE SEPARATOR
    b"\xef\xbb\xbf", // BOM
    b"\xe2\x80\x8b", // ZERO WIDTH SPACE (not whitespace)
    b"+",
    b"/",
    b",",
    b";",
    b":",
    b"\"",
    b"'",
    b"\\",
    b"%2E",
    b"..",
    b"=",
    b"==",
    b"\xff",
    b"\xfe",
    b"\x80",
    b"\xc0\x80",
    b"\xed\xa0\x80", // a surrogate, invalid in UTF-8
    b"\xf0\x9f\x98", // truncated 4-byte sequence
    b"\xf4\x90\x80\x80",
    "é".as_bytes(),
    "😀".as_bytes(),
];

/// Near misses of the scheme.
const SCHEMES: &[&str] = &[
    "Bearer",
    "bearer",
    "BEARER",
    "bEaReR",
    "Bearer:",
    "Bearer,",
    "Bear",
    "Bearerr",
    "Basic",
    "Token",
    "JWT",
    "",
    "Bearer\0",
    "Beаrer", // Cyrillic 'а'
    "B e a r e r",
];

fn pick<'a, T>(rng: &mut StdRng, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

fn pick_bytes<'a>(rng: &mut StdRng, items: &[&'a [u8]]) -> &'a [u8] {
    items[rng.random_range(0..items.len())]
}

fn random_bytes(rng: &mut StdRng, max_len: usize) -> Vec<u8> {
    let len = rng.random_range(0..=max_len);
    (0..len).map(|_| rng.random::<u8>()).collect()
}

fn random_token_text(rng: &mut StdRng, max_len: usize) -> String {
    let len = rng.random_range(0..=max_len);
    (0..len)
        .map(|_| char::from(*pick(rng, TOKEN_ALPHABET)))
        .collect()
}

/// Flips the ASCII case of some letters.
fn recase(rng: &mut StdRng, text: &str) -> String {
    text.chars()
        .map(|c| {
            if rng.random_bool(0.5) {
                if c.is_ascii_lowercase() {
                    c.to_ascii_uppercase()
                } else {
                    c.to_ascii_lowercase()
                }
            } else {
                c
            }
        })
        .collect()
}

/// A few random byte-level edits; the result need not be UTF-8.
fn mutate_bytes(rng: &mut StdRng, base: &[u8]) -> Vec<u8> {
    let mut bytes = base.to_vec();
    for _ in 0..rng.random_range(1..=4) {
        let len = bytes.len();
        match rng.random_range(0..7) {
            0 if len > 0 => {
                let at = rng.random_range(0..len);
                bytes[at] ^= 1 << rng.random_range(0..8);
            }
            1 if len > 0 => {
                let at = rng.random_range(0..len);
                bytes[at] = rng.random();
            }
            2 => {
                let at = rng.random_range(0..=len);
                let nasty = pick_bytes(rng, NASTY);
                bytes.splice(at..at, nasty.iter().copied());
            }
            3 => {
                let start = rng.random_range(0..=len);
                let end = (start + rng.random_range(0..=16)).min(len);
                bytes.drain(start..end);
            }
            4 => {
                let start = rng.random_range(0..=len);
                let end = (start + rng.random_range(0..=32)).min(len);
                let copy = bytes[start..end].to_vec();
                for _ in 0..rng.random_range(1..=4) {
                    bytes.splice(end..end, copy.iter().copied());
                }
            }
            5 => {
                let at = rng.random_range(0..=len);
                bytes.truncate(at);
            }
            _ => {
                let at = rng.random_range(0..=len);
                let noise = random_bytes(rng, 8);
                bytes.splice(at..at, noise);
            }
        }
    }
    bytes
}

/// One header value, and whether it is certainly well formed (so must be accepted).
fn header_case(rng: &mut StdRng) -> (Vec<u8>, bool) {
    match rng.random_range(0..8) {
        // Arbitrary bytes.
        0 => (random_bytes(rng, 96), false),
        // The right scheme and a token of the right alphabet.
        1 => {
            let token = random_token_text(rng, 160);
            let ok = !token.is_empty();
            (format!("Bearer {token}").into_bytes(), ok)
        }
        // Scheme case variants and near misses, separators, tokens.
        2 => {
            let scheme = if rng.random_bool(0.5) {
                recase(rng, "bearer")
            } else {
                pick(rng, SCHEMES).to_string()
            };
            let single_space = rng.random_bool(0.5);
            let separator: &[u8] = if single_space {
                b" "
            } else {
                pick_bytes(rng, NASTY)
            };
            let token = if rng.random_bool(0.5) {
                SAMPLE_TOKEN.to_string()
            } else {
                random_token_text(rng, 64)
            };
            let ok = single_space && scheme.eq_ignore_ascii_case("bearer") && !token.is_empty();
            let mut value = scheme.into_bytes();
            value.extend_from_slice(separator);
            value.extend_from_slice(token.as_bytes());
            (value, ok)
        }
        // Edits of a well-formed value.
        3 => (
            mutate_bytes(rng, format!("Bearer {SAMPLE_TOKEN}").as_bytes()),
            false,
        ),
        // Huge values, around and far beyond the length limit.
        4 => {
            let prefix = b"Bearer ";
            let total = if rng.random_bool(0.5) {
                (MAX_TOKEN_BYTES - 2 + rng.random_range(0..5)).max(prefix.len() + 1)
            } else {
                rng.random_range(MAX_TOKEN_BYTES / 2..=MAX_TOKEN_BYTES * 4)
            };
            let mut value = prefix.to_vec();
            let fill = *pick(rng, TOKEN_ALPHABET);
            value.resize(total, fill);
            let mut ok = total <= MAX_TOKEN_BYTES;
            if rng.random_bool(0.3) {
                let at = rng.random_range(prefix.len()..value.len());
                value[at] = *pick(rng, &[b' ', b'\0', 0xff, b'+', b'\n']);
                ok = false;
            }
            (value, ok)
        }
        // Whitespace around and inside.
        5 => {
            let mut value = Vec::new();
            for _ in 0..rng.random_range(0..3) {
                value.extend_from_slice(pick_bytes(rng, &[b" ", b"\t", b"\r\n", b"\xc2\xa0"]));
            }
            value.extend_from_slice(b"Bearer ");
            let spaces = rng.random_range(0..3);
            value.extend(std::iter::repeat_n(b' ', spaces));
            value.extend_from_slice(SAMPLE_TOKEN.as_bytes());
            let inner = rng.random_bool(0.3);
            if inner {
                let at = value.len() - rng.random_range(1..SAMPLE_TOKEN.len());
                let space = pick_bytes(rng, &[b" ", b"\t", b"\n", b"\xe2\x80\x83"]);
                value.splice(at..at, space.iter().copied());
            }
            for _ in 0..rng.random_range(0..3) {
                value.extend_from_slice(pick_bytes(rng, &[b" ", b"\t", b"\r\n", b"\xe3\x80\x80"]));
            }
            (value, !inner)
        }
        // Invalid UTF-8 spliced into an otherwise good value.
        6 => {
            let mut value = format!("Bearer {SAMPLE_TOKEN}").into_bytes();
            let at = rng.random_range(0..=value.len());
            let bad = pick_bytes(
                rng,
                &[
                    b"\xff",
                    b"\x80",
                    b"\xc0\x80",
                    b"\xed\xa0\x80",
                    b"\xf0\x9f\x98",
                ],
            );
            value.splice(at..at, bad.iter().copied());
            (value, false)
        }
        // Random text of the token alphabet with or without a scheme.
        _ => {
            let mut value = random_token_text(rng, 40).into_bytes();
            if rng.random_bool(0.5) {
                value.insert(rng.random_range(0..=value.len()), b' ');
            }
            (value, false)
        }
    }
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'=')
}

fn check_header(value: &[u8], must_accept: bool) -> bool {
    let result = catch_unwind(AssertUnwindSafe(|| {
        // As the validator takes it: the header's token, then its syntax.
        bearer_token(Some(value))
            .and_then(|token| check_token_syntax(token).map(|()| token.to_owned()))
    }))
    .unwrap_or_else(|_| panic!("bearer_token panicked on {value:?}"));
    match result {
        Ok(token) => {
            assert!(!token.is_empty(), "empty token from {value:?}");
            assert!(
                token.bytes().all(is_token_byte),
                "token {token:?} from {value:?} has bytes outside base64url, '.', '='"
            );
            assert!(
                value.len() <= MAX_TOKEN_BYTES,
                "accepted {} bytes",
                value.len()
            );
            let text = std::str::from_utf8(value).expect("accepted non-UTF-8");
            let text = text.trim();
            assert!(
                text.len() > 7 && text.as_bytes()[..7].eq_ignore_ascii_case(b"bearer "),
                "accepted {value:?} without the Bearer scheme"
            );
            assert!(
                text.ends_with(&token),
                "{token:?} is not the end of {value:?}"
            );
            true
        }
        Err(error) => {
            assert!(!must_accept, "refused well-formed {value:?}: {error}");
            assert!(
                !matches!(error, TokenError::Missing),
                "{value:?} is not missing"
            );
            false
        }
    }
}

#[test]
fn authorization_headers_never_panic() {
    let mut rng = StdRng::seed_from_u64(SEED);
    assert!(matches!(bearer_token(None), Err(TokenError::Missing)));
    let mut accepted = 0;
    for _ in 0..HEADER_CASES {
        let (value, must_accept) = header_case(&mut rng);
        accepted += usize::from(check_header(&value, must_accept));
    }
    eprintln!("{accepted} of {HEADER_CASES} Authorization headers yielded a token");
    // Neither all accepted nor all refused: both paths are exercised.
    assert!(accepted > HEADER_CASES / 10, "only {accepted} accepted");
    assert!(accepted < HEADER_CASES * 9 / 10, "{accepted} accepted");
}

// ---------------------------------------------------------------------------
// Tokens against a real store and key.

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn json_b64(value: &Value) -> String {
    b64(&serde_json::to_vec(value).unwrap())
}

/// The parts of `token`, decoded from base64url where they decode.
struct Parts {
    header: String,
    payload: String,
    signature: String,
    header_json: Value,
    payload_json: Value,
    signature_bytes: Vec<u8>,
}

fn split(token: &str) -> Parts {
    let mut parts = token.split('.');
    let (header, payload, signature) = (
        parts.next().unwrap().to_string(),
        parts.next().unwrap().to_string(),
        parts.next().unwrap().to_string(),
    );
    Parts {
        header_json: serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&header).unwrap()).unwrap(),
        payload_json: serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&payload).unwrap()).unwrap(),
        signature_bytes: URL_SAFE_NO_PAD.decode(&signature).unwrap(),
        header,
        payload,
        signature,
    }
}

const ALGS: &[&str] = &[
    "none",
    "None",
    "NONE",
    "nOnE",
    "HS256",
    "HS384",
    "HS512",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "EdDSA",
    "rs256",
    "RS256 ",
    " RS256",
    "RS2560",
    "RS25",
    "",
    "RS256\u{0}",
];

/// JSON texts (not necessarily valid, not necessarily UTF-8) for a header or payload.
fn garbage_json(rng: &mut StdRng, kid: &str, claims: &Value) -> Vec<u8> {
    let claims_text = claims.to_string();
    match rng.random_range(0..20) {
        0 => Vec::new(),
        1 => b"{".to_vec(),
        2 => b"[]".to_vec(),
        3 => b"null".to_vec(),
        4 => b"0".to_vec(),
        5 => b"\"RS256\"".to_vec(),
        6 => format!(r#"{{"alg":"RS256","kid":"{kid}""#).into_bytes(),
        7 => format!(r#"{{"alg":"RS256","alg":"none","kid":"{kid}"}}"#).into_bytes(),
        8 => format!(r#"{{"alg":"none","alg":"RS256","kid":"{kid}","kid":"{kid}"}}"#).into_bytes(),
        9 => "[".repeat(rng.random_range(100..5000)).into_bytes(),
        10 => {
            let mut text = b"\xef\xbb\xbf".to_vec();
            text.extend_from_slice(format!(r#"{{"alg":"RS256","kid":"{kid}"}}"#).as_bytes());
            text
        }
        11 => format!(r#"{{"alg":"RS256","kid":"{kid}"}}garbage"#).into_bytes(),
        12 => format!(r#"{{"alg":"RS256","kid":"{kid}","x":NaN}}"#).into_bytes(),
        13 => format!(r#"{{"alg":"RS256","kid":"{kid}","x":1e999}}"#).into_bytes(),
        14 => {
            let mut text = format!(r#"{{"alg":"RS256","kid":"{kid}"#).into_bytes();
            text.extend_from_slice(b"\xc3\"}");
            text
        }
        15 => {
            let mut text = format!(r#"{{"alg":"RS256","kid":"{kid}"#).into_bytes();
            text.extend_from_slice(b"\xff\xfe\"}");
            text
        }
        16 => claims_text.into_bytes(),
        17 => format!(
            "{{{}}}",
            (0..rng.random_range(1..2000))
                .map(|i| format!("\"k{i}\":{i}"))
                .collect::<Vec<_>>()
                .join(",")
        )
        .into_bytes(),
        18 => mutate_bytes(rng, claims_text.as_bytes()),
        _ => random_bytes(rng, 64),
    }
}

/// Claims of `claims` changed in a way that keeps them parseable or not.
fn tampered_claims(rng: &mut StdRng, claims: &Value) -> Value {
    let mut claims = claims.clone();
    let map = claims.as_object_mut().unwrap();
    let field = *pick(
        rng,
        &[
            "aud", "iss", "iat", "nbf", "exp", "tid", "sub", "roles", "zzz",
        ],
    );
    let value = match rng.random_range(0..12) {
        0 => Value::Null,
        1 => json!(i64::MAX),
        2 => json!(i64::MIN),
        3 => json!(u64::MAX),
        4 => json!(1e300),
        5 => json!("9999999999"),
        6 => json!(["https://api.securitycenter.microsoft.com"]),
        7 => json!({}),
        8 => json!("other-tenant"),
        9 => json!(format!("{ORIGIN}/other-tenant/v2.0")),
        10 => {
            map.remove(field);
            return claims;
        }
        _ => json!(true),
    };
    map.insert(field.to_string(), value);
    claims
}

/// A random tampering with `token`. Any result must be refused unless it
/// equals `token`.
fn mutate_token(rng: &mut StdRng, token: &str, kid: &str, forgeries: &[String]) -> String {
    let parts = split(token);
    match rng.random_range(0..16) {
        // Byte-level edits anywhere (made UTF-8 again where they broke it).
        0..=3 => String::from_utf8_lossy(&mutate_bytes(rng, token.as_bytes())).into_owned(),
        // One character of one part replaced by another base64url character.
        4 => {
            let mut bytes = token.as_bytes().to_vec();
            let at = rng.random_range(0..bytes.len());
            bytes[at] = *pick(rng, &TOKEN_ALPHABET[..64]);
            String::from_utf8(bytes).unwrap()
        }
        // Parts swapped, dropped, repeated, emptied or added.
        5 => {
            let mut list = vec![
                parts.header.clone(),
                parts.payload.clone(),
                parts.signature.clone(),
            ];
            match rng.random_range(0..6) {
                0 => {
                    let a = rng.random_range(0..3);
                    list.swap(a, (a + rng.random_range(1..3)) % 3);
                }
                1 => {
                    list.remove(rng.random_range(0..3));
                }
                2 => {
                    let at = rng.random_range(0..3);
                    list[at].clear();
                }
                3 => {
                    let extra = pick(rng, &list).clone();
                    list.insert(rng.random_range(0..=3), extra);
                }
                4 => list.push(String::new()),
                _ => list.insert(0, String::new()),
            }
            list.join(".")
        }
        // A part truncated.
        6 => {
            let mut list = [parts.header, parts.payload, parts.signature];
            let at = rng.random_range(0..3);
            let keep = rng.random_range(0..=list[at].len());
            list[at].truncate(keep);
            list.join(".")
        }
        // The header re-encoded with another alg.
        7 => {
            let mut header = parts.header_json.clone();
            let alg = match rng.random_range(0..8) {
                0 => json!(null),
                1 => json!(256),
                2 => json!(["RS256"]),
                3 => json!({"alg": "RS256"}),
                _ => json!(pick(rng, ALGS)),
            };
            header["alg"] = alg;
            let signature = match rng.random_range(0..3) {
                0 => String::new(),
                1 => b64(&random_bytes(rng, 64)),
                _ => parts.signature,
            };
            format!("{}.{}.{}", json_b64(&header), parts.payload, signature)
        }
        // The kid dropped or changed.
        8 => {
            let mut header = parts.header_json.clone();
            let map = header.as_object_mut().unwrap();
            match rng.random_range(0..9) {
                0 => {
                    map.remove("kid");
                }
                1 => {
                    map.insert("kid".into(), Value::Null);
                }
                2 => {
                    map.insert("kid".into(), json!(""));
                }
                3 => {
                    map.insert("kid".into(), json!(1));
                }
                4 => {
                    map.insert("kid".into(), json!([kid]));
                }
                5 => {
                    map.insert("kid".into(), json!(format!("{kid}x")));
                }
                6 => {
                    map.insert("kid".into(), json!(kid.to_uppercase()));
                }
                7 => {
                    map.insert("kid".into(), json!("k".repeat(10_000)));
                }
                _ => {
                    map.insert("kid".into(), json!("../../etc/passwd"));
                }
            }
            format!(
                "{}.{}.{}",
                json_b64(&header),
                parts.payload,
                parts.signature
            )
        }
        // Other header fields added, removed or reordered.
        9 => {
            let mut header = parts.header_json.clone();
            let map = header.as_object_mut().unwrap();
            match rng.random_range(0..5) {
                0 => {
                    map.remove("typ");
                }
                1 => {
                    map.insert("jku".into(), json!("https://evil.test/keys"));
                }
                2 => {
                    map.insert(
                        "jwk".into(),
                        json!({"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": kid}),
                    );
                }
                3 => {
                    map.insert("crit".into(), json!(["exp"]));
                }
                _ => {
                    map.insert("x5u".into(), json!("https://evil.test/cert"));
                }
            }
            format!(
                "{}.{}.{}",
                json_b64(&header),
                parts.payload,
                parts.signature
            )
        }
        // Garbage JSON in the header or the payload.
        10 => {
            let garbage = b64(&garbage_json(rng, kid, &parts.payload_json));
            if rng.random_bool(0.5) {
                format!("{garbage}.{}.{}", parts.payload, parts.signature)
            } else {
                format!("{}.{garbage}.{}", parts.header, parts.signature)
            }
        }
        // The claims changed under the original signature.
        11 => {
            let claims = tampered_claims(rng, &parts.payload_json);
            format!("{}.{}.{}", parts.header, json_b64(&claims), parts.signature)
        }
        // Other base64 flavours: padding, standard alphabet.
        12 => {
            let bytes = [
                URL_SAFE_NO_PAD.decode(&parts.header).unwrap(),
                URL_SAFE_NO_PAD.decode(&parts.payload).unwrap(),
                parts.signature_bytes.clone(),
            ];
            let at = rng.random_range(0..3);
            let mut list = [parts.header, parts.payload, parts.signature];
            list[at] = match rng.random_range(0..3) {
                0 => URL_SAFE.encode(&bytes[at]),
                1 => STANDARD.encode(&bytes[at]),
                _ => format!("{}{}", list[at], "=".repeat(rng.random_range(1..4))),
            };
            list.join(".")
        }
        // The signature's bytes changed: a bit flipped, a zero byte added or
        // removed, cut short, or replaced by random bytes.
        13 => {
            let mut signature = parts.signature_bytes.clone();
            if signature.is_empty() {
                signature.push(0);
            }
            match rng.random_range(0..5) {
                0 => {
                    let at = rng.random_range(0..signature.len());
                    signature[at] ^= 1 << rng.random_range(0..8);
                }
                1 => signature.insert(0, 0),
                2 => {
                    signature.remove(0);
                }
                3 => signature.truncate(rng.random_range(0..signature.len())),
                _ => signature = random_bytes(rng, 300),
            }
            format!("{}.{}.{}", parts.header, parts.payload, b64(&signature))
        }
        // Spliced with a forgery: our header or payload with its other parts.
        14 => {
            let forgery = split(pick::<String>(rng, forgeries));
            match rng.random_range(0..3) {
                0 => format!("{}.{}.{}", forgery.header, parts.payload, parts.signature),
                1 => format!("{}.{}.{}", parts.header, forgery.payload, parts.signature),
                _ => format!("{}.{}.{}", parts.header, parts.payload, forgery.signature),
            }
        }
        // Case changed, or whitespace around or inside.
        _ => match rng.random_range(0..3) {
            0 => {
                let mut chars: Vec<char> = token.chars().collect();
                let at = rng.random_range(0..chars.len());
                let c = chars[at];
                chars[at] = if c.is_ascii_lowercase() {
                    c.to_ascii_uppercase()
                } else {
                    c.to_ascii_lowercase()
                };
                chars.into_iter().collect()
            }
            1 => format!(
                "{}{token}{}",
                pick(rng, &["", " ", "\t", "\n"]),
                pick(rng, &["", " ", "\r\n", "\u{a0}"])
            ),
            _ => {
                let mut text = token.to_string();
                let at = rng.random_range(0..=text.len());
                text.insert(at, *pick(rng, &[' ', '\t', '\n', '+', '/', '\u{0}']));
                text
            }
        },
    }
}

fn claims_now(now: i64) -> Claims {
    Claims {
        aud: ACCEPTED_AUDIENCES[0].into(),
        iss: issuer(ORIGIN, TENANT_ID, TokenVersion::V2),
        iat: now,
        nbf: now,
        exp: now + tokens::TOKEN_LIFETIME_SECONDS,
        tid: TENANT_ID.into(),
        ver: Some("2.0".into()),
        sub: "fuzz-app".into(),
        oid: Some("fuzz-app".into()),
        appid: Some("fuzz-app".into()),
        azp: Some("fuzz-app".into()),
        idtyp: Some("app".into()),
        roles: Some(vec!["Machine.Read.All".into(), "Machine.Isolate".into()]),
        ..Claims::default()
    }
}

fn sign_as(alg: Algorithm, kid: Option<&str>, key: &EncodingKey, claims: &Claims) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_string);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

/// Tokens an attacker (or a careless issuer) might present: properly encoded
/// and signed, but not acceptable. `key` is the tenant's real key.
fn forgeries(key: &SigningKey, foreign: &SigningKey, now: i64) -> Vec<(String, String)> {
    use rsa::pkcs1::EncodeRsaPublicKey;
    use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey, LineEnding};

    let private = rsa::RsaPrivateKey::from_pkcs8_pem(&key.private_key).unwrap();
    let public = private.to_public_key();
    let real = EncodingKey::from_rsa_pem(key.private_key.as_bytes()).unwrap();
    let kid = key.kid.as_str();
    let good = claims_now(now);
    let mut list = Vec::new();
    let mut add = |name: &str, token: String| list.push((name.to_string(), token));

    // alg none, with no signature and with the real one.
    let payload = json_b64(&serde_json::to_value(&good).unwrap());
    for alg in ["none", "None", "NONE"] {
        let header = json_b64(&json!({"typ": "JWT", "alg": alg, "kid": kid}));
        add(&format!("alg {alg}"), format!("{header}.{payload}."));
    }
    // HS256 keyed with public material (algorithm confusion).
    let secrets: Vec<(&str, Vec<u8>)> = vec![
        (
            "SPKI PEM",
            public
                .to_public_key_pem(LineEnding::LF)
                .unwrap()
                .into_bytes(),
        ),
        (
            "PKCS#1 PEM",
            public.to_pkcs1_pem(LineEnding::LF).unwrap().into_bytes(),
        ),
        ("modulus text", key.modulus.clone().into_bytes()),
        ("modulus", URL_SAFE_NO_PAD.decode(&key.modulus).unwrap()),
        ("kid", kid.as_bytes().to_vec()),
        ("empty", Vec::new()),
    ];
    for (name, secret) in &secrets {
        for alg in [Algorithm::HS256, Algorithm::HS512] {
            let token = sign_as(alg, Some(kid), &EncodingKey::from_secret(secret), &good);
            add(&format!("{alg:?} with the {name}"), token);
        }
    }
    // The real key, other RSA algorithms.
    for alg in [
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS512,
    ] {
        add(
            &format!("real key, {alg:?}"),
            sign_as(alg, Some(kid), &real, &good),
        );
    }
    // Another RSA key claiming the real kid.
    let other = EncodingKey::from_rsa_pem(foreign.private_key.as_bytes()).unwrap();
    add(
        "foreign key, real kid",
        sign_as(Algorithm::RS256, Some(kid), &other, &good),
    );
    add(
        "foreign key, its own kid",
        sign_as(Algorithm::RS256, Some(&foreign.kid), &other, &good),
    );
    // The real key, but no kid or an unknown one.
    add("no kid", sign_as(Algorithm::RS256, None, &real, &good));
    add(
        "unknown kid",
        sign_as(Algorithm::RS256, Some("nope"), &real, &good),
    );
    // The real key and kid, unacceptable claims.
    let skew = tokens::CLOCK_SKEW_SECONDS;
    let variants: Vec<(&str, Claims)> = vec![
        (
            "expired",
            Claims {
                exp: now - skew - 10,
                ..good.clone()
            },
        ),
        (
            "expired long ago",
            Claims {
                exp: i64::MIN,
                ..good.clone()
            },
        ),
        (
            "not yet valid",
            Claims {
                nbf: now + skew + 10,
                ..good.clone()
            },
        ),
        (
            "nbf at the end of time",
            Claims {
                nbf: i64::MAX,
                ..good.clone()
            },
        ),
        (
            "wrong audience",
            Claims {
                aud: "https://graph.microsoft.com".into(),
                ..good.clone()
            },
        ),
        (
            "empty audience",
            Claims {
                aud: String::new().into(),
                ..good.clone()
            },
        ),
        (
            "audience of another case",
            Claims {
                aud: ACCEPTED_AUDIENCES[0].to_uppercase().into(),
                ..good.clone()
            },
        ),
        (
            "issuer of another origin",
            Claims {
                iss: issuer("https://evil.test", TENANT_ID, TokenVersion::V2),
                ..good.clone()
            },
        ),
        (
            "issuer of http origin",
            Claims {
                iss: issuer(
                    &ORIGIN.replace("https", "http"),
                    TENANT_ID,
                    TokenVersion::V2,
                ),
                ..good.clone()
            },
        ),
        (
            "issuer with trailing slash",
            Claims {
                iss: format!("{}/", good.iss),
                ..good.clone()
            },
        ),
        (
            "empty issuer",
            Claims {
                iss: String::new(),
                ..good.clone()
            },
        ),
        (
            "another tenant's issuer",
            Claims {
                iss: issuer(ORIGIN, "other", TokenVersion::V2),
                ..good.clone()
            },
        ),
        (
            "another tenant",
            Claims {
                iss: issuer(ORIGIN, "other", TokenVersion::V2),
                tid: "other".into(),
                ..good.clone()
            },
        ),
        (
            "tid of another tenant",
            Claims {
                tid: "other".into(),
                ..good.clone()
            },
        ),
        (
            "empty tid",
            Claims {
                tid: String::new(),
                ..good.clone()
            },
        ),
        (
            "tenant id in another case",
            Claims {
                iss: issuer(ORIGIN, &TENANT_ID.to_uppercase(), TokenVersion::V2),
                tid: TENANT_ID.to_uppercase(),
                ..good.clone()
            },
        ),
    ];
    for (name, claims) in variants {
        add(name, sign_as(Algorithm::RS256, Some(kid), &real, &claims));
    }
    // The real key, claims that do not deserialize.
    let header = json_b64(&json!({"typ": "JWT", "alg": "RS256", "kid": kid}));
    let raw_claims = [
        json!({"iss": good.iss, "tid": TENANT_ID}),
        json!({"iss": good.iss, "tid": TENANT_ID, "aud": good.aud, "iat": now, "nbf": now, "exp": "tomorrow", "sub": "s"}),
        json!({"iss": good.iss, "tid": TENANT_ID, "aud": good.aud, "iat": now, "nbf": now, "exp": 1e300, "sub": "s"}),
        json!({"iss": good.iss, "tid": TENANT_ID, "aud": good.aud, "iat": now, "nbf": now, "exp": u64::MAX, "sub": "s"}),
        json!({"iss": [good.iss], "tid": TENANT_ID}),
        json!({"iss": good.iss, "tid": 7}),
        json!([good.iss, TENANT_ID]),
    ];
    for (n, claims) in raw_claims.iter().enumerate() {
        let payload = json_b64(claims);
        let message = format!("{header}.{payload}");
        let signature =
            jsonwebtoken::crypto::sign(message.as_bytes(), &real, Algorithm::RS256).unwrap();
        add(
            &format!("undeserializable claims #{n}"),
            format!("{message}.{signature}"),
        );
    }
    list
}

/// Runs `verify` in its own task, so that a panic is reported with its input.
async fn verify(validator: &Validator, token: &str) -> Result<String, TokenError> {
    let (validator, owned) = (validator.clone(), token.to_string());
    tokio::spawn(async move { validator.verify(&owned, ORIGIN).await })
        .await
        .unwrap_or_else(|e| panic!("verify panicked on {token:?}: {e}"))
        .map(|verified| verified.tenant_id.clone())
}

fn variant(error: &TokenError) -> String {
    let debug = format!("{error:?}");
    debug
        .split(['(', ' '])
        .next()
        .unwrap_or_default()
        .to_string()
}

/// A SQLite store in a temporary directory (kept alive by the returned
/// guard) with one tenant and its signing key, and a validator reading it.
async fn tenant_with_key() -> (tempfile::TempDir, Validator, SigningKey, Timestamp) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(sqlite::open(&dir.path().join("fuzz.db")).unwrap());
    let tenant = Tenant {
        id: TENANT_ID.into(),
        name: "Fuzz".into(),
        retention_days: 180,
    };
    assert!(store.create_tenant(&tenant, &[], &[]).await.unwrap());
    let now = Timestamp::now();
    let key = keys::generate(TENANT_ID, now);
    store.rotate_signing_key(&key).await.unwrap();
    let validator = Validator::new(store, Arc::new(SystemClock), Vec::new());
    (dir, validator, key, now)
}

#[tokio::test]
async fn tampered_tokens_are_refused() {
    let started = std::time::Instant::now();
    let (_dir, validator, key, now) = tenant_with_key().await;
    let foreign = keys::generate(TENANT_ID, now);

    let token = tokens::sign(&key, &claims_now(now.unix_seconds())).unwrap();
    assert_eq!(verify(&validator, &token).await.unwrap(), TENANT_ID);
    // The same claims as a v1 token pass too.
    let v1 = Claims {
        iss: issuer(ORIGIN, TENANT_ID, TokenVersion::V1),
        ver: Some("1.0".into()),
        ..claims_now(now.unix_seconds())
    };
    assert_eq!(
        verify(&validator, &tokens::sign(&key, &v1).unwrap())
            .await
            .unwrap(),
        TENANT_ID
    );

    let mut refusals: BTreeMap<String, usize> = BTreeMap::new();
    let forgeries = forgeries(&key, &foreign, now.unix_seconds());
    for (name, forgery) in &forgeries {
        match verify(&validator, forgery).await {
            Ok(_) => panic!("accepted forgery ({name}): {forgery}"),
            Err(error) => *refusals.entry(variant(&error)).or_default() += 1,
        }
    }
    let forgery_tokens: Vec<String> = forgeries.into_iter().map(|(_, t)| t).collect();

    let mut rng = StdRng::seed_from_u64(SEED);
    let mut unchanged = 0;
    for _ in 0..TOKEN_CASES {
        let mut mutated = mutate_token(&mut rng, &token, &key.kid, &forgery_tokens);
        // Sometimes stack a second tampering on the first, when the first still splits.
        if rng.random_bool(0.2) && mutated.split('.').count() == 3 && mutated != token {
            let parts_decode = mutated.split('.').enumerate().all(|(i, part)| {
                URL_SAFE_NO_PAD.decode(part).ok().is_some_and(|bytes| {
                    i == 2 || serde_json::from_slice::<Value>(&bytes).is_ok_and(|v| v.is_object())
                })
            });
            if parts_decode {
                mutated = mutate_token(&mut rng, &mutated, &key.kid, &forgery_tokens);
            }
        }
        let result = verify(&validator, &mutated).await;
        if mutated == token {
            unchanged += 1;
            assert!(
                result.is_ok(),
                "the untouched token was refused: {result:?}"
            );
            continue;
        }
        match result {
            Ok(_) => panic!("accepted a tampered token: {mutated:?} (original {token:?})"),
            Err(error) => *refusals.entry(variant(&error)).or_default() += 1,
        }
    }
    // The cache was not poisoned on the way.
    assert_eq!(verify(&validator, &token).await.unwrap(), TENANT_ID);

    let refused: usize = refusals.values().sum();
    eprintln!(
        "{refused} tampered tokens and forgeries refused ({unchanged} mutations left the token \
         unchanged) in {:.1?}: {refusals:?}",
        started.elapsed()
    );
    // The mutations reach past the parser: signatures and claims get checked.
    for reached in [
        "BadSignature",
        "Algorithm",
        "MissingKid",
        "UnknownKey",
        "Malformed",
    ] {
        assert!(
            refusals.get(reached).copied().unwrap_or(0) > 0,
            "no refusal of kind {reached}: {refusals:?}"
        );
    }
    assert!(refusals["BadSignature"] > TOKEN_CASES / 10, "{refusals:?}");
}

/// A token remembered as verified at one origin is checked again at another,
/// and refused there (its issuer names the origin that issued it); it still
/// passes where it was issued.
#[tokio::test]
async fn a_token_verified_at_one_origin_is_refused_at_another() {
    let (_dir, validator, key, now) = tenant_with_key().await;
    let token = tokens::sign(&key, &claims_now(now.unix_seconds())).unwrap();
    assert!(validator.verify(&token, ORIGIN).await.is_ok());
    let Err(error) = validator.verify(&token, "https://other.test:8443").await else {
        panic!("a token of {ORIGIN} was accepted at another origin");
    };
    assert!(matches!(error, TokenError::UntrustedIssuer(_)), "{error}");
    assert!(validator.verify(&token, ORIGIN).await.is_ok());
}

/// A token signed with the tenant's own key whose `exp` is so far in the
/// future that adding the clock skew to it overflows. Refusing it and
/// accepting it are both defensible; panicking is not.
#[tokio::test]
async fn signed_token_expiring_at_the_end_of_time_does_not_panic() {
    let (_dir, validator, key, now) = tenant_with_key().await;
    for exp in [i64::MAX, i64::MAX - tokens::CLOCK_SKEW_SECONDS + 1] {
        let claims = Claims {
            exp,
            ..claims_now(now.unix_seconds())
        };
        let token = tokens::sign(&key, &claims).unwrap();
        // `verify` reports a panic with the token.
        let _ = verify(&validator, &token).await;
    }
}
