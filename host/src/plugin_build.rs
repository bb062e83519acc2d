//! `wasmonkey plugin build`: a plugin project, as `wasmonkey new` writes
//! it, built into `dist/NAME.wasm` and `dist/NAME.toml` with its language's
//! published tools and nothing of wasmonkey's source. The tools are set up
//! on first use, from package registries, into the toolchains directory.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use wasmonkey_plugin_build::{guests::Guests, project, Layout, Project};

use crate::manifest::Manifest;

/// Where the language tools are set up: `WASMONKEY_TOOLCHAINS`, else
/// `$XDG_CACHE_HOME/wasmonkey/toolchains` (when absolute), else
/// `$HOME/.cache/wasmonkey/toolchains`.
pub(crate) fn toolchains_dir() -> anyhow::Result<PathBuf> {
    let absolute = |var: &str| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    absolute("WASMONKEY_TOOLCHAINS")
        .or_else(|| absolute("XDG_CACHE_HOME").map(|dir| dir.join("wasmonkey/toolchains")))
        .or_else(|| absolute("HOME").map(|home| home.join(".cache/wasmonkey/toolchains")))
        .ok_or_else(|| {
            anyhow::anyhow!(
                "no place for the language tools: set WASMONKEY_TOOLCHAINS, XDG_CACHE_HOME or HOME to an absolute path"
            )
        })
}

/// Build the project in `dir` with the tools in `toolchains`; the
/// component's path. The manifest it carries is checked as the host will
/// read it when it loads the plugin.
pub(crate) fn build(dir: &Path, toolchains: &Path) -> anyhow::Result<PathBuf> {
    let project = Project::detect(dir, None)?;
    // Refused here rather than when an operator loads it.
    Manifest::load(&project.dir.join(project::MANIFEST))?;
    let layout = Layout::of_project(&project, toolchains);
    let mut guests = Guests::new(toolchains);
    wasmonkey_plugin_build::process::step(
        &format!("{} ({})", project.name, project.lang.name()),
        || project::build(&project, &layout, &mut guests),
    )
    .with_context(|| format!("building {}", project.dir.display()))
}
