//! A plugin's manifest: the optional `NAME.toml` beside `NAME.wasm`.

use std::path::Path;

use serde::Deserialize;

use crate::limits::LimitOverrides;
use crate::policy::Grant;

/// The most bytes of a manifest the host reads.
pub(crate) const MAX_MANIFEST_BYTES: u64 = 64 * 1024;

/// What a plugin declares about itself and asks of the operator.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Must equal the component's `metadata().name` and the file stem.
    pub name: String,
    /// Must equal the component's `metadata().version`.
    pub version: String,
    /// One line for `wasmonkey plugins`.
    #[serde(default)]
    pub description: Option<String>,
    /// Hex sha256 of the `.wasm` file; the plugin is refused if it differs.
    #[serde(default)]
    pub sha256: Option<String>,
    /// Capabilities the plugin asks for; the operator's allow-list narrows them.
    #[serde(default)]
    pub grants: Vec<Grant>,
    /// Limits the plugin asks for, within the operator's ceilings.
    #[serde(default)]
    pub limits: LimitOverrides,
}

impl Manifest {
    /// Read and parse a manifest file; errors name the file and the field.
    pub fn load(path: &Path) -> anyhow::Result<Manifest> {
        let bytes = crate::files::read_bounded(path, MAX_MANIFEST_BYTES)
            .map_err(|err| anyhow::anyhow!("{}: cannot read manifest: {err}", path.display()))?;
        let text = String::from_utf8(bytes)
            .map_err(|_| anyhow::anyhow!("{}: the manifest is not valid UTF-8", path.display()))?;
        let manifest: Manifest = toml::from_str(&text)
            .map_err(|err| anyhow::anyhow!("{}: invalid manifest: {err}", path.display()))?;
        if let Some(pin) = &manifest.sha256 {
            if pin.len() != 64 || !pin.bytes().all(|b| b.is_ascii_hexdigit()) {
                anyhow::bail!(
                    "{}: sha256 must be 64 hex digits, got {pin:?}",
                    path.display()
                );
            }
        }
        Ok(manifest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_and_bad_grants_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        std::fs::write(
            &path,
            "name = \"p\"\nversion = \"1.0.0\"\ngrant = [\"terminate\"]\n",
        )
        .unwrap();
        let err = Manifest::load(&path).unwrap_err().to_string();
        assert!(err.contains("p.toml") && err.contains("grant"), "{err}");

        std::fs::write(
            &path,
            "name = \"p\"\nversion = \"1.0.0\"\ngrants = [\"root\"]\n",
        )
        .unwrap();
        let err = Manifest::load(&path).unwrap_err().to_string();
        assert!(err.contains("root"), "{err}");
    }

    #[test]
    fn a_full_manifest_parses() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        let pin = "ab".repeat(32);
        std::fs::write(
            &path,
            format!(
                "name = \"p\"\nversion = \"1.0.0\"\nsha256 = \"{pin}\"\ngrants = [\"terminate\", \"notify\"]\n[limits]\nmemory_mib = 32\n"
            ),
        )
        .unwrap();
        let manifest = Manifest::load(&path).unwrap();
        assert_eq!(manifest.grants, [Grant::Terminate, Grant::Notify]);
        assert_eq!(manifest.limits.memory_mib, Some(32));
        assert_eq!(manifest.sha256.as_deref(), Some(pin.as_str()));
    }

    #[test]
    fn a_malformed_pin_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        std::fs::write(&path, "name = \"p\"\nversion = \"1\"\nsha256 = \"xyz\"\n").unwrap();
        assert!(Manifest::load(&path)
            .unwrap_err()
            .to_string()
            .contains("64 hex"));
    }
}
