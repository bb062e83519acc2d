//! The plugin directory: every `NAME.wasm` component, each with an optional
//! `NAME.toml` manifest beside it.
//!
//! Scanning checks every entry before anything opens it: a plugin's name is
//! `[a-z0-9-]` (no look-alike letters), it is a regular file of bounded size
//! (not a FIFO, a device, a directory or a huge sparse file), and each entry
//! that cannot be a plugin is reported with the reason. Loading checks, in
//! order: the file is still such a file when opened, it compiles (which runs
//! none of its code), its sha256 matches the operator's pin and the
//! manifest's, it fits this host's world and version, and
//! its `metadata()`, run under small limits of its own, agrees with the file
//! name and manifest (the sandbox remembers that answer, so loading a known
//! plugin again starts no instance). A plugin that fails is reported with its
//! path and reason; the others still load, side by side, so a slow one
//! delays no other.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::contract::PluginMetadata;
use crate::files;
use crate::limits::{LimitOverrides, LimitRules, Limits};
use crate::manifest::Manifest;
use crate::provenance::{Checked, Provenance};
use crate::sandbox::{Prepared, Sandbox, MAX_COMPONENT_BYTES};

/// A plugin that loaded.
#[derive(Clone)]
pub struct Plugin {
    /// Its file stem, which its metadata's name must equal.
    pub name: String,
    /// Its `.wasm` file.
    pub path: PathBuf,
    /// Its manifest, if it has one beside it.
    pub manifest: Option<Manifest>,
    /// What its `metadata()` export answered.
    pub metadata: PluginMetadata,
    /// Compiled and linked, ready to instantiate.
    pub prepared: Prepared,
    /// What it runs under: the operator's defaults, the manifest's requests
    /// and the experiment's overrides, within the ceiling.
    pub limits: Limits,
    /// Its source and signature, when the operator names its source.
    pub provenance: Option<Checked>,
}

impl Plugin {
    /// `name@version`, as errors and logs show it.
    pub fn label(&self) -> String {
        // The plugin's own text: escaped and bounded wherever it is shown.
        crate::session::PluginLabel {
            name: self.metadata.name.clone(),
            version: self.metadata.version.clone(),
        }
        .to_string()
    }
}

/// A plugin that did not load (or a directory entry that cannot be one), and
/// why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadFailure {
    /// The directory entry.
    pub path: PathBuf,
    /// Why it did not load, for the operator.
    pub reason: String,
}

impl std::fmt::Display for LoadFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", shown(self.path.as_os_str()), self.reason)
    }
}

