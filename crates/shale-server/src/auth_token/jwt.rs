//! JWT tokens (`--auth-token jwt,pub-key=…,priv-key=…,sign-method=…,ttl=…`), as etcd's
//! `server/auth/jwt.go` makes and checks them.
//!
//! A token is a signed JWS whose claims are etcd's: `username`, `revision` (the auth store's
//! revision when the token was issued) and `exp` (issue time plus `ttl`, default 5 minutes,
//! in Unix seconds). Nothing about a token is kept on the member that issued it, so every
//! member started with the same key pair accepts every other member's tokens; a member given
//! only `pub-key` verifies tokens but cannot issue them (`Authenticate` fails there with
//! etcd's `auth: token signing attempted with verify-only key`).
//!
//! A token is valid when its header names the configured method, its signature checks with
//! the configured key, and — as Go's JWT library checks them — `exp` has not passed (the
//! token still works in its last second), and `nbf`/`iat`, if present, have. Whether the
//! token's `revision` is still current is not decided here: the caller compares it with the
//! auth store's revision for key permission checks (etcd's `ErrAuthOldRevision`).
//!
//! Checking a signature costs tens of microseconds (RSA) to a few hundred (ECDSA), on every
//! request that carries the token, so verified tokens are remembered (up to [`CACHE_MAX`];
//! the cache is simply emptied when full). A remembered token is still checked against the
//! clock on each use.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Header, Validation};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::keys::{self, KeyFile, Keys, SignMethod, Signer, Verifier, SIGN_METHODS};
use super::TokenError;

/// etcd's `DefaultTTL` for JWT tokens.
pub const DEFAULT_TTL: Duration = Duration::from_secs(300);
/// Verified tokens remembered at most.
pub const CACHE_MAX: usize = 1024;

/// The options of `--auth-token jwt,...` (etcd's `jwtOptions`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtOptions {
    pub method: SignMethod,
    pub priv_key: Option<PathBuf>,
    pub pub_key: Option<PathBuf>,
    pub ttl: Duration,
}

impl JwtOptions {
    /// From the `key=value` options after `jwt` (etcd's `ParseWithDefaults`: an empty value
    /// counts as absent; unknown keys are only warned about).
    pub fn parse(opts: &[(String, String)]) -> Result<JwtOptions, TokenError> {
        let get = |k: &str| {
            opts.iter()
                .find(|(name, v)| name == k && !v.is_empty())
                .map(|(_, v)| v.as_str())
        };
        for (k, _) in opts {
            if !matches!(k.as_str(), "sign-method" | "pub-key" | "priv-key" | "ttl") {
                tracing::warn!(option = %k, "unknown JWT option in --auth-token (ignored)");
            }
        }
        let ttl = match get("ttl") {
            None => DEFAULT_TTL,
            Some(t) => {
                crate::config::parse_duration(t).map_err(|e| TokenError::Ttl(t.to_string(), e))?
            }
        };
        let method = get("sign-method").unwrap_or("");
        let method = SignMethod::parse(method)
            .ok_or_else(|| TokenError::SignMethod(method.to_string(), SIGN_METHODS))?;
        Ok(JwtOptions {
            method,
            priv_key: get("priv-key").map(PathBuf::from),
            pub_key: get("pub-key").map(PathBuf::from),
            ttl,
        })
    }
}

/// What a token claims, as issued.
#[derive(Serialize)]
struct IssuedClaims<'a> {
    exp: i64,
    revision: u64,
    username: &'a str,
}

/// What a presented token claims. Numbers are JSON numbers (Go decodes them as float64).
#[derive(Deserialize)]
struct Claims {
    username: Option<String>,
    revision: Option<f64>,
    exp: Option<f64>,
    nbf: Option<f64>,
    iat: Option<f64>,
}

/// A token that passed the signature check.
#[derive(Clone)]
struct Verified {
    user: String,
    revision: u64,
    exp: Option<i64>,
    nbf: Option<i64>,
    iat: Option<i64>,
}

impl Verified {
    fn from_claims(c: Claims) -> Option<Verified> {
        Some(Verified {
            user: c.username?,
            revision: c.revision? as u64,
            exp: c.exp.map(|v| v as i64),
            nbf: c.nbf.map(|v| v as i64),
            iat: c.iat.map(|v| v as i64),
        })
    }

