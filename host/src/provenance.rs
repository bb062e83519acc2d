//! Where a plugin came from, checked before any of its code runs: the
//! operator's `[plugins.sources]` names each pulled plugin's OCI manifest
//! by digest, and `require_signatures` asks for a signature by a trusted
//! key over that digest.
//!
//! `plugins pull` keeps, beside `NAME.wasm`, the manifest it pulled
//! (`NAME.oci.json`) and the signatures it found (`NAME.sig.json`). Those
//! files are read back as untrusted input: the manifest counts only if its
//! digest is the operator's, and then binds the component (its one layer's
//! digest) and `NAME.toml` (its annotation); a signature counts only if a
//! trusted key verifies it for that digest.

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine as _;
use oci_client::manifest::OciImageManifest;

use crate::config::Config;
pub use crate::registry::Source;
use crate::registry::{self, PulledSignature};
use crate::signing::{self, TrustedKey};

/// The most bytes of a kept manifest or signature list read.
const MAX_KEPT_BYTES: u64 = 4 * 1024 * 1024;

/// What the operator asks of plugins' origins.
#[derive(Debug, Clone, Default)]
pub struct Provenance {
    /// Each pulled plugin's source, by name.
    pub sources: BTreeMap<String, Source>,
    /// The keys whose signatures count.
    pub keys: Vec<TrustedKey>,
    /// Refuse a plugin without a source and a signature by a trusted key.
    pub require_signatures: bool,
}

/// A plugin's signature state, as `plugins list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signed {
    /// Verified by a trusted key (its id and file).
    By(String),
    /// No signature was pulled with it.
    Unsigned,
    /// Signatures were pulled, and none verifies (why).
    NotVerified(String),
}

impl std::fmt::Display for Signed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Signed::By(key) => write!(f, "signed by {key}"),
            Signed::Unsigned => write!(f, "unsigned"),
            Signed::NotVerified(why) => write!(f, "not verified: {why}"),
        }
    }
}

/// What was checked of a plugin with a source.
#[derive(Debug, Clone)]
pub struct Checked {
    /// Its source.
    pub source: Source,
    /// Its signature state.
    pub signed: Signed,
}

impl Provenance {
    /// What `config` asks: its sources and its trusted keys, loaded.
    pub fn of(config: &Config) -> anyhow::Result<Provenance> {
        let mut sources = BTreeMap::new();
        for (name, text) in &config.plugins.sources {
            let source = Source::parse(text).map_err(|err| {
                anyhow::anyhow!("{}: plugins.sources.{name}: {err}", config.path.display())
            })?;
            sources.insert(name.clone(), source);
        }
        let keys = config
            .plugins
            .trusted_keys
            .iter()
            .map(|key| TrustedKey::load(&config.resolve(key)))
            .collect::<anyhow::Result<Vec<_>>>()
            .map_err(|err| {
                anyhow::anyhow!("{}: plugins.trusted_keys: {err:#}", config.path.display())
            })?;
        Ok(Provenance {
            sources,
            keys,
            require_signatures: config.plugins.require_signatures,
        })
    }

    /// Check plugin `name` in `dir`, whose component's sha256 (hex) is
    /// `component`: `None` when it has no source and none is required.
    pub fn check(
        &self,
        dir: &Path,
        name: &str,
        component: &str,
    ) -> Result<Option<Checked>, String> {
        let Some(source) = self.sources.get(name) else {
            if self.require_signatures {
                return Err(format!(
                    "plugins.require_signatures: {name} has no source in [plugins.sources] (pull it with `wasmonkey plugins pull REF@sha256:…` and name it there), so no signature can be checked"
                ));
            }
            return Ok(None);
        };
        let kept = dir.join(format!("{name}.oci.json"));
        let manifest = crate::files::read_bounded(&kept, MAX_KEPT_BYTES).map_err(|err| {
            format!(
                "{}: cannot read the pulled manifest: {err} (pull {} again)",
                kept.display(),
                source.reference
            )
        })?;
        let digest = registry::digest_of(&manifest);
        if digest != source.digest {
            return Err(format!(
                "{} is {digest}, not {} that [plugins.sources] names: refused",
                kept.display(),
                source.digest
            ));
        }
        let parsed: OciImageManifest = serde_json::from_slice(&manifest)
            .map_err(|err| format!("{}: not an OCI manifest: {err}", kept.display()))?;
        let layer = match parsed.layers.as_slice() {
            [layer] if layer.media_type == registry::LAYER_TYPE => layer,
            _ => {
                return Err(format!(
                    "{}: not one {} layer",
                    kept.display(),
                    registry::LAYER_TYPE
                ))
            }
        };
        if layer.digest != format!("sha256:{component}") {
            return Err(format!(
                "{name}.wasm is sha256:{component}, not the component {} names ({}): refused",
                source.reference,
                crate::text::one_line(&layer.digest)
            ));
        }
        let toml_path = dir.join(format!("{name}.toml"));
        let carried = parsed
            .annotations
            .as_ref()
            .and_then(|a| a.get(registry::TOML_ANNOTATION));
        let present =
            crate::files::read_bounded(&toml_path, crate::manifest::MAX_MANIFEST_BYTES).ok();
        if carried.map(|t| t.as_bytes()) != present.as_deref() {
            return Err(format!(
                "{} is not the manifest {} carries: refused (its grants and limits are part of what was pulled and signed)",
                toml_path.display(),
                source.reference
            ));
        }
        let signed = self.signature(dir, name, source);
        if self.require_signatures {
            if let Signed::By(_) = signed {
            } else {
                let keys: Vec<String> = self
                    .keys
                    .iter()
                    .map(|k| format!("{} ({})", k.id, k.path))
                    .collect();
                return Err(format!(
                    "plugins.require_signatures: {} is {signed}; trusted keys: {}",
                    source.digest,
                    if keys.is_empty() {
                        "none".to_owned()
                    } else {
                        keys.join(", ")
                    }
                ));
            }
        }
        Ok(Some(Checked {
            source: source.clone(),
            signed,
        }))
    }

    fn signature(&self, dir: &Path, name: &str, source: &Source) -> Signed {
        let path = dir.join(format!("{name}.sig.json"));
        let bytes = match crate::files::read_bounded(&path, MAX_KEPT_BYTES) {
            Ok(bytes) => bytes,
            Err(crate::files::FileProblem::Io(err))
                if err.kind() == std::io::ErrorKind::NotFound =>
            {
                return Signed::Unsigned
            }
            Err(err) => return Signed::NotVerified(format!("{}: {err}", path.display())),
        };
        let Ok(signatures) = serde_json::from_slice::<Vec<PulledSignature>>(&bytes) else {
            return Signed::NotVerified(format!("{} is not a list of signatures", path.display()));
        };
        if signatures.is_empty() {
            return Signed::Unsigned;
        }
        let mut why = Vec::new();
        for signature in &signatures {
            let Ok(payload) = base64::engine::general_purpose::STANDARD.decode(&signature.payload)
            else {
                why.push("a payload that is not base64".to_owned());
                continue;
            };
            match signing::verify(&payload, &signature.signature, &source.digest, &self.keys) {
                Ok(key) => return Signed::By(format!("{} ({})", key.id, key.path)),
                Err(rejected) => why.push(rejected.to_string()),
            }
        }
        why.dedup();
        Signed::NotVerified(format!(
            "{} signature(s): {}",
            signatures.len(),
            why.join("; ")
        ))
    }
}
