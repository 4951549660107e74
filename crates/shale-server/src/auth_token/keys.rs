//! The JWT sign methods and their keys, loaded from the PEM files of `--auth-token`.
//!
//! etcd (through its JWT library) accepts these encodings, and so does Shale:
//!
//! | sign-method            | priv-key                                         | pub-key                               |
//! |------------------------|--------------------------------------------------|---------------------------------------|
//! | RS*, PS*               | `RSA PRIVATE KEY` (PKCS#1) or `PRIVATE KEY` (PKCS#8) | `PUBLIC KEY` (SPKI) or `RSA PUBLIC KEY` (PKCS#1) |
//! | ES256, ES384, ES512    | `EC PRIVATE KEY` (SEC1) or `PRIVATE KEY` (PKCS#8), on P-256, P-384, P-521 | `PUBLIC KEY` (SPKI) |
//! | EdDSA (Ed25519)        | `PRIVATE KEY` (PKCS#8)                           | `PUBLIC KEY` (SPKI)                   |
//! | HS256, HS384, HS512    | the file's bytes are the shared secret           | —                                     |
//!
//! The RustCrypto key crates do all the decoding and check each key completely at startup:
//! a key on the wrong curve for its ES method, a file that is not PEM, or a public key that
//! is not the private key's half is refused before the member serves anyone (etcd finds a
//! wrong curve only when the first token is signed). The keys are then handed to
//! `jsonwebtoken` in the DER forms its RustCrypto backend reads (PKCS#1 for RSA, PKCS#8 for
//! private EC and Ed25519 keys, the raw point or 32 bytes for public ones), except for ES512,
//! which `jsonwebtoken` does not implement: that one keeps its P-521 keys (see `es512.rs`).
//!
//! etcd 3.5 has no EdDSA (its JWT library had none yet); etcd 3.6 added it, and Shale has it.

use std::path::{Path, PathBuf};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use p256::elliptic_curve;
use p256::pkcs8::der::pem;
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey};
use rsa::pkcs1::{
    DecodeRsaPrivateKey, DecodeRsaPublicKey, EncodeRsaPrivateKey, EncodeRsaPublicKey,
};

use super::TokenError;

/// A `sign-method` of `--auth-token jwt,...` (the JWS `alg` names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignMethod {
    Rs256,
    Rs384,
    Rs512,
    Ps256,
    Ps384,
    Ps512,
    Es256,
    Es384,
    Es512,
    EdDsa,
    Hs256,
    Hs384,
    Hs512,
}

/// Every accepted `sign-method`, for error messages.
pub const SIGN_METHODS: &str =
    "RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA, HS256, HS384, HS512";

impl SignMethod {
    pub fn parse(s: &str) -> Option<SignMethod> {
        use SignMethod::*;
        Some(match s {
            "RS256" => Rs256,
            "RS384" => Rs384,
            "RS512" => Rs512,
            "PS256" => Ps256,
            "PS384" => Ps384,
            "PS512" => Ps512,
            "ES256" => Es256,
            "ES384" => Es384,
            "ES512" => Es512,
            "EdDSA" => EdDsa,
            "HS256" => Hs256,
            "HS384" => Hs384,
            "HS512" => Hs512,
            _ => return None,
        })
    }

    /// The method as `jsonwebtoken` knows it; `None` for ES512, which it lacks.
    pub fn algorithm(self) -> Option<Algorithm> {
        use SignMethod::*;
        Some(match self {
            Rs256 => Algorithm::RS256,
            Rs384 => Algorithm::RS384,
            Rs512 => Algorithm::RS512,
            Ps256 => Algorithm::PS256,
            Ps384 => Algorithm::PS384,
            Ps512 => Algorithm::PS512,
            Es256 => Algorithm::ES256,
            Es384 => Algorithm::ES384,
            Es512 => return None,
            EdDsa => Algorithm::EdDSA,
            Hs256 => Algorithm::HS256,
            Hs384 => Algorithm::HS384,
            Hs512 => Algorithm::HS512,
        })
    }
}

/// What signs tokens (absent on a verify-only member).
pub enum Signer {
    Jwt(EncodingKey),
    Es512(p521::ecdsa::SigningKey),
}

/// What checks token signatures.
pub enum Verifier {
    Jwt(DecodingKey),
    Es512(p521::ecdsa::VerifyingKey),
}

/// The keys of one member: it signs when it has the private key.
pub struct Keys {
    pub signer: Option<Signer>,
    pub verifier: Verifier,
}

/// One key file named by an `--auth-token` option.
pub struct KeyFile {
    /// `priv-key` or `pub-key`.
    pub opt: &'static str,
    pub path: PathBuf,
    pub bytes: Vec<u8>,
}

impl KeyFile {
    pub fn read(opt: &'static str, path: &Path) -> Result<KeyFile, TokenError> {
        let bytes = std::fs::read(path).map_err(|err| TokenError::Read {
            opt,
            path: path.to_path_buf(),
            err,
        })?;
        Ok(KeyFile {
            opt,
            path: path.to_path_buf(),
            bytes,
        })
    }

