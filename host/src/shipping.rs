//! Plugins shipped through an OCI registry: an author pushes and signs
//! what `plugin build` made, an operator pulls it by digest into a plugin
//! directory with what proves its origin (see `provenance`).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};

use crate::config::Config;
use crate::manifest::Manifest;
use crate::provenance::Source;
use crate::registry::{self, PulledSignature};
use crate::signing::SigningPair;

/// `COSIGN_PASSWORD`, as cosign reads it (empty when unset).
fn password() -> Vec<u8> {
    std::env::var_os("COSIGN_PASSWORD")
        .map(|p| p.into_encoded_bytes())
        .unwrap_or_default()
}

/// `plugin push`: the project's `dist/NAME.wasm` and `NAME.toml` to
/// `target`; the source to name it by (`REGISTRY/REPOSITORY@sha256:…`).
pub(crate) async fn push(target: &str, dir: &Path) -> anyhow::Result<String> {
    let name = Manifest::load(&dir.join("wasmonkey.toml"))?.name;
    let dist = dir.join("dist");
    let wasm_path = dist.join(format!("{name}.wasm"));
    let toml_path = dist.join(format!("{name}.toml"));
    let wasm = crate::files::read_bounded(&wasm_path, crate::sandbox::MAX_COMPONENT_BYTES)
        .map_err(|err| {
            anyhow::anyhow!(
                "{}: {err} (build it first: wasmonkey plugin build)",
                wasm_path.display()
            )
        })?;
    // Checked as an operator's host will read it.
    Manifest::load(&toml_path)?;
    let toml = std::fs::read_to_string(&toml_path)
        .with_context(|| format!("{}: cannot read", toml_path.display()))?;
    let digest = registry::push(target, &name, &wasm, &toml).await?;
    let reference = registry::reference(target)?;
    Ok(format!(
        "{}/{}@{digest}",
        reference.registry(),
        reference.repository()
    ))
}

/// `plugin sign`: a cosign signature of the digest `reference` names.
pub(crate) async fn sign(reference: &str, key: &Path) -> anyhow::Result<String> {
    let source = Source::parse(reference).map_err(|err| anyhow::anyhow!("{err}"))?;
    let pair = SigningPair::load(key, &password())?;
    let parsed = registry::reference(reference)?;
    let repository = format!("{}/{}", parsed.registry(), parsed.repository());
    let (payload, signature) = pair.sign(&repository, &source.digest)?;
    registry::push_signature(reference, &source.digest, &payload, &signature).await?;
    Ok(format!(
        "signed {} with key {} ({})",
        source.digest,
        pair.id()?,
        key.display()
    ))
}

/// `plugin keygen`: `cosign.key` (encrypted) and `cosign.pub` in `dir`,
/// never over a file already there.
pub(crate) fn keygen(dir: &Path) -> anyhow::Result<Vec<String>> {
    let private = dir.join("cosign.key");
    let public = dir.join("cosign.pub");
    for path in [&private, &public] {
        if path.exists() {
            bail!("{} already exists: nothing was written", path.display());
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    let pair = SigningPair::generate()?;
    write_new(&private, pair.to_cosign_pem(&password())?.as_bytes(), 0o600)?;
    write_new(&public, pair.public_pem()?.as_bytes(), 0o644)?;
    Ok(vec![
        format!(
            "private key: {} (keep it secret; its password is COSIGN_PASSWORD)",
            private.display()
        ),
        format!(
            "public key:  {} (operators list it in plugins.trusted_keys)",
            public.display()
        ),
        format!("key id:      {}", pair.id()?),
    ])
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("{}: cannot create", path.display()))?;
    file.write_all(bytes)
        .with_context(|| format!("{}: cannot write", path.display()))
}

/// `plugins pull`: the plugin `reference` names by digest, into `config`'s
/// plugin directory; what to tell the operator.
pub(crate) async fn pull(
    config: &Config,
    reference: &str,
    name: Option<&str>,
) -> anyhow::Result<Vec<String>> {
    let source = Source::parse(reference).map_err(|err| anyhow::anyhow!("{err}"))?;
    let max = usize::try_from(crate::sandbox::MAX_COMPONENT_BYTES).unwrap_or(usize::MAX);
    let pulled = registry::pull(reference, max).await?;
    let carried = match &pulled.toml {
        Some(text) => {
            let manifest: Manifest = toml::from_str(text).map_err(|err| {
                anyhow::anyhow!("{reference}: the manifest it carries is not valid: {err}")
            })?;
            Some(manifest)
        }
        None => None,
    };
    let title_stem = pulled
        .title
        .as_deref()
        .and_then(|t| t.strip_suffix(".wasm"))
        .map(str::to_owned);
    let name = match (name, carried.as_ref().map(|m| m.name.clone()), title_stem) {
        (Some(given), Some(said), _) if given != said => {
            bail!("{reference} carries the manifest of {said:?}, not {given:?}")
        }
        (Some(given), _, _) => given.to_owned(),
        (None, Some(said), _) => said,
        (None, None, Some(title)) => title,
        (None, None, None) => bail!("{reference} does not say its name: give it with --name"),
    };
    if !crate::plugins::valid_name(&name) {
        bail!(
            "{reference}: {:?} is not a plugin name (a-z, 0-9 and -)",
            crate::text::one_line(&name)
        );
    }
    let dir = config.plugin_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    let signatures = serde_json::to_vec_pretty::<Vec<PulledSignature>>(&pulled.signatures)?;
    let files: Vec<(PathBuf, Option<&[u8]>)> = vec![
        (dir.join(format!("{name}.oci.json")), Some(&pulled.manifest)),
        (
            dir.join(format!("{name}.sig.json")),
            (!pulled.signatures.is_empty()).then_some(signatures.as_slice()),
        ),
        (
            dir.join(format!("{name}.toml")),
            pulled.toml.as_deref().map(str::as_bytes),
        ),
        // Last: a plugin directory shows the component once all that
        // proves its origin is in place.
        (dir.join(format!("{name}.wasm")), Some(&pulled.wasm)),
    ];
    for (path, bytes) in &files {
        match bytes {
            Some(bytes) => replace(path, bytes)?,
            None => match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => bail!("{}: cannot remove the stale file: {err}", path.display()),
            },
        }
    }
    let mut said = vec![format!(
        "pulled {name} ({}, {} bytes) into {}",
        pulled.digest,
        pulled.wasm.len(),
        dir.display()
    )];
    let provenance = crate::provenance::Provenance {
        sources: [(name.clone(), source.clone())].into(),
        keys: crate::provenance::Provenance::of(config)?.keys,
        require_signatures: false,
    };
    let checked = provenance
        .check(
            &dir,
            &name,
            registry::digest_of(&pulled.wasm).trim_start_matches("sha256:"),
        )
        .map_err(|err| anyhow::anyhow!("{err}"))?;
    if let Some(checked) = checked {
        said.push(format!("signature: {}", checked.signed));
    }
    said.push(format!(
        "to run it, name its source in the run config: [plugins.sources] {name} = \"{}\"",
        source.reference
    ));
    Ok(said)
}

/// Write `bytes` to `path` through a temporary file beside it.
fn replace(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let file_name = path
        .file_name()
        .and_then(|n| n.to_str())
        .context("a file name")?;
    let partial = path.with_file_name(format!(".{file_name}.partial"));
    std::fs::write(&partial, bytes)
        .with_context(|| format!("{}: cannot write", partial.display()))?;
    std::fs::rename(&partial, path).with_context(|| format!("{}: cannot write", path.display()))
}
