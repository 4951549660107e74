//! Auth tokens: what `Authenticate` hands out and what later requests present, chosen by
//! etcd's `--auth-token` flag.
//!
//! The flag is parsed as etcd's `decomposeOpts` parses it: comma-separated, the first part
//! the token type, every other part exactly one `key=value` (a part without `=`, with two
//! `=`, or a key given twice is refused). The types:
//!
//! * `simple` (the default) — random tokens kept in this member's memory ([`simple`]); they
//!   work only on the member that issued them.
//! * `jwt,sign-method=…,priv-key=…,pub-key=…,ttl=…` — signed JWTs ([`jwt`]) that every
//!   member holding the same key accepts.
//! * the empty string — no tokens at all (etcd's `tokenNop`): `Authenticate` always fails
//!   with `authentication failed`, and only client certificates (`--client-cert-auth`) can
//!   name a user.
//!
//! A presented token becomes an [`AuthInfo`]: the user and the auth revision the request acts
//! at. For a JWT that is the revision in the token, so a token issued before any later auth
//! change is refused by key permission checks with etcd's "revision of auth store is old";
//! a simple token (which the auth store revokes itself, see `AuthStore::token_valid`) and a
//! client certificate act at the current revision, as in etcd.
//!
//! Every problem with the flag is found at startup ([`TokenProvider::new`], called from
//! `AuthFlags::validate`) and reported on one line naming `--auth-token` and, for key files,
//! the option and the file.

mod es512;
pub mod jwt;
pub mod keys;
pub mod simple;

use std::path::PathBuf;
use std::time::Duration;

use shale_machine::auth_store::AuthStore;

pub use jwt::{JwtOptions, JwtTokens};
pub use simple::SimpleTokens;

/// Why `--auth-token` cannot be used, or why a token cannot be issued.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("--auth-token: option {0:?} is not key=value")]
    BadOption(String),
    #[error("--auth-token: option {0:?} is given twice")]
    DuplicateOption(String),
    #[error("--auth-token: unknown token type {0:?} (want simple or jwt)")]
    UnknownType(String),
    #[error("--auth-token: sign-method {0:?} is not one of {1}")]
    SignMethod(String, &'static str),
    #[error("--auth-token: invalid ttl {0:?}: {1}")]
    Ttl(String, String),
    #[error("--auth-token: cannot read {opt} file {path:?}: {err}")]
    Read {
        opt: &'static str,
        path: PathBuf,
        err: std::io::Error,
    },
    #[error("--auth-token: {opt} file {path:?} is not PEM")]
    NotPem { opt: &'static str, path: PathBuf },
    #[error("--auth-token: {opt} file {path:?} is not {want}: {err}")]
    BadKey {
        opt: &'static str,
        path: PathBuf,
        want: &'static str,
        err: String,
    },
    #[error("--auth-token: pub-key file {pub_path:?} is not the public half of priv-key file {priv_path:?}")]
    KeyMismatch {
        pub_path: PathBuf,
        priv_path: PathBuf,
    },
    #[error("--auth-token: jwt needs a priv-key file (to sign and verify) or a pub-key file (to verify only)")]
    MissingKey,
    #[error(
        "--auth-token: an HS* sign-method needs a priv-key file (its bytes are the shared secret)"
    )]
    HmacNeedsSecret,
    /// Issuing on a member that has only the public key (etcd's `ErrVerifyOnly`).
    #[error("auth: token signing attempted with verify-only key")]
    VerifyOnly,
    /// Issuing with the nop provider (etcd's `ErrAuthFailed` from `tokenNop`).
    #[error("auth: authentication failed, invalid user ID or password")]
    NoTokens,
    #[error("{0}")]
    Sign(String),
    #[error("--auth-token: {0}")]
    Internal(String),
}

