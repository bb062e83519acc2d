//! Signatures over a plugin's OCI manifest digest, in cosign's key-based
//! format, so that `cosign verify --key` accepts what `wasmonkey plugin
//! sign` writes and wasmonkey accepts what `cosign sign --key` writes:
//!
//! * the signed payload is cosign's "simple signing" JSON, naming the
//!   manifest digest;
//! * the signature is ECDSA P-256 over the payload's SHA-256, ASN.1 DER,
//!   base64;
//! * public keys are PEM `PUBLIC KEY` (SPKI); private keys are cosign's
//!   `ENCRYPTED SIGSTORE PRIVATE KEY` (scrypt, then NaCl secretbox around a
//!   PKCS#8 key; the password in `COSIGN_PASSWORD`), or a plain PKCS#8 PEM.
//!
//! Keyless signing (Fulcio certificates, Rekor entries) needs those
//! services: a verifier for it would be another [`TrustedKey`] kind.

use std::path::Path;

use anyhow::{bail, Context as _};
use base64::Engine as _;
use p256::ecdsa::signature::{Signer as _, Verifier as _};
use p256::ecdsa::{DerSignature, SigningKey, VerifyingKey};
use p256::pkcs8::{DecodePrivateKey as _, DecodePublicKey as _, EncodePrivateKey as _};
use p256::pkcs8::{EncodePublicKey as _, LineEnding};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

/// cosign's type of a container image signature payload.
pub(crate) const PAYLOAD_TYPE: &str = "cosign container image signature";
/// The most bytes of a key file read.
const MAX_KEY_BYTES: u64 = 16 * 1024;
/// The most bytes of a payload verified.
pub(crate) const MAX_PAYLOAD_BYTES: usize = 64 * 1024;
/// scrypt's cost for new keys: cosign's default (N = 2^16, r = 8, p = 1).
const SCRYPT_LOG_N: u8 = 16;

