//! A plugin project and its build.
//!
//! A plugin project is a directory with a `wasmonkey.toml` manifest and its
//! source, whose file name says the language:
//!
//! | file          | language   | built with                                       |
//! |---------------|------------|--------------------------------------------------|
//! | `Cargo.toml`  | Rust       | cargo, for `wasm32-unknown-unknown`, then wit-component |
//! | `plugin.py`   | Python     | componentize-py                                  |
//! | `plugin.js`   | JavaScript | componentize-js (StarlingMonkey)                 |
//! | `plugin.c`    | C          | wit-bindgen's C bindings, clang, wit-component   |
//! | `plugin.zig`  | Zig        | wit-bindgen's C bindings, zig, wit-component     |
//!
//! The contract is the project's own `wit/` (as `wasmonkey new` and
//! `wasmonkey wit` write it), else the one the caller falls back to.

use std::fs;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use wasmonkey_lang::Lang;

use crate::component;
use crate::guests::{self, Guests};
use crate::process::{self, run};
use crate::toolchain::{self, TARGET};

/// The world every plugin targets.
pub const WORLD: &str = "strategy-plugin";
/// The manifest beside each plugin's source.
pub const MANIFEST: &str = "wasmonkey.toml";

/// Bump when the build commands change, so that every project is rebuilt.
const BUILD_RECIPE: &str = "polyglot build 2";

/// Interfaces a plugin may import: the contract's, and the WASI ones the
/// host links deny-by-default (wasmtime-wasi's preview 2 set).
const LINKABLE: &[&str] = &[
    "wasmonkey:chaos/",
    "wasi:io/",
    "wasi:clocks/",
    "wasi:random/",
    "wasi:cli/",
    "wasi:filesystem/",
    "wasi:sockets/",
];

/// A plugin project.
pub struct Project {
    /// The project's directory, absolute.
    pub dir: PathBuf,
    /// Its language, from its source file's name.
    pub lang: Lang,
    /// The manifest's `name`: the component's file stem.
    pub name: String,
    /// The WIT directory of the contract.
    pub wit: PathBuf,
}

