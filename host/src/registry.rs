//! Plugins through an OCI registry, in the layout wkg (wasm-pkg-tools)
//! reads and writes: one `application/wasm` layer (the component) and a
//! `application/vnd.wasm.config.v0+json` config naming its imports and
//! exports. The plugin's manifest (`NAME.toml`) travels as an annotation of
//! the OCI manifest, so the manifest's digest, which is what is pinned and
//! signed, covers the component and its grants alike. cosign's signatures
//! live beside it, under the tag `sha256-HEX.sig`.
//!
//! Every byte pulled is checked against its digest here, whatever the
//! client library checks; sizes are bounded before and while reading.
//! Plain HTTP is used for a registry on the loopback only.

use std::collections::BTreeMap;

use anyhow::{bail, Context as _};
use base64::Engine as _;
use futures::TryStreamExt as _;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::manifest::{OciDescriptor, OciImageManifest};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::signing::hex;

/// The OCI image manifest's media type.
pub(crate) const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// wkg's config media type for a WebAssembly component.
pub(crate) const CONFIG_TYPE: &str = "application/vnd.wasm.config.v0+json";
/// The component's layer.
pub(crate) const LAYER_TYPE: &str = "application/wasm";
/// The annotation holding the plugin's `NAME.toml`.
pub(crate) const TOML_ANNOTATION: &str = "dev.wasmonkey.manifest";
/// The annotation naming the layer's file.
const TITLE_ANNOTATION: &str = "org.opencontainers.image.title";
/// cosign's signature layer, and the annotation holding the signature.
const SIGNATURE_LAYER_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// An (empty) OCI image config, as cosign's signature manifests carry.
const IMAGE_CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";

/// The most bytes of a manifest (distribution's own limit is 4 MiB).
const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;
/// The most bytes of a config blob.
const MAX_CONFIG_BYTES: usize = 1024 * 1024;
/// The most signatures read for one manifest.
const MAX_SIGNATURES: usize = 16;

/// A signature as pulled: the payload and its base64 signature.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PulledSignature {
    /// The signed payload, base64.
    pub payload: String,
    /// The signature, base64 DER.
    pub signature: String,
}

/// A plugin as pulled, every blob checked against its digest.
pub(crate) struct Pulled {
    /// The OCI manifest's bytes, as the registry served them.
    pub manifest: Vec<u8>,
    /// `sha256:…` of those bytes.
    pub digest: String,
    /// The component.
    pub wasm: Vec<u8>,
    /// The plugin's `NAME.toml`, if it carries one.
    pub toml: Option<String>,
    /// The layer's file name, if it says one.
    pub title: Option<String>,
    /// cosign signatures found under the manifest's `.sig` tag.
    pub signatures: Vec<PulledSignature>,
}

/// A source as `[plugins.sources]` names it: `REGISTRY/REPOSITORY@sha256:…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// As written.
    pub reference: String,
    /// The manifest's digest.
    pub digest: String,
}

impl Source {
    /// Parse a source; the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<Source, String> {
        let Some((_, digest)) = text.rsplit_once('@') else {
            return Err(format!(
                "{text:?} names no digest (REGISTRY/REPOSITORY@sha256:…)"
            ));
        };
        if !valid_digest(digest) {
            return Err(format!(
                "{text:?}: the digest must be sha256: and 64 lowercase hex digits"
            ));
        }
        reference(text).map_err(|err| format!("{err:#}"))?;
        Ok(Source {
            reference: text.to_owned(),
            digest: digest.to_owned(),
        })
    }
}

/// A reference as given, parsed.
pub(crate) fn reference(text: &str) -> anyhow::Result<Reference> {
    text.parse::<Reference>().map_err(|err| {
        anyhow::anyhow!(
            "{text:?} is not an OCI reference (REGISTRY/REPOSITORY[:TAG][@sha256:…]): {err}"
        )
    })
}

/// Whether a registry is on this machine's loopback.
fn loopback(registry: &str) -> bool {
    let host = registry
        .rsplit_once(':')
        .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
        .map_or(registry, |(host, _)| host);
    matches!(host, "localhost" | "127.0.0.1" | "[::1]")
}

fn client(reference: &Reference) -> Client {
    let registry = reference.resolve_registry().to_owned();
    let protocol = if loopback(&registry) {
        ClientProtocol::Http
    } else {
        ClientProtocol::Https
    };
    Client::new(ClientConfig {
        protocol,
        read_timeout: Some(std::time::Duration::from_secs(60)),
        connect_timeout: Some(std::time::Duration::from_secs(10)),
        ..ClientConfig::default()
    })
}

