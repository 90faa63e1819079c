//! Feeds arbitrary bytes to the bearer-token path as far as it goes without a
//! store: the `Authorization` header parser, then the JWT header and the
//! claims read before the signature is checked. Any panic, stack overflow or
//! timeout is a bug: every input must end in `Ok` or an error.

#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_identity::{bearer_token, check_token_syntax, Claims};

fuzz_target!(|data: &[u8]| {
    // As `Validator::verify` takes it: the header's token, then its syntax.
    let Ok(token) = bearer_token(Some(data)).and_then(|t| check_token_syntax(t).map(|()| t)) else {
        return;
    };
    assert!(
        !token.is_empty()
            && token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'=')),
        "bearer_token yielded {token:?}"
    );
    // What `Validator::verify` reads before it has a key to check with.
    let _ = jsonwebtoken::decode_header(token);
    let _ = jsonwebtoken::dangerous::insecure_decode::<Claims>(token);
});