    /// The file as PEM text (leading blank lines dropped); refused when it is not PEM.
    fn pem(&self) -> Result<&str, TokenError> {
        let not_pem = || TokenError::NotPem {
            opt: self.opt,
            path: self.path.clone(),
        };
        let text = std::str::from_utf8(&self.bytes)
            .map_err(|_| not_pem())?
            .trim_start();
        pem::decode_label(text.as_bytes()).map_err(|_| not_pem())?;
        Ok(text)
    }

    fn bad(&self, want: &'static str, err: impl std::fmt::Display) -> TokenError {
        TokenError::BadKey {
            opt: self.opt,
            path: self.path.clone(),
            want,
            err: err.to_string(),
        }
    }
}

fn mismatch(private: &KeyFile, public: &KeyFile) -> TokenError {
    TokenError::KeyMismatch {
        pub_path: public.path.clone(),
        priv_path: private.path.clone(),
    }
}

/// Loads and checks the keys for `method` (at least one of the two files is given).
pub fn load(
    method: SignMethod,
    private: Option<&KeyFile>,
    public: Option<&KeyFile>,
) -> Result<Keys, TokenError> {
    use SignMethod::*;
    match method {
        Rs256 | Rs384 | Rs512 | Ps256 | Ps384 | Ps512 => rsa_keys(private, public),
        Es256 => ec_keys::<p256::NistP256>(private, public, "a P-256 EC"),
        Es384 => ec_keys::<p384::NistP384>(private, public, "a P-384 EC"),
        Es512 => es512_keys(private, public),
        EdDsa => ed_keys(private, public),
        Hs256 | Hs384 | Hs512 => {
            let secret = private.ok_or(TokenError::HmacNeedsSecret)?;
            let enc = EncodingKey::from_secret(&secret.bytes)
                .map_err(|e| secret.bad("a non-empty shared secret", e))?;
            let dec = DecodingKey::from_secret(&secret.bytes)
                .map_err(|e| secret.bad("a non-empty shared secret", e))?;
            Ok(Keys {
                signer: Some(Signer::Jwt(enc)),
                verifier: Verifier::Jwt(dec),
            })
        }
    }
}

fn rsa_keys(private: Option<&KeyFile>, public: Option<&KeyFile>) -> Result<Keys, TokenError> {
    const WANT_PRIV: &str = "an RSA private key (PKCS#1 or PKCS#8)";
    const WANT_PUB: &str = "an RSA public key (SPKI or PKCS#1)";
    let private = match private {
        None => None,
        Some(f) => {
            let pem = f.pem()?;
            let k = rsa::PrivateKey::from_pkcs1_pem(pem)
                .or_else(|_| rsa::PrivateKey::from_pkcs8_pem(pem))
                .map_err(|e| f.bad(WANT_PRIV, e))?;
            Some((f, k))
        }
    };
    let public = match public {
        None => None,
        Some(f) => {
            let pem = f.pem()?;
            let k = rsa::PublicKey::from_public_key_pem(pem)
                .or_else(|_| rsa::PublicKey::from_pkcs1_pem(pem))
                .map_err(|e| f.bad(WANT_PUB, e))?;
            Some((f, k))
        }
    };
    let derived = private.as_ref().map(|(_, k)| k.to_public_key());
    if let (Some((pf, _)), Some((uf, u)), Some(d)) = (&private, &public, &derived) {
        if d != u {
            return Err(mismatch(pf, uf));
        }
    }
    let Some(pub_key) = derived.or_else(|| public.as_ref().map(|(_, k)| k.clone())) else {
        return Err(TokenError::MissingKey);
    };
    let pub_der = pub_key
        .to_pkcs1_der()
        .map_err(|e| TokenError::Internal(e.to_string()))?;
    let signer = match &private {
        None => None,
        Some((f, k)) => {
            let der = k.to_pkcs1_der().map_err(|e| f.bad(WANT_PRIV, e))?;
            Some(Signer::Jwt(EncodingKey::from_rsa_der(der.as_bytes())))
        }
    };
    Ok(Keys {
        signer,
        verifier: Verifier::Jwt(DecodingKey::from_rsa_der(pub_der.as_bytes())),
    })
}