/// A path as the operator's terminal may show it: printable UTF-8 as it is,
/// anything else (control characters, bidi overrides, invalid bytes) escaped.
fn shown(path: &OsStr) -> String {
    let unsafe_char = |c: char| {
        c.is_control()
            || matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    match path.to_str() {
        Some(text) if !text.chars().any(unsafe_char) => text.to_owned(),
        // Debug escapes control and format characters, and invalid bytes.
        _ => format!("{path:?}"),
    }
}

/// Whether `name` may name a plugin: `[a-z0-9-]`, starting with a letter or
/// a digit. Anything wider would let a look-alike (a Cyrillic `о` in
/// `classic-mоnkey`) sit beside the real plugin.
pub(crate) fn valid_name(name: &str) -> bool {
    name.bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
}

/// The `.wasm` files of a plugin directory, by name, and every entry that
/// cannot be a plugin.
pub struct Catalog {
    dir: PathBuf,
    names: Vec<String>,
    rejected: Vec<LoadFailure>,
    /// The operator's sha256 pins, by plugin name.
    pins: BTreeMap<String, String>,
    /// The operator's sources and trusted keys.
    provenance: Provenance,
}

impl Catalog {
    /// List the components in `dir` (no loading yet), checking each entry's
    /// name, kind and size without opening it.
    pub fn scan(dir: &Path) -> anyhow::Result<Catalog> {
        let entries = std::fs::read_dir(dir)
            .with_context(|| format!("reading plugin directory {}", dir.display()))?;
        let mut names = Vec::new();
        let mut rejected = Vec::new();
        let mut manifests = Vec::new();
        for entry in entries {
            let path = entry
                .with_context(|| format!("reading plugin directory {}", dir.display()))?
                .path();
            let Some(file_name) = path.file_name() else {
                continue;
            };
            let reject = |reason: String| LoadFailure {
                path: path.clone(),
                reason,
            };
            let Some(file_name) = file_name.to_str() else {
                rejected.push(reject("the file name is not valid UTF-8".into()));
                continue;
            };
            if let Some(stem) = file_name.strip_suffix(".toml") {
                manifests.push((stem.to_owned(), path.clone()));
                continue;
            }
            let Some(stem) = file_name.strip_suffix(".wasm") else {
                continue;
            };
            if !valid_name(stem) {
                rejected.push(reject(
                    "a plugin's name may only hold a-z, 0-9 and -, starting with a letter or digit"
                        .into(),
                ));
                continue;
            }
            match std::fs::metadata(&path) {
                Err(err) => rejected.push(reject(format!("cannot read: {err}"))),
                Ok(metadata) => match files::check(&metadata, MAX_COMPONENT_BYTES) {
                    Err(problem) => rejected.push(reject(problem.to_string())),
                    Ok(()) => names.push(stem.to_owned()),
                },
            }
        }
        for (stem, path) in manifests {
            let component = format!("{stem}.wasm");
            if !names.contains(&stem) && !rejected.iter().any(|r| r.path.ends_with(&component)) {
                rejected.push(LoadFailure {
                    path,
                    reason: format!("a manifest without a component ({component})"),
                });
            }
        }
        names.sort();
        rejected.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(Catalog {
            dir: dir.to_owned(),
            names,
            rejected,
            pins: BTreeMap::new(),
            provenance: Provenance::default(),
        })
    }

    /// The operator's pins (plugin name → sha256 of its component), checked
    /// at every load before any of the plugin's code runs. Held by the host,
    /// not beside the plugin, so whoever can replace a component cannot
    /// rewrite its pin.
    pub fn with_pins(mut self, pins: BTreeMap<String, String>) -> Catalog {
        self.pins = pins;
        self
    }

    /// The operator's sources and trusted keys, checked at every load after
    /// the component compiles (which runs none of its code) and before any
    /// of its code runs.
    pub fn with_provenance(mut self, provenance: Provenance) -> Catalog {
        self.provenance = provenance;
        self
    }

    /// The operator's pin of a plugin, if any.
    pub fn pin(&self, name: &str) -> Option<&str> {
        self.pins.get(name).map(String::as_str)
    }

    /// Plugin names, sorted.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The plugin directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Load one plugin by name, held to `rules`, to run with the
    /// `experiment`'s overrides: what its manifest asks for, and what the
    /// experiment sets, must be within the ceiling before any of its code
    /// runs.
    pub async fn load(
        &self,
        sandbox: &Sandbox,
        name: &str,
        rules: &LimitRules,
        experiment: &LimitOverrides,
    ) -> Result<Plugin, LoadFailure> {
        let path = self.dir.join(format!("{name}.wasm"));
        if let Some(rejected) = self.rejected.iter().find(|r| r.path == path) {
            return Err(rejected.clone());
        }
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
        let manifest = match std::fs::metadata(&manifest_path) {
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
            Err(err) => {
                return Err(fail(format!(
                    "{}: cannot read manifest: {err}",
                    manifest_path.display()
                )))
            }
            // A manifest that is there but is not a file is an error, never
            // ignored: its pin and grants would silently vanish.
            Ok(_) => Some(Manifest::load(&manifest_path).map_err(|err| fail(format!("{err:#}")))?),
        };
        let asked = manifest.as_ref().map(|m| m.limits).unwrap_or_default();
        let granted = rules
            .grant(&asked)
            .map_err(|err| fail(format!("{} asks for {err}", manifest_path.display())))?;
        let limits = granted.with(experiment);
        if let Some(&(key, value, max)) = limits.exceeding(&rules.ceiling).first() {
            return Err(fail(format!(
                "the experiment would run it with {key} = {value}, above the operator's ceiling {max}"
            )));
        }
        // Compiling runs no plugin code; the pins are checked before anything runs.
        let compiled = sandbox
            .compile_file(&path, limits.stack_bytes())
            .map_err(|err| fail(err.to_string()))?;
        if let Some(pin) = self.pin(name) {
            if !pin.eq_ignore_ascii_case(&compiled.sha256) {
                return Err(fail(format!(
                    "sha256 {} does not match the operator's pin {pin} (plugins.pins or the experiment's sha256)",
                    compiled.sha256
                )));
            }
        }
        if let Some(pin) = manifest.as_ref().and_then(|m| m.sha256.as_deref()) {
            if !pin.eq_ignore_ascii_case(&compiled.sha256) {
                return Err(fail(format!(
                    "sha256 {} does not match the pin {pin} in {}",
                    compiled.sha256,
                    manifest_path.display()
                )));
            }
        }
        let provenance = self
            .provenance
            .check(&self.dir, name, &compiled.sha256)
            .map_err(fail)?;
        let prepared = sandbox
            .prepare(compiled)
            .map_err(|err| fail(format!("{err:#}")))?;
        let metadata = sandbox
            .metadata_remembered(&prepared, &limits.for_metadata())
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
                    "{} says {}@{}, but the component says {:?}@{:?}",
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
            limits,
            provenance,
        })
    }

    /// Load every plugin side by side, so that a slow one delays no other;
    /// the failures, and every entry that cannot be a plugin, are returned
    /// beside the successes, both in name order.
    pub async fn load_all(
        &self,
        sandbox: &Sandbox,
        rules: &LimitRules,
    ) -> (Vec<Plugin>, Vec<LoadFailure>) {
        let none = LimitOverrides::default();
        let results = futures::future::join_all(
            self.names
                .iter()
                .map(|name| self.load(sandbox, name, rules, &none)),
        )
        .await;
        let mut loaded = Vec::new();
        let mut failed = self.rejected.clone();
        for result in results {
            match result {
                Ok(plugin) => loaded.push(plugin),
                Err(failure) => failed.push(failure),
            }
        }
        failed.sort_by(|a, b| a.path.cmp(&b.path));
        (loaded, failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_names_are_lowercase_ascii_digits_and_dashes() {
        for good in ["classic-monkey", "az-outage", "p2", "9lives"] {
            assert!(valid_name(good), "{good}");
        }
        // A Cyrillic о, an uppercase letter, a dot, a space, an escape,
        // a leading dash, nothing.
        for bad in [
            "classic-m\u{43e}nkey",
            "Classic",
            "a.b",
            "a b",
            "a\u{1b}[2J",
            "-x",
            "",
        ] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn a_failure_shows_a_hostile_file_name_escaped() {
        let failure = LoadFailure {
            path: PathBuf::from("/p/\u{1b}]0;owned\u{7}.wasm"),
            reason: "r".into(),
        };
        let text = failure.to_string();
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{7}'),
            "{text}"
        );
        assert!(text.contains("\\u{1b}"), "{text}");
        let bidi = LoadFailure {
            path: PathBuf::from("/p/evil\u{202e}mvs.wasm"),
            reason: "r".into(),
        };
        let text = bidi.to_string();
        assert!(
            !text.contains('\u{202e}') && text.contains("\\u{202e}"),
            "{text}"
        );
    }
}