impl Project {
    /// Read the project in `dir`: its manifest and its language. Its
    /// contract is its own `wit/`, else `fallback_wit`.
    pub fn detect(dir: &Path, fallback_wit: Option<&Path>) -> Result<Project> {
        let dir = dir
            .canonicalize()
            .with_context(|| format!("no plugin project at {}", dir.display()))?;
        let found: Vec<Lang> = Lang::ALL
            .into_iter()
            .filter(|lang| dir.join(lang.source()).is_file())
            .collect();
        let lang = match found.as_slice() {
            [lang] => *lang,
            [] => bail!(
                "{}: no plugin source found (one of {})",
                dir.display(),
                Lang::ALL.map(Lang::source).join(", ")
            ),
            _ => bail!(
                "{}: more than one plugin source ({}): keep one",
                dir.display(),
                found
                    .iter()
                    .map(|l| l.source())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let name = check_manifest(&dir.join(MANIFEST))?;
        let own_wit = dir.join("wit");
        let wit = match fallback_wit {
            _ if own_wit.is_dir() => own_wit,
            Some(wit) => wit.to_owned(),
            None => bail!(
                "{}: no wit/ directory: write the contract there with `wasmonkey wit --dir {}`",
                dir.display(),
                own_wit.display()
            ),
        };
        Ok(Project {
            dir,
            lang,
            name,
            wit,
        })
    }
}

/// Check a manifest's `name`, `version` and `grants`; returns the name.
fn check_manifest(path: &Path) -> Result<String> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let table: toml::Table = text
        .parse()
        .with_context(|| format!("parsing {}", path.display()))?;
    let Some(name) = table.get("name").and_then(toml::Value::as_str) else {
        bail!("{}: `name` is missing", path.display());
    };
    let valid = !name.is_empty()
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid {
        bail!(
            "{}: name = {name:?}: use lowercase letters, digits and `-`, starting with a letter",
            path.display()
        );
    }
    if table.get("version").and_then(toml::Value::as_str).is_none() {
        bail!("{}: `version` is missing", path.display());
    }
    component::check_grants(path, &table)?;
    Ok(name.to_owned())
}

/// Where a build puts what it makes, and where it finds its tools.
pub struct Layout {
    /// Intermediate files (bindings, core modules, the build stamp).
    pub build: PathBuf,
    /// Where `NAME.wasm` and `NAME.toml` go.
    pub out: PathBuf,
    /// Cargo's target directory for a Rust project.
    pub rust_target: PathBuf,
    /// Where the language tools are set up on first use.
    pub toolchains: PathBuf,
}

impl Layout {
    /// A project's own: `DIR/build/`, `DIR/dist/` and `DIR/target/`.
    pub fn of_project(project: &Project, toolchains: &Path) -> Layout {
        Layout {
            build: project.dir.join("build"),
            out: project.dir.join("dist"),
            rust_target: project.dir.join("target"),
            toolchains: toolchains.to_owned(),
        }
    }
}

/// Build a project's component into `out/NAME.wasm` (with its manifest
/// beside it, as `NAME.toml`), unless its sources, contract and toolchain
/// are those of the last build; returns its path.
pub fn build(project: &Project, layout: &Layout, guests: &mut Guests) -> Result<PathBuf> {
    let (build, out) = (&layout.build, &layout.out);
    fs::create_dir_all(build).with_context(|| format!("creating {}", build.display()))?;
    fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let wasm_path = out.join(format!("{}.wasm", project.name));
    let toml_path = out.join(format!("{}.toml", project.name));
    let stamp_path = build.join("stamp");
    let stamp = stamp(project)?;
    let fresh = fs::read_to_string(&stamp_path).is_ok_and(|old| old == stamp);
    // Rust projects are left to cargo, which knows what changed.
    if fresh && project.lang != Lang::Rust && wasm_path.is_file() {
        component::write_if_changed(&toml_path, &fs::read(project.dir.join(MANIFEST))?)?;
        eprintln!("  {} (unchanged)", wasm_path.display());
        return Ok(wasm_path);
    }
    let component = match project.lang {
        Lang::Rust => build_rust(project, layout)?,
        Lang::Python => build_python(project, build, guests)?,
        Lang::Js => build_js(project, build, guests)?,
        Lang::C => build_c(project, build, guests)?,
        Lang::Zig => build_zig(project, build, guests)?,
    };
    let shape = component::shape(&component)
        .with_context(|| format!("checking plugin `{}`", project.name))?;
    if let Some(bad) = shape
        .imports
        .iter()
        .find(|name| !LINKABLE.iter().any(|prefix| name.starts_with(prefix)))
    {
        bail!(
            "plugin `{}` imports {bad}, which the host does not link: plugins get the contract's \
             interfaces and a deny-by-default WASI (io, clocks, random, cli, filesystem, sockets) \
             only",
            project.name
        );
    }
    let changed = component::write_if_changed(&wasm_path, &component)?;
    component::write_if_changed(&toml_path, &fs::read(project.dir.join(MANIFEST))?)?;
    fs::write(&stamp_path, stamp)?;
    let wasi: Vec<&String> = shape
        .imports
        .iter()
        .filter(|name| name.starts_with("wasi:"))
        .collect();
    eprintln!(
        "  {} ({:.1} KiB{}), {}",
        shown(&wasm_path).display(),
        component.len() as f64 / 1024.0,
        if changed { "" } else { ", unchanged" },
        if wasi.is_empty() {
            "no WASI imports".to_owned()
        } else {
            format!("{} WASI imports (linked deny-by-default)", wasi.len())
        }
    );
    Ok(wasm_path)
}

/// What the last build depended on: the project's files, the contract and
/// the tool versions. Equal stamps mean the component would be the same.
fn stamp(project: &Project) -> Result<String> {
    let mut hasher = std::hash::DefaultHasher::new();
    let mut files = Vec::new();
    collect_files(&project.dir, &mut files)?;
    collect_files(&project.wit, &mut files)?;
    files.sort();
    for file in &files {
        file.hash(&mut hasher);
        fs::read(file)
            .with_context(|| format!("reading {}", file.display()))?
            .hash(&mut hasher);
    }
    let tools = [
        BUILD_RECIPE,
        guests::COMPONENTIZE_PY,
        guests::COMPONENTIZE_JS.1,
        guests::ZIGLANG,
        &std::env::var("WASI_SDK_PATH").unwrap_or_default(),
    ];
    tools.hash(&mut hasher);
    Ok(format!("{:016x}\n", hasher.finish()))
}

/// The files under `dir`, less build outputs.
fn collect_files(dir: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if matches!(
            name,
            "build" | "dist" | "target" | "node_modules" | "__pycache__"
        ) || name.starts_with('.')
        {
            continue;
        }
        if path.is_dir() {
            collect_files(&path, files)?;
        } else {
            files.push(path);
        }
    }
    Ok(())
}