/// Basic credentials from `WASMONKEY_REGISTRY_USERNAME` and
/// `WASMONKEY_REGISTRY_PASSWORD`, else anonymous.
fn auth() -> RegistryAuth {
    match (
        std::env::var("WASMONKEY_REGISTRY_USERNAME"),
        std::env::var("WASMONKEY_REGISTRY_PASSWORD"),
    ) {
        (Ok(user), Ok(password)) if !user.is_empty() => RegistryAuth::Basic(user, password),
        _ => RegistryAuth::Anonymous,
    }
}

/// A client for `reference`'s registry, signed in for `operation`.
async fn connect(
    reference: &Reference,
    operation: oci_client::RegistryOperation,
    shown: &str,
) -> anyhow::Result<(Client, RegistryAuth)> {
    let client = client(reference);
    let auth = auth();
    client
        .auth(reference, &auth, operation)
        .await
        .with_context(|| format!("{shown}: signing in to the registry"))?;
    Ok((client, auth))
}

/// `sha256:` and the hex of `bytes`' SHA-256.
pub(crate) fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&sha2::Sha256::digest(bytes)))
}

/// Whether `digest` is `sha256:` and 64 lowercase hex digits.
pub(crate) fn valid_digest(digest: &str) -> bool {
    digest.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// wkg's config of a component.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WasmConfig {
    created: String,
    author: Option<String>,
    architecture: &'static str,
    os: &'static str,
    layer_digests: Vec<String>,
    component: ComponentConfig,
}

#[derive(Serialize)]
struct ComponentConfig {
    exports: Vec<String>,
    imports: Vec<String>,
    target: Option<String>,
}

fn descriptor(media_type: &str, bytes: &[u8]) -> OciDescriptor {
    OciDescriptor {
        media_type: media_type.to_owned(),
        digest: digest_of(bytes),
        size: i64::try_from(bytes.len()).unwrap_or(i64::MAX),
        urls: None,
        annotations: None,
    }
}

/// Push a plugin's component and manifest text to `target` (a tag or a
/// bare repository): the manifest's digest.
pub(crate) async fn push(
    target: &str,
    name: &str,
    wasm: &[u8],
    toml: &str,
) -> anyhow::Result<String> {
    let reference = reference(target)?;
    let shape = wasmonkey_plugin_build::component::shape(wasm)
        .with_context(|| format!("{name}.wasm is not a component"))?;
    let created = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .context("formatting the time")?;
    let config = serde_json::to_vec(&WasmConfig {
        created,
        author: None,
        architecture: "wasm",
        os: "wasip2",
        layer_digests: vec![digest_of(wasm)],
        component: ComponentConfig {
            exports: shape.exports,
            imports: shape.imports,
            target: None,
        },
    })?;
    let mut layer = descriptor(LAYER_TYPE, wasm);
    layer.annotations = Some(BTreeMap::from([(
        TITLE_ANNOTATION.to_owned(),
        format!("{name}.wasm"),
    )]));
    let manifest = OciImageManifest {
        schema_version: 2,
        media_type: Some(MANIFEST_TYPE.to_owned()),
        config: descriptor(CONFIG_TYPE, &config),
        layers: vec![layer],
        subject: None,
        artifact_type: None,
        annotations: Some(BTreeMap::from([(
            TOML_ANNOTATION.to_owned(),
            toml.to_owned(),
        )])),
    };
    let body = serde_json::to_vec(&manifest)?;
    let (client, _) = connect(&reference, oci_client::RegistryOperation::Push, target).await?;
    for (bytes, what) in [(wasm, "the component"), (config.as_slice(), "the config")] {
        client
            .push_blob(&reference, bytes, &digest_of(bytes))
            .await
            .with_context(|| format!("{target}: pushing {what}"))?;
    }
    client
        .push_manifest_raw(&reference, body.clone(), MANIFEST_TYPE.parse()?)
        .await
        .with_context(|| format!("{target}: pushing the manifest"))?;
    Ok(digest_of(&body))
}

