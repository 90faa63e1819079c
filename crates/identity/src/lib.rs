//! Identity for Palisade: the token service MDE clients already know (Entra
//! ID's OAuth2 endpoints, shape for shape), the RS256 keys it signs with, the
//! validation of every bearer token the API receives, and argon2 hashing of
//! client secrets and passwords.

pub mod admin;
pub mod authorize;
pub mod certificates;
pub mod console;
pub mod grants;
pub mod keys;
pub mod lockout;
pub mod operator;
pub mod sealing;
pub mod secrets;
pub mod service;
pub mod tokens;
pub mod validate;

pub use service::{OAuthError, TokenRequest, TokenResponse, TokenService};
pub use tokens::{Claims, TokenVersion};
pub use validate::{
    bearer_token, check_token_syntax, ExternalIssuer, TokenError, Validator, Verified,
};