fn build_python(project: &Project, build: &Path, guests: &mut Guests) -> Result<Vec<u8>> {
    // componentize-py runs the module once while building, and CPython then
    // writes `__pycache__/` beside it (and bundles what it finds there): build
    // from a fresh copy of the sources, never from the project itself.
    let sources = build.join("py");
    if sources.exists() {
        fs::remove_dir_all(&sources).with_context(|| format!("removing {}", sources.display()))?;
    }
    let mut files = Vec::new();
    collect_files(&project.dir, &mut files)?;
    for file in files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "py"))
    {
        let relative = file.strip_prefix(&project.dir).unwrap_or(file);
        let target = sources.join(relative);
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        fs::copy(file, &target)
            .with_context(|| format!("copying {} to {}", file.display(), target.display()))?;
    }
    let output = build.join("component.wasm");
    let mut cmd = guests.python()?.command();
    cmd.arg("-d")
        .arg(&project.wit)
        .args(["-w", WORLD, "componentize", "plugin", "-p"])
        .arg(&sources)
        .arg("-o")
        .arg(&output)
        .current_dir(build);
    run(&mut cmd)?;
    read(&output)
}

fn build_js(project: &Project, build: &Path, guests: &mut Guests) -> Result<Vec<u8>> {
    let output = build.join("component.wasm");
    // componentize-js wants the WIT directory below its working directory.
    let (cwd, wit) = match project.wit.parent() {
        Some(parent) => (
            parent.to_path_buf(),
            PathBuf::from(project.wit.file_name().unwrap_or_default()),
        ),
        None => bail!("{}: the WIT directory has no parent", project.wit.display()),
    };
    let mut cmd = guests.js()?.command();
    cmd.arg(project.dir.join("plugin.js"))
        .arg("--wit")
        .arg(&wit)
        .args(["--world-name", WORLD])
        // wasi:http (and the fetch-event handler on it) is a WASI the host
        // does not link; stdio, clocks and random stay, deny-by-default.
        .args(["--disable", "http", "--disable", "fetch-event"])
        .arg("--out")
        .arg(&output)
        .current_dir(cwd);
    run(&mut cmd)?;
    read(&output)
}

fn build_c(project: &Project, build: &Path, guests: &mut Guests) -> Result<Vec<u8>> {
    let gen = crate::cbindings::generate(&project.wit, WORLD, &build.join("gen"))?;
    let core = build.join("core.wasm");
    let clang = guests.clang()?;
    eprintln!("  C compiler: {}", clang.what);
    let mut cmd = clang.command();
    cmd.args(["-mexec-model=reactor", "-Os", "-s", "-std=c11"])
        .args(["-Wall", "-Wextra", "-Wno-unused-parameter"])
        .arg("-I")
        .arg(&gen.dir)
        .arg(project.dir.join("plugin.c"))
        .arg(&gen.source)
        .arg(&gen.object)
        .arg("-o")
        .arg(&core);
    run(&mut cmd)?;
    componentize_core(&core)
}

