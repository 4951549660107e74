//! ES512 tokens (ECDSA on P-521 with SHA-512), which `jsonwebtoken` does not implement.
//!
//! The signature itself is RustCrypto's (`p521::ecdsa`); this file only lays the token out
//! as every JWT is laid out (RFC 7515's compact form): `base64url(header)`, a dot,
//! `base64url(claims)`, a dot, `base64url(signature)`, no padding, the signature being the
//! fixed-size `r || s` (66 + 66 bytes) that RFC 7518 gives ES512. The header is the one
//! etcd's library writes, `{"alg":"ES512","typ":"JWT"}`; a token is accepted only when its
//! header names ES512 and the signature checks over the first two parts.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use p521::ecdsa::signature::{Signer, Verifier};
use p521::ecdsa::{Signature, SigningKey, VerifyingKey};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

const HEADER: &str = r#"{"alg":"ES512","typ":"JWT"}"#;

#[derive(Deserialize)]
struct Header {
    alg: String,
}

/// A signed token carrying `claims`.
pub fn sign<T: Serialize>(key: &SigningKey, claims: &T) -> Result<String, String> {
    let claims = serde_json::to_vec(claims).map_err(|e| e.to_string())?;
    let mut token = URL_SAFE_NO_PAD.encode(HEADER);
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(claims));
    let sig: Signature = key.try_sign(token.as_bytes()).map_err(|e| e.to_string())?;
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(sig.to_bytes()));
    Ok(token)
}

/// The claims of a token whose header says ES512 and whose signature checks; `None`
/// otherwise.
pub fn verify<T: DeserializeOwned>(key: &VerifyingKey, token: &str) -> Option<T> {
    let (message, sig) = token.rsplit_once('.')?;
    let (header, claims) = message.split_once('.')?;
    let header: Header = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).ok()?).ok()?;
    if header.alg != "ES512" {
        return None;
    }
    let sig = Signature::from_slice(&URL_SAFE_NO_PAD.decode(sig).ok()?).ok()?;
    key.verify(message.as_bytes(), &sig).ok()?;
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct C {
        username: String,
    }

    fn key(seed: u8) -> SigningKey {
        let mut bytes = [0u8; 66];
        bytes[65] = seed;
        bytes[40] = 7;
        let sk = p521::SecretKey::from_slice(&bytes).expect("a valid scalar");
        SigningKey::from(&sk)
    }

    #[test]
    fn signs_and_verifies_and_refuses_tampering() {
        let k = key(1);
        let c = C {
            username: "alice".into(),
        };
        let t = sign(&k, &c).expect("sign");
        let parts: Vec<&str> = t.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(
            URL_SAFE_NO_PAD.decode(parts[0]).expect("b64"),
            HEADER.as_bytes()
        );
        assert_eq!(URL_SAFE_NO_PAD.decode(parts[2]).expect("b64").len(), 132);
        assert_eq!(verify::<C>(k.verifying_key(), &t), Some(c));
        // Another key, another payload under the same signature, a truncated token.
        assert_eq!(verify::<C>(key(2).verifying_key(), &t), None);
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(br#"{"username":"root"}"#),
            parts[2]
        );
        assert_eq!(verify::<C>(k.verifying_key(), &forged), None);
        assert_eq!(verify::<C>(k.verifying_key(), &t[..t.len() - 4]), None);
        assert_eq!(verify::<C>(k.verifying_key(), "a.b"), None);
    }
}
