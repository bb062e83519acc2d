//! Build the guest workspaces and package each plugin as a component.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::Value;
use wasmonkey_plugin_build::component::{
    check_grants, componentize, shape, write_if_changed, Shape,
};
use wasmonkey_plugin_build::toolchain::{self, TARGET};

use crate::polyglot;

/// A cargo workspace of plugins and where its components go.
pub struct Workspace {
    /// Relative to the repository root.
    pub dir: &'static str,
    /// Relative to the repository root.
    pub out: &'static str,
}

/// The guest workspaces, each built on its own.
pub const WORKSPACES: &[Workspace] = &[
    Workspace {
        dir: "plugins",
        out: "target/plugins",
    },
    Workspace {
        dir: "tests/plugins",
        out: "target/test-plugins",
    },
];

/// One target directory for both guest workspaces, so std is built once.
const TARGET_DIR: &str = "target/wasm";

/// The manifest beside each plugin's `Cargo.toml`.
pub const MANIFEST: &str = "wasmonkey.toml";

/// Build every guest workspace, then componentize each plugin.
pub fn build(root: &Path) -> Result<()> {
    let toolchain = crate::step("guest toolchain", || {
        toolchain::guest_toolchain(&polyglot::toolchains(root), root)
    })?;
    eprintln!("guest toolchain: {}", toolchain.describe());
    for workspace in WORKSPACES {
        let mut cmd = crate::cargo(root);
        cmd.args(["build", "--release", "--target", TARGET, "--manifest-path"])
            .arg(root.join(workspace.dir).join("Cargo.toml"))
            .arg("--target-dir")
            .arg(root.join(TARGET_DIR))
            .args(toolchain.cargo_args());
        toolchain.configure(&mut cmd)?;
        crate::step(&format!("cargo build ({})", workspace.dir), || {
            crate::run(&mut cmd)
        })?;
    }
    crate::step("componentize", || {
        WORKSPACES
            .iter()
            .try_for_each(|workspace| package_workspace(root, workspace))
    })
}

/// A plugin crate of a guest workspace, as `cargo metadata` describes it.
struct Plugin {
    package: String,
    version: String,
    description: String,
    /// The crate's directory.
    dir: PathBuf,
    /// The cdylib's name, as in its file name.
    lib: String,
}

fn package_workspace(root: &Path, workspace: &Workspace) -> Result<()> {
    let out_dir = root.join(workspace.out);
    fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let core_dir = root.join(TARGET_DIR).join(TARGET).join("release");
    let mut keep = BTreeSet::new();
    for plugin in plugins_of(root, workspace)? {
        let manifest_path = plugin.dir.join(MANIFEST);
        let name = check_manifest(&manifest_path, &plugin)?;
        let core_path = core_dir.join(format!("{}.wasm", plugin.lib));
        let core = fs::read(&core_path).with_context(|| {
            format!(
                "reading {} (the build should have made it)",
                core_path.display()
            )
        })?;
        let component = componentize(&core)
            .with_context(|| format!("componentizing {}", core_path.display()))?;
        let shape = inspect(&component).with_context(|| format!("checking plugin `{name}`"))?;

        let wasm_path = out_dir.join(format!("{name}.wasm"));
        let toml_path = out_dir.join(format!("{name}.toml"));
        let changed = write_if_changed(&wasm_path, &component)?;
        write_if_changed(&toml_path, &fs::read(&manifest_path)?)?;
        eprintln!(
            "  {} ({:.1} KiB{})\n    imports: {}\n    exports: {}",
            wasm_path.strip_prefix(root).unwrap_or(&wasm_path).display(),
            component.len() as f64 / 1024.0,
            if changed { "" } else { ", unchanged" },
            shape.imports.join(", "),
            shape.exports.join(", "),
        );
        keep.insert(format!("{name}.wasm"));
        keep.insert(format!("{name}.toml"));
    }
    remove_stale(&out_dir, &keep)
}