/// The public half of an EC key pair, checked against the private half when both are given.
fn ec_public<C>(
    private: Option<&(&KeyFile, elliptic_curve::SecretKey<C>)>,
    public: Option<&KeyFile>,
    want: &'static str,
) -> Result<elliptic_curve::PublicKey<C>, TokenError>
where
    C: elliptic_curve::CurveArithmetic + elliptic_curve::pkcs8::AssociatedOid,
    elliptic_curve::AffinePoint<C>:
        elliptic_curve::sec1::FromSec1Point<C> + elliptic_curve::sec1::ToSec1Point<C>,
    elliptic_curve::FieldBytesSize<C>: elliptic_curve::sec1::ModulusSize,
{
    let derived = private.map(|(_, k)| k.public_key());
    let given = match public {
        None => None,
        Some(f) => Some(
            elliptic_curve::PublicKey::<C>::from_public_key_pem(f.pem()?)
                .map_err(|e| f.bad(want, e))?,
        ),
    };
    match (derived, given) {
        (Some(d), Some(g)) if d != g => {
            let (pf, _) = private.ok_or(TokenError::MissingKey)?;
            Err(mismatch(pf, public.ok_or(TokenError::MissingKey)?))
        }
        (Some(k), _) | (None, Some(k)) => Ok(k),
        (None, None) => Err(TokenError::MissingKey),
    }
}

fn ec_private<C>(
    f: &KeyFile,
    want: &'static str,
) -> Result<elliptic_curve::SecretKey<C>, TokenError>
where
    C: elliptic_curve::CurveArithmetic + elliptic_curve::pkcs8::AssociatedOid,
    C: elliptic_curve::sec1::ValidatePublicKey,
    elliptic_curve::FieldBytesSize<C>: elliptic_curve::sec1::ModulusSize,
{
    elliptic_curve::SecretKey::<C>::from_pem(f.pem()?).map_err(|e| f.bad(want, e))
}

fn ec_keys<C>(
    private: Option<&KeyFile>,
    public: Option<&KeyFile>,
    curve: &'static str,
) -> Result<Keys, TokenError>
where
    C: elliptic_curve::CurveArithmetic + elliptic_curve::pkcs8::AssociatedOid,
    C: elliptic_curve::sec1::ValidatePublicKey + elliptic_curve::point::PointCompression,
    elliptic_curve::AffinePoint<C>:
        elliptic_curve::sec1::FromSec1Point<C> + elliptic_curve::sec1::ToSec1Point<C>,
    elliptic_curve::FieldBytesSize<C>: elliptic_curve::sec1::ModulusSize,
{
    let private = match private {
        None => None,
        Some(f) => Some((f, ec_private::<C>(f, curve)?)),
    };
    let public = ec_public::<C>(private.as_ref(), public, curve)?;
    let signer = match &private {
        None => None,
        Some((f, k)) => {
            let der = k.to_pkcs8_der().map_err(|e| f.bad(curve, e))?;
            Some(Signer::Jwt(EncodingKey::from_ec_der(der.as_bytes())))
        }
    };
    Ok(Keys {
        signer,
        verifier: Verifier::Jwt(DecodingKey::from_ec_der(&public.to_sec1_bytes())),
    })
}

fn es512_keys(private: Option<&KeyFile>, public: Option<&KeyFile>) -> Result<Keys, TokenError> {
    const CURVE: &str = "a P-521 EC";
    let private = match private {
        None => None,
        Some(f) => Some((f, ec_private::<p521::NistP521>(f, CURVE)?)),
    };
    let public = ec_public::<p521::NistP521>(private.as_ref(), public, CURVE)?;
    Ok(Keys {
        signer: private.map(|(_, k)| Signer::Es512(p521::ecdsa::SigningKey::from(&k))),
        verifier: Verifier::Es512(p521::ecdsa::VerifyingKey::from(&public)),
    })
}

fn ed_keys(private: Option<&KeyFile>, public: Option<&KeyFile>) -> Result<Keys, TokenError> {
    const WANT_PRIV: &str = "an Ed25519 private key (PKCS#8)";
    const WANT_PUB: &str = "an Ed25519 public key (SPKI)";
    let private = match private {
        None => None,
        Some(f) => Some((
            f,
            ed25519_dalek::SigningKey::from_pkcs8_pem(f.pem()?).map_err(|e| f.bad(WANT_PRIV, e))?,
        )),
    };
    let given = match public {
        None => None,
        Some(f) => Some(
            ed25519_dalek::VerifyingKey::from_public_key_pem(f.pem()?)
                .map_err(|e| f.bad(WANT_PUB, e))?,
        ),
    };
    let derived = private.as_ref().map(|(_, k)| k.verifying_key());
    let verifying = match (derived, given) {
        (Some(d), Some(g)) if d != g => {
            let (pf, _) = private.as_ref().ok_or(TokenError::MissingKey)?;
            return Err(mismatch(pf, public.ok_or(TokenError::MissingKey)?));
        }
        (Some(k), _) | (None, Some(k)) => k,
        (None, None) => return Err(TokenError::MissingKey),
    };
    let signer = match &private {
        None => None,
        Some((f, k)) => {
            let der = k.to_pkcs8_der().map_err(|e| f.bad(WANT_PRIV, e))?;
            Some(Signer::Jwt(EncodingKey::from_ed_der(der.as_bytes())))
        }
    };
    Ok(Keys {
        signer,
        verifier: Verifier::Jwt(DecodingKey::from_ed_der(verifying.as_bytes())),
    })
}
