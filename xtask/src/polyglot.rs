//! The repository's plugins in other languages than Rust (Python,
//! JavaScript, C and Zig), built with `wasmonkey-plugin-build` and the
//! checkout's `.toolchains/`, and the one-project build behind `cargo xtask
//! build-plugin DIR`.
//!
//! The contract is the project's own `wit/` if it has one (as scaffolded
//! projects do), else the repository's `wit/v0.1.0/`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::Result;
use wasmonkey_plugin_build::guests::Guests;
use wasmonkey_plugin_build::{project, Layout, Project};

use crate::plugins;

/// The contract version under `wit/` the repository's plugins build
/// against when they carry none (each version's directory is frozen once
/// released).
pub const CONTRACT: &str = "v0.1.0";

/// The reference strategies in each language, built into [`EXAMPLES_OUT`]:
/// contract 0.1's (classic monkey), and 0.2's (oldest first), whose
/// projects carry their contract as a `wit` link to `wit/v0.2.0`.
pub const EXAMPLES: &[&str] = &[
    "examples/plugins/python",
    "examples/plugins/js",
    "examples/plugins/c",
    "examples/plugins/zig",
    "examples/plugins-0.2/python",
    "examples/plugins-0.2/js",
    "examples/plugins-0.2/c",
    "examples/plugins-0.2/zig",
];
/// Where the reference strategies' components go.
pub const EXAMPLES_OUT: &str = "target/example-plugins";
/// Test-only plugins in other languages, built into [`TESTS_OUT`].
pub const TESTS: &[&str] = &["tests/plugins/wasi-probe"];
/// Where the test-only plugins in other languages go.
pub const TESTS_OUT: &str = "target/polyglot-test-plugins";
/// Intermediate files of the in-repository builds, one directory a plugin.
const BUILD_DIR: &str = "target/polyglot-build";
/// The target directory of Rust projects built by `build-plugin`.
const RUST_PROJECTS_TARGET: &str = "target/wasm-projects";

/// The checkout's toolchains directory.
pub fn toolchains(root: &Path) -> PathBuf {
    root.join(".toolchains")
}

/// A project of the repository, or one `build-plugin` is given.
fn detect(root: &Path, dir: &Path) -> Result<Project> {
    Project::detect(dir, Some(&root.join("wit").join(CONTRACT)))
}

/// Build the reference strategies and the test-only plugins of every
/// language but Rust.
pub fn build_all(root: &Path) -> Result<()> {
    let mut guests = Guests::new(&toolchains(root));
    for (dirs, out) in [(EXAMPLES, EXAMPLES_OUT), (TESTS, TESTS_OUT)] {
        let out = root.join(out);
        let mut keep = BTreeSet::new();
        for dir in dirs {
            let project = detect(root, &root.join(dir))?;
            let layout = Layout {
                build: root.join(BUILD_DIR).join(&project.name),
                out: out.clone(),
                rust_target: root.join(RUST_PROJECTS_TARGET),
                toolchains: toolchains(root),
            };
            crate::step(
                &format!("{} ({})", project.name, project.lang.name()),
                || project::build(&project, &layout, &mut guests),
            )?;
            keep.insert(format!("{}.wasm", project.name));
            keep.insert(format!("{}.toml", project.name));
        }
        plugins::remove_stale(&out, &keep)?;
    }
    Ok(())
}

/// Build one plugin project into `DIR/dist/NAME.wasm` (with its manifest
/// beside it, as `NAME.toml`); intermediate files go to `DIR/build/`, a
/// Rust project's to the checkout's target directory.
pub fn build_one(root: &Path, dir: &Path) -> Result<PathBuf> {
    let project = detect(root, dir)?;
    let mut guests = Guests::new(&toolchains(root));
    let layout = Layout {
        rust_target: root.join(RUST_PROJECTS_TARGET),
        ..Layout::of_project(&project, &toolchains(root))
    };
    crate::step(
        &format!("{} ({})", project.name, project.lang.name()),
        || project::build(&project, &layout, &mut guests),
    )
}