/// Pull `source` (`REGISTRY/REPOSITORY@sha256:…`), checking every blob
/// against its digest, with the signatures stored beside it.
pub(crate) async fn pull(source: &str, max_component: usize) -> anyhow::Result<Pulled> {
    let reference = reference(source)?;
    let Some(digest) = reference.digest().map(str::to_owned) else {
        bail!("{source}: name the manifest by its digest (REF@sha256:…): a tag can be moved to other bytes");
    };
    if !valid_digest(&digest) {
        bail!("{source}: the digest must be sha256: and 64 lowercase hex digits");
    }
    let (client, auth) = connect(&reference, oci_client::RegistryOperation::Pull, source).await?;
    let (manifest, _) = client
        .pull_manifest_raw(&reference, &auth, &[MANIFEST_TYPE])
        .await
        .with_context(|| format!("{source}: fetching the manifest"))?;
    if manifest.len() > MAX_MANIFEST_BYTES {
        bail!(
            "{source}: a manifest of {} bytes (at most {MAX_MANIFEST_BYTES})",
            manifest.len()
        );
    }
    let served = digest_of(&manifest);
    if served != digest {
        bail!("{source}: the registry served a manifest whose digest is {served}: refused");
    }
    let parsed: OciImageManifest = serde_json::from_slice(&manifest)
        .with_context(|| format!("{source}: not an OCI image manifest"))?;
    if parsed.config.media_type != CONFIG_TYPE {
        bail!(
            "{source}: the config is {:?}, not a WebAssembly component's ({CONFIG_TYPE})",
            crate::text::one_line(&parsed.config.media_type)
        );
    }
    let [layer] = parsed.layers.as_slice() else {
        bail!(
            "{source}: {} layers: a plugin is one {LAYER_TYPE} layer",
            parsed.layers.len()
        );
    };
    if layer.media_type != LAYER_TYPE {
        bail!(
            "{source}: the layer is {:?}, not {LAYER_TYPE}",
            crate::text::one_line(&layer.media_type)
        );
    }
    let wasm = blob(&client, &reference, layer, max_component)
        .await
        .with_context(|| format!("{source}: the component"))?;
    blob(&client, &reference, &parsed.config, MAX_CONFIG_BYTES)
        .await
        .with_context(|| format!("{source}: the config"))?;
    let annotations = parsed.annotations.unwrap_or_default();
    let toml = annotations.get(TOML_ANNOTATION).cloned();
    let title = layer
        .annotations
        .as_ref()
        .and_then(|a| a.get(TITLE_ANNOTATION))
        .cloned();
    let signatures = signatures(&client, &reference, &digest)
        .await
        .with_context(|| format!("{source}: its signatures"))?;
    Ok(Pulled {
        manifest,
        digest,
        wasm,
        toml,
        title,
        signatures,
    })
}

/// A blob, at most `max` bytes, checked against its descriptor's digest
/// and size.
async fn blob(
    client: &Client,
    reference: &Reference,
    descriptor: &OciDescriptor,
    max: usize,
) -> anyhow::Result<Vec<u8>> {
    if !valid_digest(&descriptor.digest) {
        bail!(
            "the digest {:?} is not sha256",
            crate::text::one_line(&descriptor.digest)
        );
    }
    let size = usize::try_from(descriptor.size).unwrap_or(usize::MAX);
    if size > max {
        bail!("{} bytes (at most {max})", descriptor.size);
    }
    let mut stream = client
        .pull_blob_stream(reference, descriptor)
        .await
        .context("fetching")?;
    let mut bytes = Vec::with_capacity(size);
    while let Some(chunk) = stream.try_next().await.context("reading")? {
        if bytes.len() + chunk.len() > size {
            bail!("the registry sent more than the {size} bytes its manifest says");
        }
        bytes.extend_from_slice(&chunk);
    }
    let received = digest_of(&bytes);
    if received != descriptor.digest || bytes.len() != size {
        bail!(
            "the bytes received ({received}, {} bytes) are not {} ({size} bytes): refused",
            bytes.len(),
            descriptor.digest
        );
    }
    Ok(bytes)
}

/// The tag cosign keeps `digest`'s signatures under.
fn signature_tag(reference: &Reference, digest: &str) -> Reference {
    Reference::with_tag(
        reference.registry().to_owned(),
        reference.repository().to_owned(),
        format!("{}.sig", digest.replace(':', "-")),
    )
}