fn build_zig(project: &Project, build: &Path, guests: &mut Guests) -> Result<Vec<u8>> {
    let gen = crate::cbindings::generate(&project.wit, WORLD, &build.join("gen"))?;
    let zig = guests.zig()?;
    eprintln!("  Zig: {}", zig.what);
    // `@cImport` is gone from Zig 0.17: translate the C header to Zig once.
    let bindings = gen.dir.join("bindings.zig");
    let mut translate = zig.command();
    translate
        .args(["translate-c", "-target", "wasm32-wasi", "-lc", "-I"])
        .arg(&gen.dir)
        .arg(&gen.header);
    let out = translate
        .output()
        .with_context(|| format!("running {}", process::describe(&translate)))?;
    if !out.status.success() {
        bail!(
            "{} failed: {}",
            process::describe(&translate),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    fs::write(&bindings, &out.stdout)?;
    let core = build.join("core.wasm");
    let mut cmd = zig.command();
    cmd.args(["build-exe", "-target", "wasm32-wasi", "-O", "ReleaseSmall"])
        .args([
            "-fno-entry",
            "-mexec-model=reactor",
            "--stack",
            "65536",
            "-lc",
        ])
        .arg("--name")
        .arg("core")
        .arg(format!("-femit-bin={}", core.display()))
        .arg("-I")
        .arg(&gen.dir)
        .arg(&gen.source)
        .arg(&gen.object)
        .args(["--dep", "bindings"])
        .arg(format!(
            "-Mroot={}",
            project.dir.join("plugin.zig").display()
        ))
        .arg(format!("-Mbindings={}", bindings.display()))
        .current_dir(build);
    run(&mut cmd)?;
    componentize_core(&core)
}

/// A core module carrying wit-bindgen's component-type section, as a
/// component. One that needs WASI preview 1 (e.g. for `printf`) is refused:
/// log through the contract's `runtime.log` instead.
fn componentize_core(core: &Path) -> Result<Vec<u8>> {
    let bytes = read(core)?;
    let preview1 = wasmparser::Parser::new(0)
        .parse_all(&bytes)
        .filter_map(|payload| match payload {
            Ok(wasmparser::Payload::ImportSection(reader)) => Some(reader),
            _ => None,
        })
        .flat_map(|reader| reader.into_iter())
        .filter_map(|import| import.ok())
        .find(|import| import.module.starts_with("wasi_snapshot_preview1"))
        .map(|import| import.name.to_owned());
    if let Some(function) = preview1 {
        bail!(
            "{} imports wasi_snapshot_preview1::{function}: plugins in C and Zig must not need \
             WASI (stdio, files, clocks…); log with the contract's runtime.log instead",
            core.display()
        );
    }
    component::componentize(&bytes).with_context(|| format!("componentizing {}", core.display()))
}

fn build_rust(project: &Project, layout: &Layout) -> Result<Vec<u8>> {
    let manifest = project.dir.join("Cargo.toml");
    let text = fs::read_to_string(&manifest)?;
    let table: toml::Table = text
        .parse()
        .with_context(|| format!("parsing {}", manifest.display()))?;
    let lib = table
        .get("lib")
        .and_then(|lib| lib.get("name"))
        .or_else(|| table.get("package").and_then(|p| p.get("name")))
        .and_then(toml::Value::as_str)
        .with_context(|| format!("{}: no [package] name", manifest.display()))?
        .replace('-', "_");
    let toolchain = process::step("guest toolchain", || {
        toolchain::guest_toolchain(&layout.toolchains, &project.dir)
    })?;
    let target_dir = &layout.rust_target;
    let mut cmd = process::cargo(&project.dir);
    cmd.args(["build", "--release", "--target", TARGET, "--manifest-path"])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(target_dir)
        .args(toolchain.cargo_args());
    toolchain.configure(&mut cmd)?;
    run(&mut cmd)?;
    let core = target_dir
        .join(TARGET)
        .join("release")
        .join(format!("{lib}.wasm"));
    let bytes = read(&core)?;
    component::componentize(&bytes).with_context(|| format!("componentizing {}", core.display()))
}

/// `path` relative to the working directory when it is below it.
fn shown(path: &Path) -> &Path {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(cwd).ok())
        .unwrap_or(path)
}

fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path)
        .with_context(|| format!("reading {} (the build should have made it)", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(files: &[(&str, &str)]) -> (PathBuf, Result<Project>) {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("wasmonkey-plugin-build-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        for (name, text) in files {
            fs::write(dir.join(name), text).unwrap();
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let found = Project::detect(&dir, Some(&root.join("wit/v0.1.0")));
        (dir, found)
    }

    const MANIFEST_OK: &str = "name = \"p-1\"\nversion = \"0.1.0\"\ngrants = [\"terminate\"]\n";

    #[test]
    fn the_source_file_names_the_language() {
        let (dir, found) = project(&[("wasmonkey.toml", MANIFEST_OK), ("plugin.zig", "")]);
        let found = found.unwrap();
        assert_eq!(found.lang, Lang::Zig);
        assert_eq!(found.name, "p-1");
        // No wit/ of its own: the repository's contract.
        assert!(found.wit.join("strategy.wit").is_file());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_project_without_its_contract_and_no_fallback_is_told_how_to_get_it() {
        let dir = std::env::temp_dir().join(format!(
            "wasmonkey-plugin-build-nowit-{}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("wasmonkey.toml"), MANIFEST_OK).unwrap();
        fs::write(dir.join("plugin.c"), "").unwrap();
        let err = format!("{:#}", Project::detect(&dir, None).err().unwrap());
        assert!(
            err.contains("no wit/") && err.contains("wasmonkey wit --dir"),
            "{err}"
        );
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn errors_name_the_file_and_the_problem() {
        let (dir, found) = project(&[("wasmonkey.toml", MANIFEST_OK)]);
        let err = format!("{:#}", found.err().unwrap());
        assert!(
            err.contains("no plugin source") && err.contains("plugin.py"),
            "{err}"
        );
        fs::remove_dir_all(dir).unwrap();

        let (dir, found) = project(&[
            ("wasmonkey.toml", MANIFEST_OK),
            ("plugin.c", ""),
            ("plugin.js", ""),
        ]);
        let err = format!("{:#}", found.err().unwrap());
        assert!(err.contains("more than one"), "{err}");
        fs::remove_dir_all(dir).unwrap();

        let (dir, found) = project(&[
            (
                "wasmonkey.toml",
                "name = \"p\"\nversion = \"1\"\ngrants = [\"root\"]\n",
            ),
            ("plugin.py", ""),
        ]);
        let err = format!("{:#}", found.err().unwrap());
        assert!(
            err.contains("wasmonkey.toml") && err.contains("root"),
            "{err}"
        );
        fs::remove_dir_all(dir).unwrap();
    }
}