    /// Go's `MapClaims.Valid` at Unix second `now`.
    fn valid_at(&self, now: i64) -> bool {
        self.exp.is_none_or(|e| now <= e)
            && self.nbf.is_none_or(|n| now >= n)
            && self.iat.is_none_or(|i| now >= i)
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// This member's JWT issuer and checker.
pub struct JwtTokens {
    method: SignMethod,
    keys: Keys,
    ttl: Duration,
    validation: Option<Validation>,
    cache: Mutex<HashMap<String, Verified>>,
}

impl JwtTokens {
    /// Reads and checks the key files named by `opts`.
    pub fn new(opts: &JwtOptions) -> Result<JwtTokens, TokenError> {
        let private = opts
            .priv_key
            .as_deref()
            .map(|p| KeyFile::read("priv-key", p))
            .transpose()?;
        let public = opts
            .pub_key
            .as_deref()
            .map(|p| KeyFile::read("pub-key", p))
            .transpose()?;
        if private.is_none() && public.is_none() {
            return Err(TokenError::MissingKey);
        }
        let keys = keys::load(opts.method, private.as_ref(), public.as_ref())?;
        // Signature, algorithm and claims only: the time claims are checked as Go does.
        let validation = opts.method.algorithm().map(|alg| {
            let mut v = Validation::new(alg);
            v.required_spec_claims.clear();
            v.validate_exp = false;
            v.validate_nbf = false;
            v.validate_aud = false;
            v.leeway = 0;
            v
        });
        Ok(JwtTokens {
            method: opts.method,
            keys,
            ttl: opts.ttl,
            validation,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// Whether this member can issue tokens (it has the private key).
    pub fn can_sign(&self) -> bool {
        self.keys.signer.is_some()
    }

    pub fn method(&self) -> SignMethod {
        self.method
    }

    /// A token for `user` at auth revision `revision`, valid for the configured ttl.
    pub fn assign(&self, user: &str, revision: u64) -> Result<String, TokenError> {
        let exp = SystemTime::now()
            .checked_add(self.ttl)
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(i64::MAX, |d| d.as_secs() as i64);
        let claims = IssuedClaims {
            exp,
            revision,
            username: user,
        };
        match (&self.keys.signer, self.method.algorithm()) {
            (None, _) => Err(TokenError::VerifyOnly),
            (Some(Signer::Jwt(key)), Some(alg)) => {
                jsonwebtoken::encode(&Header::new(alg), &claims, key)
                    .map_err(|e| TokenError::Sign(e.to_string()))
            }
            (Some(Signer::Es512(key)), _) => {
                super::es512::sign(key, &claims).map_err(TokenError::Sign)
            }
            (Some(Signer::Jwt(_)), None) => Err(TokenError::Internal(
                "ES512 key without the ES512 signer".into(),
            )),
        }
    }

    fn verify(&self, token: &str) -> Option<Verified> {
        let claims: Claims = match (&self.keys.verifier, &self.validation) {
            (Verifier::Jwt(key), Some(v)) => match jsonwebtoken::decode::<Claims>(token, key, v) {
                Ok(t) => t.claims,
                Err(e) => {
                    tracing::warn!(error = %e, "failed to parse a JWT token");
                    return None;
                }
            },
            (Verifier::Es512(key), _) => super::es512::verify(key, token)?,
            (Verifier::Jwt(_), None) => return None,
        };
        Verified::from_claims(claims)
    }

    /// The user and auth revision a valid token names.
    pub fn info(&self, token: &str) -> Option<(String, u64)> {
        let now = unix_now();
        if let Some(v) = self.cache.lock().get(token) {
            return v.valid_at(now).then(|| (v.user.clone(), v.revision));
        }
        let v = self.verify(token)?;
        let answer = v.valid_at(now).then(|| (v.user.clone(), v.revision));
        let mut cache = self.cache.lock();
        if cache.len() >= CACHE_MAX {
            cache.clear();
        }
        cache.insert(token.to_string(), v);
        answer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(s: &[(&str, &str)]) -> Result<JwtOptions, TokenError> {
        let v: Vec<(String, String)> = s
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        JwtOptions::parse(&v)
    }

    #[test]
    fn options_follow_etcd() {
        let o = opts(&[("sign-method", "RS256"), ("priv-key", "/k")]).expect("valid");
        assert_eq!(o.ttl, DEFAULT_TTL);
        assert_eq!(o.priv_key, Some(PathBuf::from("/k")));
        assert_eq!(o.pub_key, None);
        let o =
            opts(&[("sign-method", "ES512"), ("ttl", "1h30m"), ("pub-key", "")]).expect("valid");
        assert_eq!(o.ttl, Duration::from_secs(5400));
        assert_eq!(o.pub_key, None, "an empty value counts as absent");
        assert!(matches!(
            opts(&[("priv-key", "/k")]),
            Err(TokenError::SignMethod(..))
        ));
        assert!(matches!(
            opts(&[("sign-method", "RS257")]),
            Err(TokenError::SignMethod(..))
        ));
        assert!(matches!(
            opts(&[("sign-method", "RS256"), ("ttl", "5 minutes")]),
            Err(TokenError::Ttl(..))
        ));
    }

    #[test]
    fn time_claims_are_checked_like_go() {
        let v = Verified {
            user: "u".into(),
            revision: 1,
            exp: Some(100),
            nbf: Some(50),
            iat: None,
        };
        assert!(v.valid_at(100), "valid in its last second");
        assert!(!v.valid_at(101));
        assert!(!v.valid_at(49));
        assert!(v.valid_at(50));
    }

    /// Writes an EC key pair made from `seed` (`len` bytes a scalar) as SEC1 (private) and SPKI (public) PEM files.
    fn ec_pair<C>(dir: &std::path::Path, name: &str, seed: u8, len: usize)
    where
        C: p256::elliptic_curve::CurveArithmetic + p256::elliptic_curve::pkcs8::AssociatedOid,
        C: p256::elliptic_curve::point::PointCompression,
        p256::elliptic_curve::AffinePoint<C>: p256::elliptic_curve::sec1::FromSec1Point<C>
            + p256::elliptic_curve::sec1::ToSec1Point<C>,
        p256::elliptic_curve::FieldBytesSize<C>: p256::elliptic_curve::sec1::ModulusSize,
    {
        use p256::pkcs8::{EncodePublicKey, LineEnding};
        let mut bytes = vec![0u8; len];
        bytes[5] = seed;
        bytes[20] = 1;
        let sk = p256::elliptic_curve::SecretKey::<C>::from_slice(&bytes).expect("scalar");
        let pem = sk.to_sec1_pem(LineEnding::LF).expect("sec1");
        std::fs::write(dir.join(format!("{name}.key")), pem.as_bytes()).expect("write");
        let public = sk
            .public_key()
            .to_public_key_pem(LineEnding::LF)
            .expect("spki");
        std::fs::write(dir.join(format!("{name}.pub")), public).expect("write");
    }

    #[test]
    fn ec_keys_are_checked_at_startup_and_verify_only_members_cannot_sign() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        ec_pair::<p256::NistP256>(d, "a", 1, 32);
        ec_pair::<p256::NistP256>(d, "b", 2, 32);
        ec_pair::<p521::NistP521>(d, "c", 3, 66);
        let mk = |method, private: Option<&str>, public: Option<&str>| {
            JwtTokens::new(&JwtOptions {
                method,
                priv_key: private.map(|f| d.join(f)),
                pub_key: public.map(|f| d.join(f)),
                ttl: DEFAULT_TTL,
            })
        };
        let signer = mk(SignMethod::Es256, Some("a.key"), Some("a.pub")).expect("a pair");
        let token = signer.assign("u", 3).expect("sign");
        let verifier = mk(SignMethod::Es256, None, Some("a.pub")).expect("verify only");
        assert!(!verifier.can_sign());
        assert!(matches!(
            verifier.assign("u", 3),
            Err(TokenError::VerifyOnly)
        ));
        assert_eq!(verifier.info(&token), Some(("u".to_string(), 3)));
        let other = mk(SignMethod::Es256, None, Some("b.pub")).expect("another key");
        assert_eq!(other.info(&token), None);
        assert!(matches!(
            mk(SignMethod::Es256, Some("a.key"), Some("b.pub")),
            Err(TokenError::KeyMismatch { .. })
        ));
        assert!(matches!(
            mk(SignMethod::Es256, Some("c.key"), None),
            Err(TokenError::BadKey { .. })
        ));
        assert!(matches!(
            mk(SignMethod::Rs256, Some("a.key"), None),
            Err(TokenError::BadKey { .. })
        ));
        let es512 = mk(SignMethod::Es512, Some("c.key"), Some("c.pub")).expect("P-521 pair");
        let token = es512.assign("v", 9).expect("sign ES512");
        let check = mk(SignMethod::Es512, None, Some("c.pub")).expect("verify only");
        assert_eq!(check.info(&token), Some(("v".to_string(), 9)));
        assert_eq!(
            signer.info(&token),
            None,
            "an ES512 token on an ES256 member"
        );
    }

    #[test]
    fn hmac_tokens_round_trip_and_other_secrets_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, b"secret-a").expect("write");
        std::fs::write(&b, b"secret-b").expect("write");
        let mk = |p: &std::path::Path| {
            JwtTokens::new(&JwtOptions {
                method: SignMethod::Hs256,
                priv_key: Some(p.to_path_buf()),
                pub_key: None,
                ttl: DEFAULT_TTL,
            })
            .expect("keys")
        };
        let (ta, tb) = (mk(&a), mk(&b));
        let token = ta.assign("alice", 7).expect("sign");
        assert_eq!(ta.info(&token), Some(("alice".to_string(), 7)));
        assert_eq!(mk(&a).info(&token), Some(("alice".to_string(), 7)));
        assert_eq!(tb.info(&token), None);
        assert_eq!(ta.info("not.a.token"), None);
    }
}
