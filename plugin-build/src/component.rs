//! Components: made from a core module, checked, and read back.

use std::fs;
use std::path::Path;

use anyhow::{bail, Context, Result};
use wit_component::{ComponentEncoder, DecodedWasm};

/// Grants a manifest may ask for.
pub const KNOWN_GRANTS: &[&str] = &[
    "terminate",
    "notify",
    "probe-targets",
    "stop",
    "reboot",
    "suspend-processes",
    "blackhole",
];

/// Every grant a manifest (`path`, parsed as `table`) asks for must be one
/// the host knows.
pub fn check_grants(path: &Path, table: &toml::Table) -> Result<()> {
    let grants = table.get("grants").and_then(toml::Value::as_array);
    for grant in grants.into_iter().flatten() {
        match grant.as_str() {
            Some(g) if KNOWN_GRANTS.contains(&g) => {}
            _ => bail!(
                "{}: unknown grant {grant} (known: {})",
                path.display(),
                KNOWN_GRANTS.join(", ")
            ),
        }
    }
    Ok(())
}

/// Turn a core module carrying wit-bindgen's component-type section into a
/// component.
pub fn componentize(core: &[u8]) -> Result<Vec<u8>> {
    ComponentEncoder::default()
        .module(core)?
        .validate(true)
        .encode()
}

/// The import and export names of a component.
pub struct Shape {
    /// Imported interfaces, e.g. `wasmonkey:chaos/cloud@0.1.0`.
    pub imports: Vec<String>,
    /// Exported interfaces and functions.
    pub exports: Vec<String>,
}

/// Validate a component and read its imports and exports back.
pub fn shape(component: &[u8]) -> Result<Shape> {
    wasmparser::Validator::new()
        .validate_all(component)
        .context("the component does not validate")?;
    let DecodedWasm::Component(resolve, world) = wit_component::decode(component)? else {
        bail!("the encoder produced a WIT package, not a component");
    };
    let world = &resolve.worlds[world];
    let shape = Shape {
        imports: world
            .imports
            .keys()
            .map(|k| resolve.name_world_key(k))
            .collect(),
        exports: world
            .exports
            .keys()
            .map(|k| resolve.name_world_key(k))
            .collect(),
    };
    Ok(shape)
}

/// Write `bytes` unless the file already holds them; true if written.
pub fn write_if_changed(path: &Path, bytes: &[u8]) -> Result<bool> {
    if fs::read(path).is_ok_and(|old| old == bytes) {
        return Ok(false);
    }
    fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))?;
    Ok(true)
}
