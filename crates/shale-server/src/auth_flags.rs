//! [`AuthFlags`]: etcd's flags for authentication — `--auth-token`, `--auth-token-ttl` and
//! `--bcrypt-cost` — with their defaults and `ETCD_*` environment variables.
//!
//! `--auth-token` is checked completely at startup (its options, and the key files it names,
//! which are read and parsed): a problem stops the member with one line naming the flag and
//! the file, before anything is served.
//!
//! `--bcrypt-cost` follows etcd 3.5 exactly: a value that is not a non-negative integer is a
//! flag error, and a value outside bcrypt's 4..=31 is not an error — etcd logs a warning and
//! hashes with the default cost 10 instead, and so does Shale ([`AuthFlags::bcrypt_cost`]).

use std::time::Duration;

use crate::auth_token::{TokenError, TokenProvider};

/// etcd's default `--bcrypt-cost` (Go's `bcrypt.DefaultCost`).
pub const DEFAULT_BCRYPT_COST: u32 = 10;
/// bcrypt's lowest and highest cost (Go's `bcrypt.MinCost` / `MaxCost`).
pub const BCRYPT_COSTS: std::ops::RangeInclusive<u32> = 4..=31;

/// Authentication flags of `shale` (etcd's names).
#[derive(clap::Args, Debug, Clone)]
pub struct AuthFlags {
    /// Specify auth token specific options: `simple` (tokens kept by the member that issued
    /// them), or `jwt,pub-key=PATH,priv-key=PATH,sign-method=METHOD,ttl=DURATION` (signed
    /// tokens every member with the same key accepts; METHOD is RS256, RS384, RS512, PS256,
    /// PS384, PS512, ES256, ES384, ES512, EdDSA, HS256, HS384 or HS512; ttl defaults to 5m;
    /// with only pub-key a member verifies tokens but cannot issue them).
    #[arg(long = "auth-token", env = "ETCD_AUTH_TOKEN", default_value = "simple")]
    pub auth_token: String,
    /// The lifetime in seconds of a simple auth token (renewed by every use).
    #[arg(
        long = "auth-token-ttl",
        env = "ETCD_AUTH_TOKEN_TTL",
        default_value_t = 300
    )]
    pub auth_token_ttl: u64,
    /// Specify the cost / strength of the bcrypt algorithm for hashing auth passwords. Valid
    /// values are between 4 and 31 (others: a warning, and the default 10 is used).
    #[arg(long = "bcrypt-cost", env = "ETCD_BCRYPT_COST", default_value_t = DEFAULT_BCRYPT_COST)]
    pub bcrypt_cost: u32,
}

impl AuthFlags {
    /// Checks `--auth-token` (reading its key files); the message names the flag and file.
    pub fn validate(&self) -> Result<(), String> {
        self.token_provider().map(|_| ()).map_err(|e| e.to_string())
    }

    /// The token provider `--auth-token` names.
    pub fn token_provider(&self) -> Result<TokenProvider, TokenError> {
        TokenProvider::new(&self.auth_token, Duration::from_secs(self.auth_token_ttl))
    }

    /// The bcrypt cost passwords are hashed with: `--bcrypt-cost`, or etcd's default with a
    /// warning when it is outside bcrypt's range (as etcd's `NewAuthStore` does).
    pub fn bcrypt_cost(&self) -> u32 {
        if BCRYPT_COSTS.contains(&self.bcrypt_cost) {
            return self.bcrypt_cost;
        }
        tracing::warn!(
            min_cost = BCRYPT_COSTS.start(),
            max_cost = BCRYPT_COSTS.end(),
            default_cost = DEFAULT_BCRYPT_COST,
            given_cost = self.bcrypt_cost,
            "use default bcrypt cost instead of the invalid given cost"
        );
        DEFAULT_BCRYPT_COST
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        auth: AuthFlags,
    }

    fn flags(args: &[&str]) -> Result<AuthFlags, clap::Error> {
        Cli::try_parse_from(std::iter::once("shale").chain(args.iter().copied())).map(|c| c.auth)
    }

    #[test]
    fn defaults_and_bcrypt_cost_follow_etcd() {
        let f = flags(&[]).expect("defaults");
        assert_eq!(f.auth_token, "simple");
        assert_eq!(f.auth_token_ttl, 300);
        assert_eq!(f.bcrypt_cost(), 10);
        f.validate().expect("simple is valid");
        assert_eq!(flags(&["--bcrypt-cost", "4"]).expect("4").bcrypt_cost(), 4);
        assert_eq!(
            flags(&["--bcrypt-cost", "31"]).expect("31").bcrypt_cost(),
            31
        );
        assert_eq!(flags(&["--bcrypt-cost", "3"]).expect("3").bcrypt_cost(), 10);
        assert_eq!(
            flags(&["--bcrypt-cost", "32"]).expect("32").bcrypt_cost(),
            10
        );
        assert!(flags(&["--bcrypt-cost", "-1"]).is_err());
        assert!(flags(&["--bcrypt-cost", "abc"]).is_err());
    }

    #[test]
    fn bad_auth_tokens_name_the_flag_and_file() {
        let err = |v: &str| {
            flags(&["--auth-token", v])
                .expect("parses")
                .validate()
                .expect_err("refused")
        };
        assert!(err("foo").contains("--auth-token"));
        assert!(err("jwt,sign-method=XX256,priv-key=/k").contains("XX256"));
        let e = err("jwt,sign-method=RS256,priv-key=/nonexistent/k.pem");
        assert!(
            e.contains("priv-key") && e.contains("/nonexistent/k.pem"),
            "{e}"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a key\n").expect("write");
        let e = err(&format!("jwt,sign-method=ES256,pub-key={}", junk.display()));
        assert!(e.contains("pub-key") && e.contains("is not PEM"), "{e}");
        let e = err(&format!(
            "jwt,sign-method=RS256,priv-key={},ttl=x",
            junk.display()
        ));
        assert!(e.contains("ttl"), "{e}");
    }
}