/// The value of `--auth-token` split as etcd splits it: the type and its options.
pub fn decompose(flag: &str) -> Result<(String, Vec<(String, String)>), TokenError> {
    let mut parts = flag.split(',');
    let kind = parts.next().unwrap_or("").to_string();
    let mut opts: Vec<(String, String)> = Vec::new();
    for part in parts {
        let kv: Vec<&str> = part.split('=').collect();
        let [k, v] = kv[..] else {
            return Err(TokenError::BadOption(part.to_string()));
        };
        if opts.iter().any(|(name, _)| name == k) {
            return Err(TokenError::DuplicateOption(k.to_string()));
        }
        opts.push((k.to_string(), v.to_string()));
    }
    Ok((kind, opts))
}

/// Who a request acts as: the user and the auth revision its credentials carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthInfo {
    pub user: String,
    pub revision: u64,
}

/// This member's token issuer and checker.
pub enum TokenProvider {
    Simple(SimpleTokens),
    Jwt(Box<JwtTokens>),
    Nop,
}

impl TokenProvider {
    /// The provider `--auth-token` names; simple tokens live `simple_ttl` from their last use.
    pub fn new(flag: &str, simple_ttl: Duration) -> Result<TokenProvider, TokenError> {
        let (kind, opts) = decompose(flag)?;
        match kind.as_str() {
            "simple" => Ok(TokenProvider::Simple(SimpleTokens::new(simple_ttl))),
            "jwt" => {
                let o = JwtOptions::parse(&opts)?;
                Ok(TokenProvider::Jwt(Box::new(JwtTokens::new(&o)?)))
            }
            "" => Ok(TokenProvider::Nop),
            other => Err(TokenError::UnknownType(other.to_string())),
        }
    }

    /// A new token for `user`, who proved their password at auth revision `revision`.
    pub fn assign(&self, user: &str, revision: u64) -> Result<String, TokenError> {
        match self {
            TokenProvider::Simple(t) => Ok(t.issue(user, revision)),
            TokenProvider::Jwt(t) => t.assign(user, revision),
            TokenProvider::Nop => Err(TokenError::NoTokens),
        }
    }

    /// The user and revision a presented token stands for, or `None` when the token is
    /// unknown, expired, badly signed or revoked.
    pub fn info(&self, token: &str, auth: &AuthStore) -> Option<AuthInfo> {
        match self {
            TokenProvider::Simple(t) => {
                let (user, issued) = t.lookup(token)?;
                auth.token_valid(&user, issued).then(|| AuthInfo {
                    user,
                    revision: auth.revision(),
                })
            }
            TokenProvider::Jwt(t) => {
                let (user, revision) = t.info(token)?;
                Some(AuthInfo { user, revision })
            }
            TokenProvider::Nop => None,
        }
    }

    /// Auth was disabled: simple tokens are forgotten (JWTs simply run out, as in etcd).
    pub fn disable(&self) {
        if let TokenProvider::Simple(t) = self {
            t.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_is_split_as_etcd_splits_it() {
        let (k, o) = decompose("jwt,sign-method=RS256,ttl=10m").expect("valid");
        assert_eq!(k, "jwt");
        assert_eq!(
            o,
            vec![
                ("sign-method".to_string(), "RS256".to_string()),
                ("ttl".to_string(), "10m".to_string())
            ]
        );
        assert_eq!(decompose("simple").expect("valid").0, "simple");
        assert!(matches!(
            decompose("jwt,sign-method"),
            Err(TokenError::BadOption(_))
        ));
        assert!(matches!(
            decompose("jwt,a=b=c"),
            Err(TokenError::BadOption(_))
        ));
        assert!(matches!(
            decompose("jwt,ttl=1m,ttl=2m"),
            Err(TokenError::DuplicateOption(_))
        ));
        assert!(matches!(
            TokenProvider::new("oauth", Duration::ZERO),
            Err(TokenError::UnknownType(_))
        ));
        assert!(matches!(
            TokenProvider::new("jwt,sign-method=RS256", Duration::ZERO),
            Err(TokenError::MissingKey)
        ));
        assert!(matches!(
            TokenProvider::new("", Duration::ZERO),
            Ok(TokenProvider::Nop)
        ));
    }
}