/// cosign's simple signing payload.
#[derive(Debug, Serialize, Deserialize)]
struct Payload {
    critical: Critical,
    optional: Option<serde_json::Value>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Critical {
    identity: Identity,
    image: Image,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Identity {
    #[serde(rename = "docker-reference")]
    docker_reference: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Image {
    #[serde(rename = "docker-manifest-digest")]
    docker_manifest_digest: String,
}

/// A public key the operator trusts, with the file it came from.
#[derive(Debug, Clone)]
pub struct TrustedKey {
    key: VerifyingKey,
    /// Where it was read from, as errors and `plugins list` name it.
    pub path: String,
    /// `sha256:` of its SPKI DER: the same key has the same id wherever
    /// its file lives.
    pub id: String,
}

impl TrustedKey {
    /// Read a PEM `PUBLIC KEY` (P-256) file.
    pub fn load(path: &Path) -> anyhow::Result<TrustedKey> {
        let text = read_key_file(path)?;
        let key = VerifyingKey::from_public_key_pem(text.trim()).map_err(|err| {
            anyhow::anyhow!("{}: not a P-256 public key in PEM: {err}", path.display())
        })?;
        Ok(TrustedKey {
            id: key_id(&key)?,
            key,
            path: path.display().to_string(),
        })
    }
}

/// The id of a key: `sha256:` and the first 16 hex digits of its SPKI DER.
fn key_id(key: &VerifyingKey) -> anyhow::Result<String> {
    let der = key
        .to_public_key_der()
        .map_err(|err| anyhow::anyhow!("encoding a public key: {err}"))?;
    let digest = hex(&sha2::Sha256::digest(der.as_bytes()));
    Ok(format!("sha256:{}", &digest[..16]))
}

/// A key that signs.
pub struct SigningPair {
    key: SigningKey,
}

impl SigningPair {
    /// Read a private key: cosign's encrypted PEM (its password in
    /// `password`, empty if none), or a plain PKCS#8 PEM.
    pub fn load(path: &Path, password: &[u8]) -> anyhow::Result<SigningPair> {
        let text = read_key_file(path)?;
        let text = text.trim();
        let key = if let Some(body) = pem_body(text, "ENCRYPTED SIGSTORE PRIVATE KEY")
            .or_else(|| pem_body(text, "ENCRYPTED COSIGN PRIVATE KEY"))
        {
            let der = decrypt(&body, password).with_context(|| path.display().to_string())?;
            SigningKey::from_pkcs8_der(&der)
                .map_err(|err| anyhow::anyhow!("{}: not a P-256 key: {err}", path.display()))?
        } else {
            SigningKey::from_pkcs8_pem(text).map_err(|err| {
                anyhow::anyhow!(
                    "{}: neither a cosign key nor a PKCS#8 P-256 key in PEM: {err}",
                    path.display()
                )
            })?
        };
        Ok(SigningPair { key })
    }

    /// A new random key.
    pub fn generate() -> anyhow::Result<SigningPair> {
        loop {
            let mut bytes = [0u8; 32];
            getrandom::fill(&mut bytes).map_err(|err| anyhow::anyhow!("no randomness: {err}"))?;
            // Out of range (below 2^-32 likely): draw again.
            if let Ok(key) = SigningKey::from_slice(&bytes) {
                return Ok(SigningPair { key });
            }
        }
    }

    /// The private key as cosign writes it: encrypted with `password`.
    pub fn to_cosign_pem(&self, password: &[u8]) -> anyhow::Result<String> {
        let der = self
            .key
            .to_pkcs8_der()
            .map_err(|err| anyhow::anyhow!("encoding the key: {err}"))?;
        let body = encrypt(der.as_bytes(), password)?;
        Ok(pem("ENCRYPTED SIGSTORE PRIVATE KEY", &body))
    }

    /// The public key, PEM.
    pub fn public_pem(&self) -> anyhow::Result<String> {
        self.key
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .map_err(|err| anyhow::anyhow!("encoding the public key: {err}"))
    }

    /// Its key's id (see [`TrustedKey::id`]).
    pub fn id(&self) -> anyhow::Result<String> {
        key_id(self.key.verifying_key())
    }

    /// Sign `digest` (a manifest's `sha256:…`) of `repository` (registry
    /// and repository, no tag): the payload and its base64 signature.
    pub fn sign(&self, repository: &str, digest: &str) -> anyhow::Result<(Vec<u8>, String)> {
        let payload = serde_json::to_vec(&Payload {
            critical: Critical {
                identity: Identity {
                    docker_reference: repository.to_owned(),
                },
                image: Image {
                    docker_manifest_digest: digest.to_owned(),
                },
                kind: PAYLOAD_TYPE.to_owned(),
            },
            optional: None,
        })?;
        let signature: DerSignature = self.key.sign(&payload);
        let encoded = base64::engine::general_purpose::STANDARD.encode(signature.as_bytes());
        Ok((payload, encoded))
    }
}

/// Why a signature did not verify.
#[derive(Debug, PartialEq, Eq)]
pub enum Rejected {
    /// No trusted key verifies it.
    NoTrustedKey,
    /// It verifies, but signs another digest.
    OtherDigest(String),
    /// It is not a signature or payload cosign writes.
    Malformed(String),
}

impl std::fmt::Display for Rejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rejected::NoTrustedKey => write!(f, "no trusted key verifies it"),
            Rejected::OtherDigest(other) => write!(f, "it signs another manifest ({other})"),
            Rejected::Malformed(why) => write!(f, "{why}"),
        }
    }
}

/// The trusted key that signed `payload` with `signature` (base64 DER) for
/// manifest `digest`.
pub fn verify<'k>(
    payload: &[u8],
    signature: &str,
    digest: &str,
    keys: &'k [TrustedKey],
) -> Result<&'k TrustedKey, Rejected> {
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(Rejected::Malformed(format!(
            "a payload of {} bytes (at most {MAX_PAYLOAD_BYTES})",
            payload.len()
        )));
    }
    let der = base64::engine::general_purpose::STANDARD
        .decode(signature.trim())
        .map_err(|_| Rejected::Malformed("the signature is not base64".into()))?;
    let signature = DerSignature::from_bytes(&der)
        .map_err(|_| Rejected::Malformed("the signature is not an ECDSA DER signature".into()))?;
    let signer = keys
        .iter()
        .find(|trusted| trusted.key.verify(payload, &signature).is_ok())
        .ok_or(Rejected::NoTrustedKey)?;
    // Only a payload a trusted key signed is read.
    let parsed: Payload = serde_json::from_slice(payload)
        .map_err(|err| Rejected::Malformed(format!("the payload is not cosign's: {err}")))?;
    if parsed.critical.kind != PAYLOAD_TYPE {
        return Err(Rejected::Malformed(format!(
            "the payload's type is not {PAYLOAD_TYPE:?}"
        )));
    }
    let signed = parsed.critical.image.docker_manifest_digest;
    if signed != digest {
        return Err(Rejected::OtherDigest(
            crate::text::one_line(&signed).into_owned(),
        ));
    }
    Ok(signer)
}