/// The signature manifest of `digest`, if there is one.
async fn signature_manifest(
    client: &Client,
    reference: &Reference,
    digest: &str,
) -> anyhow::Result<Option<OciImageManifest>> {
    let tag = signature_tag(reference, digest);
    match client
        .pull_manifest_raw(&tag, &auth(), &[MANIFEST_TYPE])
        .await
    {
        Ok((bytes, _)) if bytes.len() <= MAX_MANIFEST_BYTES => Ok(Some(
            serde_json::from_slice(&bytes).context("the signature manifest")?,
        )),
        Ok((bytes, _)) => bail!("a signature manifest of {} bytes", bytes.len()),
        Err(oci_client::errors::OciDistributionError::ImageManifestNotFoundError(_)) => Ok(None),
        Err(oci_client::errors::OciDistributionError::RegistryError { envelope, .. })
            if envelope.errors.iter().any(|e| {
                matches!(
                    e.code,
                    oci_client::errors::OciErrorCode::ManifestUnknown
                        | oci_client::errors::OciErrorCode::NotFound
                )
            }) =>
        {
            Ok(None)
        }
        Err(err) => Err(err).context("fetching the signature manifest"),
    }
}

async fn signatures(
    client: &Client,
    reference: &Reference,
    digest: &str,
) -> anyhow::Result<Vec<PulledSignature>> {
    let Some(manifest) = signature_manifest(client, reference, digest).await? else {
        return Ok(Vec::new());
    };
    let mut found = Vec::new();
    for layer in manifest
        .layers
        .iter()
        .filter(|l| l.media_type == SIGNATURE_LAYER_TYPE)
        .take(MAX_SIGNATURES)
    {
        let Some(signature) = layer
            .annotations
            .as_ref()
            .and_then(|a| a.get(SIGNATURE_ANNOTATION))
        else {
            continue;
        };
        let payload = blob(client, reference, layer, crate::signing::MAX_PAYLOAD_BYTES).await?;
        found.push(PulledSignature {
            payload: base64::engine::general_purpose::STANDARD.encode(payload),
            signature: signature.clone(),
        });
    }
    Ok(found)
}

/// Push a cosign signature (`payload`, base64 `signature`) of `digest` in
/// `target`'s repository, beside those already there.
pub(crate) async fn push_signature(
    target: &str,
    digest: &str,
    payload: &[u8],
    signature: &str,
) -> anyhow::Result<()> {
    let reference = reference(target)?;
    let (client, _) = connect(&reference, oci_client::RegistryOperation::Push, target).await?;
    let mut layers = match signature_manifest(&client, &reference, digest).await? {
        Some(existing) => existing
            .layers
            .into_iter()
            .filter(|l| l.media_type == SIGNATURE_LAYER_TYPE)
            .collect(),
        None => Vec::new(),
    };
    let mut layer = descriptor(SIGNATURE_LAYER_TYPE, payload);
    layer.annotations = Some(BTreeMap::from([(
        SIGNATURE_ANNOTATION.to_owned(),
        signature.to_owned(),
    )]));
    if !layers
        .iter()
        .any(|l: &OciDescriptor| l.digest == layer.digest && l.annotations == layer.annotations)
    {
        layers.push(layer);
    }
    let diff_ids: Vec<&str> = layers.iter().map(|l| l.digest.as_str()).collect();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "",
        "created": "0001-01-01T00:00:00Z",
        "os": "",
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
        "config": {}
    }))?;
    let manifest = OciImageManifest {
        schema_version: 2,
        media_type: Some(MANIFEST_TYPE.to_owned()),
        config: descriptor(IMAGE_CONFIG_TYPE, &config),
        layers,
        subject: None,
        artifact_type: None,
        annotations: None,
    };
    let tag = signature_tag(&reference, digest);
    for bytes in [payload, config.as_slice()] {
        client
            .push_blob(&tag, bytes, &digest_of(bytes))
            .await
            .with_context(|| format!("{target}: pushing the signature"))?;
    }
    client
        .push_manifest_raw(&tag, serde_json::to_vec(&manifest)?, MANIFEST_TYPE.parse()?)
        .await
        .with_context(|| format!("{target}: pushing the signature manifest"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_loopback_is_spoken_to_in_plain_http() {
        for local in [
            "127.0.0.1:5000",
            "localhost:5000",
            "[::1]:5000",
            "127.0.0.1",
        ] {
            assert!(loopback(local), "{local}");
        }
        for remote in [
            "ghcr.io",
            "127.0.0.1.example.com:5000",
            "10.0.0.1:5000",
            "localhost.evil",
        ] {
            assert!(!loopback(remote), "{remote}");
        }
    }

    #[test]
    fn digests_are_sha256_in_lowercase_hex() {
        assert!(valid_digest(&digest_of(b"x")));
        assert!(!valid_digest("sha256:ABC"));
        assert!(!valid_digest(&format!("sha512:{}", "a".repeat(64))));
    }
}
