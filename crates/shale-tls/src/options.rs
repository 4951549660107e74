//! `--tls-min-version`, `--tls-max-version` and `--cipher-suites`, with etcd's values.

use rustls::crypto::CryptoProvider;
use rustls::SupportedCipherSuite;

use crate::TlsError;

/// A TLS protocol version as etcd names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum TlsVersion {
    #[default]
    Tls12,
    Tls13,
}

impl std::str::FromStr for TlsVersion {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "TLS1.2" => Ok(TlsVersion::Tls12),
            "TLS1.3" => Ok(TlsVersion::Tls13),
            _ => Err(format!(
                "unexpected TLS version {s:?} (must be one of: TLS1.2, TLS1.3)"
            )),
        }
    }
}

impl std::fmt::Display for TlsVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TlsVersion::Tls12 => "TLS1.2",
            TlsVersion::Tls13 => "TLS1.3",
        })
    }
}

/// The rustls protocol versions from `min` to `max` (defaults: TLS 1.2 to TLS 1.3).
pub(crate) fn versions(
    min: Option<TlsVersion>,
    max: Option<TlsVersion>,
) -> Result<Vec<&'static rustls::SupportedProtocolVersion>, TlsError> {
    let min = min.unwrap_or(TlsVersion::Tls12);
    let max = max.unwrap_or(TlsVersion::Tls13);
    if min > max {
        return Err(TlsError::Config(format!(
            "--tls-min-version ({min}) is greater than --tls-max-version ({max})"
        )));
    }
    let mut out = Vec::new();
    if min <= TlsVersion::Tls12 {
        out.push(&rustls::version::TLS12);
    }
    if max >= TlsVersion::Tls13 {
        out.push(&rustls::version::TLS13);
    }
    Ok(out)
}

/// Go's names of TLS 1.2 suites that rustls does not implement (CBC, RSA key exchange,
/// RC4, 3DES): refused with a reason rather than as unknown.
const GO_ONLY: &[&str] = &[
    "TLS_RSA_WITH_RC4_128_SHA",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
];

/// The TLS 1.2 suites named by `--cipher-suites` (Go's names, as etcd takes them). An empty
/// list means rustls' defaults. As in Go, the list does not apply to TLS 1.3.
pub fn parse_cipher_suites(
    provider: &CryptoProvider,
    names: &[String],
) -> Result<Vec<SupportedCipherSuite>, TlsError> {
    let mut out = Vec::new();
    for name in names {
        // Go accepts the short CHACHA20 names too.
        let want = match name.as_str() {
            "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305" => "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305" => {
                "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"
            }
            n => n,
        };
        let found = provider.cipher_suites.iter().find(|s| {
            matches!(s, SupportedCipherSuite::Tls12(_)) && s.suite().as_str() == Some(want)
        });
        match found {
            Some(s) => out.push(*s),
            None if GO_ONLY.contains(&want) => {
                return Err(TlsError::Config(format!(
                    "--cipher-suites: {name} is not supported by Shale (TLS 1.2 suites must be ECDHE with AES-GCM or CHACHA20-POLY1305)"
                )))
            }
            None => {
                return Err(TlsError::Config(format!(
                    "--cipher-suites: unexpected TLS cipher suite {name:?}"
                )))
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_suites_parse_as_etcd_names_them() {
        assert_eq!("TLS1.3".parse::<TlsVersion>(), Ok(TlsVersion::Tls13));
        assert!("TLS1.1".parse::<TlsVersion>().is_err());
        assert_eq!(versions(None, None).expect("default").len(), 2);
        assert_eq!(
            versions(Some(TlsVersion::Tls13), None)
                .expect("1.3 only")
                .len(),
            1
        );
        assert!(versions(Some(TlsVersion::Tls13), Some(TlsVersion::Tls12)).is_err());
        let p = crate::provider();
        let s = parse_cipher_suites(
            &p,
            &[
                "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256".into(),
                "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305".into(),
            ],
        )
        .expect("known suites");
        assert_eq!(s.len(), 2);
        let e = parse_cipher_suites(&p, &["TLS_RSA_WITH_AES_128_CBC_SHA".into()]).unwrap_err();
        assert!(e.to_string().contains("not supported"), "{e}");
        let e = parse_cipher_suites(&p, &["NOPE".into()]).unwrap_err();
        assert!(e.to_string().contains("unexpected TLS cipher suite"), "{e}");
    }
}