/// A key file's text, read only if it is a small regular file.
fn read_key_file(path: &Path) -> anyhow::Result<String> {
    let bytes = crate::files::read_bounded(path, MAX_KEY_BYTES)
        .map_err(|err| anyhow::anyhow!("{}: cannot read the key: {err}", path.display()))?;
    String::from_utf8(bytes).map_err(|_| anyhow::anyhow!("{}: the key is not text", path.display()))
}

/// The body of a PEM block with `label`, decoded.
fn pem_body(text: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let inner = text.strip_prefix(&begin)?.trim_end().strip_suffix(&end)?;
    let joined: String = inner.split_whitespace().collect();
    base64::engine::general_purpose::STANDARD
        .decode(joined)
        .ok()
}

/// A PEM block with `label` around `body`, 64 columns.
fn pem(label: &str, body: &[u8]) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(body);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in encoded.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// go-securesystemslib's encrypted key, as cosign writes it.
#[derive(Serialize, Deserialize)]
struct Encrypted {
    kdf: Kdf,
    cipher: Cipher,
    ciphertext: String,
}

#[derive(Serialize, Deserialize)]
struct Kdf {
    name: String,
    params: KdfParams,
    salt: String,
}

#[derive(Serialize, Deserialize)]
#[allow(non_snake_case, reason = "cosign's field names")]
struct KdfParams {
    N: u64,
    r: u32,
    p: u32,
}

#[derive(Serialize, Deserialize)]
struct Cipher {
    name: String,
    nonce: String,
}

fn scrypt_key(password: &[u8], salt: &[u8], params: &KdfParams) -> anyhow::Result<[u8; 32]> {
    // cosign accepts these costs only; a file asking for more is refused
    // rather than left to spend the machine's memory.
    let log_n = match (params.N, params.r, params.p) {
        (32_768, 8, 1) => 15,
        (65_536, 8, 1) => 16,
        (131_072, 8, 1) => 17,
        (n, r, p) => bail!("scrypt parameters N={n}, r={r}, p={p} are not cosign's"),
    };
    let params = scrypt::Params::new(log_n, 8, 1, 32)
        .map_err(|err| anyhow::anyhow!("scrypt parameters: {err}"))?;
    let mut key = [0u8; 32];
    scrypt::scrypt(password, salt, &params, &mut key)
        .map_err(|err| anyhow::anyhow!("scrypt: {err}"))?;
    Ok(key)
}