/// The workspace's members that carry a plugin manifest.
fn plugins_of(root: &Path, workspace: &Workspace) -> Result<Vec<Plugin>> {
    let manifest = root.join(workspace.dir).join("Cargo.toml");
    let mut cmd = crate::cargo(root);
    cmd.args([
        "metadata",
        "--no-deps",
        "--format-version",
        "1",
        "--manifest-path",
    ])
    .arg(&manifest);
    let out = cmd
        .output()
        .with_context(|| format!("running {}", crate::describe(&cmd)))?;
    if !out.status.success() {
        bail!(
            "{} failed: {}",
            crate::describe(&cmd),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let metadata: Value = serde_json::from_slice(&out.stdout).context("parsing cargo metadata")?;
    let text = |v: &Value, key: &str| v[key].as_str().unwrap_or_default().to_owned();
    let mut plugins = Vec::new();
    for package in metadata["packages"].as_array().into_iter().flatten() {
        let manifest_path = PathBuf::from(text(package, "manifest_path"));
        let dir = manifest_path
            .parent()
            .context("a package manifest has no directory")?
            .to_path_buf();
        if !dir.join(MANIFEST).is_file() {
            continue;
        }
        let package_name = text(package, "name");
        let lib = package["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| {
                t["crate_types"]
                    .as_array()
                    .is_some_and(|kinds| kinds.iter().any(|k| k == "cdylib"))
            })
            .map(|t| text(t, "name").replace('-', "_"))
            .with_context(|| {
                format!("plugin `{package_name}` needs `crate-type = [\"cdylib\"]` in its [lib]")
            })?;
        plugins.push(Plugin {
            package: package_name,
            version: text(package, "version"),
            description: text(package, "description"),
            dir,
            lib,
        });
    }
    plugins.sort_by(|a, b| a.package.cmp(&b.package));
    Ok(plugins)
}

/// Check a plugin's manifest against its crate; returns the plugin's name.
///
/// The strategies report `CARGO_PKG_NAME`, `CARGO_PKG_VERSION` and
/// `CARGO_PKG_DESCRIPTION` from `metadata()`, so a manifest that agrees with
/// `Cargo.toml` agrees with the component.
fn check_manifest(path: &Path, plugin: &Plugin) -> Result<String> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let table: toml::Table = text
        .parse()
        .with_context(|| format!("parsing {}", path.display()))?;
    let field = |key: &str| table.get(key).and_then(toml::Value::as_str);
    let Some(name) = field("name") else {
        bail!("{}: `name` is missing", path.display());
    };
    let mismatch = |key: &str, manifest: &str, cargo: &str| {
        anyhow::anyhow!(
            "{}: {key} = {manifest:?}, but Cargo.toml says {cargo:?}: they must agree",
            path.display()
        )
    };
    if name != plugin.package {
        return Err(mismatch("name", name, &plugin.package));
    }
    match field("version") {
        Some(version) if version == plugin.version => {}
        Some(version) => return Err(mismatch("version", version, &plugin.version)),
        None => bail!("{}: `version` is missing", path.display()),
    }
    if let Some(description) = field("description") {
        if description != plugin.description {
            return Err(mismatch("description", description, &plugin.description));
        }
    }
    check_grants(path, &table)?;
    Ok(name.to_owned())
}

/// Validate a component, read its world back, and refuse WASI imports: the
/// host links none for plugins that need none.
fn inspect(component: &[u8]) -> Result<Shape> {
    let shape = shape(component)?;
    if let Some(wasi) = shape.imports.iter().find(|name| name.starts_with("wasi:")) {
        bail!("the component imports {wasi}: guests must not need WASI");
    }
    Ok(shape)
}

/// Remove `.wasm` and `.toml` files of plugins that no longer exist.
pub fn remove_stale(dir: &Path, keep: &BTreeSet<String>) -> Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let Some(file) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let ours = file.ends_with(".wasm") || file.ends_with(".toml");
        if ours && !keep.contains(file) {
            eprintln!("  removing stale {}", path.display());
            fs::remove_file(&path)?;
        }
    }
    Ok(())
}
