//! The plugin directory: every `NAME.wasm` component, each with an optional
//! `NAME.toml` manifest beside it.
//!
//! Loading checks, in order: the file reads, its sha256 matches the
//! manifest's pin, it compiles, it fits this host's world and version, and
//! its `metadata()` agrees with the file name and manifest (the sandbox
//! remembers that answer, so loading a known plugin again starts no
//! instance). A plugin that fails is reported with its path and reason; the
//! others still load.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::contract::latest::PluginMetadata;
use crate::limits::LimitRules;
use crate::manifest::Manifest;
use crate::sandbox::{Prepared, Sandbox};

/// A plugin that loaded.
#[derive(Clone)]
pub struct Plugin {
    pub name: String,
    pub path: PathBuf,
    pub manifest: Option<Manifest>,
    pub metadata: PluginMetadata,
    pub prepared: Prepared,
}

impl Plugin {
    /// `name@version`, as errors and logs show it.
    pub fn label(&self) -> String {
        format!("{}@{}", self.metadata.name, self.metadata.version)
    }
}

/// A plugin that did not load, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadFailure {
    pub path: PathBuf,
    pub reason: String,
}

impl std::fmt::Display for LoadFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.reason)
    }
}

/// The `.wasm` files of a plugin directory, by name.
pub struct Catalog {
    dir: PathBuf,
    names: Vec<String>,
}

impl Catalog {
    /// List the components in `dir` (no loading yet).
    pub fn scan(dir: &Path) -> anyhow::Result<Catalog> {
        let entries = std::fs::read_dir(dir)
            .with_context(|| format!("reading plugin directory {}", dir.display()))?;
        let mut names = Vec::new();
        for entry in entries {
            let path = entry
                .with_context(|| format!("reading plugin directory {}", dir.display()))?
                .path();
            if path.extension().is_some_and(|ext| ext == "wasm") {
                if let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
                    names.push(stem.to_owned());
                }
            }
        }
        names.sort();
        Ok(Catalog {
            dir: dir.to_owned(),
            names,
        })
    }

    /// Plugin names, sorted.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The plugin directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Load one plugin by name, held to `rules`: what its manifest asks for
    /// must be within the ceiling before any of its code runs.
    pub async fn load(
        &self,
        sandbox: &Sandbox,
        name: &str,
        rules: &LimitRules,
    ) -> Result<Plugin, LoadFailure> {
        let path = self.dir.join(format!("{name}.wasm"));
        if !self.names.iter().any(|n| n == name) {
            return Err(LoadFailure {
                path,
                reason: format!("no plugin named {name} (found: {})", self.names.join(", ")),
            });
        }
        let fail = |reason: String| LoadFailure {
            path: path.clone(),
            reason,
        };
        let manifest_path = self.dir.join(format!("{name}.toml"));
        let manifest = if manifest_path.is_file() {
            Some(Manifest::load(&manifest_path).map_err(|err| fail(format!("{err:#}")))?)
        } else {
            None
        };
        // Even metadata() runs only within the operator's ceiling.
        let limits = match &manifest {
            Some(manifest) => rules
                .grant(&manifest.limits)
                .map_err(|err| fail(format!("{} asks for {err}", manifest_path.display())))?,
            None => rules.defaults,
        };
        // Compiling runs no plugin code; the pin is checked before anything runs.
        let compiled = sandbox
            .compile_file(&path, limits.stack_bytes())
            .map_err(|err| fail(err.to_string()))?;
        if let Some(pin) = manifest.as_ref().and_then(|m| m.sha256.as_deref()) {
            if !pin.eq_ignore_ascii_case(&compiled.sha256) {
                return Err(fail(format!(
                    "sha256 {} does not match the pin {pin} in {}",
                    compiled.sha256,
                    manifest_path.display()
                )));
            }
        }
        let prepared = sandbox
            .prepare(compiled)
            .map_err(|err| fail(format!("{err:#}")))?;
        let metadata = sandbox
            .metadata_remembered(&prepared, &limits)
            .await
            .map_err(|err| fail(format!("metadata() failed: {err}")))?;
        if metadata.name != name {
            return Err(fail(format!(
                "metadata() names the plugin {:?}, but the file is {name}.wasm",
                metadata.name
            )));
        }
        if let Some(manifest) = &manifest {
            if manifest.name != metadata.name || manifest.version != metadata.version {
                return Err(fail(format!(
                    "{} says {}@{}, but the component says {}@{}",
                    manifest_path.display(),
                    manifest.name,
                    manifest.version,
                    metadata.name,
                    metadata.version
                )));
            }
        }
        Ok(Plugin {
            name: name.to_owned(),
            path,
            manifest,
            metadata,
            prepared,
        })
    }

    /// Load every plugin; failures are returned beside the successes.
    pub async fn load_all(
        &self,
        sandbox: &Sandbox,
        rules: &LimitRules,
    ) -> (Vec<Plugin>, Vec<LoadFailure>) {
        let mut loaded = Vec::new();
        let mut failed = Vec::new();
        for name in &self.names {
            match self.load(sandbox, name, rules).await {
                Ok(plugin) => loaded.push(plugin),
                Err(failure) => failed.push(failure),
            }
        }
        (loaded, failed)
    }
}