fn decrypt(body: &[u8], password: &[u8]) -> anyhow::Result<Vec<u8>> {
    use crypto_secretbox::aead::{Aead as _, KeyInit as _};
    let sealed: Encrypted =
        serde_json::from_slice(body).context("not cosign's encrypted key format")?;
    if sealed.kdf.name != "scrypt" || sealed.cipher.name != "nacl/secretbox" {
        bail!(
            "encrypted with {} and {}, not scrypt and nacl/secretbox",
            crate::text::one_line(&sealed.kdf.name),
            crate::text::one_line(&sealed.cipher.name)
        );
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let salt = b64.decode(&sealed.kdf.salt).context("the salt")?;
    let nonce = b64.decode(&sealed.cipher.nonce).context("the nonce")?;
    let ciphertext = b64.decode(&sealed.ciphertext).context("the ciphertext")?;
    if nonce.len() != 24 {
        bail!("a nonce of {} bytes, not 24", nonce.len());
    }
    let key = scrypt_key(password, &salt, &sealed.kdf.params)?;
    let cipher = crypto_secretbox::XSalsa20Poly1305::new(&key.into());
    cipher
        .decrypt(
            crypto_secretbox::Nonce::from_slice(&nonce),
            ciphertext.as_slice(),
        )
        .map_err(|_| anyhow::anyhow!("the password does not open it (COSIGN_PASSWORD)"))
}

fn encrypt(plain: &[u8], password: &[u8]) -> anyhow::Result<Vec<u8>> {
    use crypto_secretbox::aead::{Aead as _, KeyInit as _};
    let mut salt = [0u8; 32];
    let mut nonce = [0u8; 24];
    getrandom::fill(&mut salt).map_err(|err| anyhow::anyhow!("no randomness: {err}"))?;
    getrandom::fill(&mut nonce).map_err(|err| anyhow::anyhow!("no randomness: {err}"))?;
    let params = KdfParams {
        N: 1 << SCRYPT_LOG_N,
        r: 8,
        p: 1,
    };
    let key = scrypt_key(password, &salt, &params)?;
    let cipher = crypto_secretbox::XSalsa20Poly1305::new(&key.into());
    let ciphertext = cipher
        .encrypt(crypto_secretbox::Nonce::from_slice(&nonce), plain)
        .map_err(|_| anyhow::anyhow!("encrypting the key failed"))?;
    let b64 = base64::engine::general_purpose::STANDARD;
    Ok(serde_json::to_vec(&Encrypted {
        kdf: Kdf {
            name: "scrypt".into(),
            params,
            salt: b64.encode(salt),
        },
        cipher: Cipher {
            name: "nacl/secretbox".into(),
            nonce: b64.encode(nonce),
        },
        ciphertext: b64.encode(ciphertext),
    })?)
}

/// Lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trusted(pair: &SigningPair, dir: &Path, name: &str) -> TrustedKey {
        let path = dir.join(name);
        std::fs::write(&path, pair.public_pem().unwrap()).unwrap();
        TrustedKey::load(&path).unwrap()
    }

    #[test]
    fn a_signature_verifies_with_its_key_for_its_digest_only() {
        let dir = tempfile::tempdir().unwrap();
        let ours = SigningPair::generate().unwrap();
        let theirs = SigningPair::generate().unwrap();
        let keys = [trusted(&ours, dir.path(), "ours.pub")];
        let digest = format!("sha256:{}", "a".repeat(64));
        let (payload, signature) = ours.sign("127.0.0.1:5000/chaos/p", &digest).unwrap();
        let text = String::from_utf8(payload.clone()).unwrap();
        assert!(text.starts_with("{\"critical\":{\"identity\":{\"docker-reference\":\"127.0.0.1:5000/chaos/p\"},\"image\":{\"docker-manifest-digest\":\"sha256:aaaa"), "{text}");
        assert!(
            text.ends_with("\"type\":\"cosign container image signature\"},\"optional\":null}"),
            "{text}"
        );
        assert_eq!(
            verify(&payload, &signature, &digest, &keys).unwrap().id,
            ours.id().unwrap()
        );
        // Another digest, another key, a changed payload: refused.
        let other = format!("sha256:{}", "b".repeat(64));
        assert!(matches!(
            verify(&payload, &signature, &other, &keys),
            Err(Rejected::OtherDigest(_))
        ));
        let (payload2, signature2) = theirs.sign("r", &digest).unwrap();
        assert_eq!(
            verify(&payload2, &signature2, &digest, &keys).err(),
            Some(Rejected::NoTrustedKey)
        );
        let mut changed = payload.clone();
        changed[5] ^= 1;
        assert_eq!(
            verify(&changed, &signature, &digest, &keys).err(),
            Some(Rejected::NoTrustedKey)
        );
        assert!(matches!(
            verify(&payload, "%%", &digest, &keys),
            Err(Rejected::Malformed(_))
        ));
    }

    #[test]
    fn a_cosign_key_opens_with_its_password_only() {
        let dir = tempfile::tempdir().unwrap();
        let pair = SigningPair::generate().unwrap();
        let path = dir.path().join("cosign.key");
        let pem = pair.to_cosign_pem(b"pw").unwrap();
        assert!(
            pem.starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n"),
            "{pem}"
        );
        std::fs::write(&path, pem).unwrap();
        let opened = SigningPair::load(&path, b"pw").unwrap();
        assert_eq!(opened.id().unwrap(), pair.id().unwrap());
        let err = SigningPair::load(&path, b"wrong").err().unwrap();
        assert!(format!("{err:#}").contains("COSIGN_PASSWORD"), "{err:#}");
    }
}
