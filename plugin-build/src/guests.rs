//! The toolchains that build plugins in Python, JavaScript, C and Zig.
//!
//! Each is taken from where a user already has it when that is the standard
//! tool at a version we know works, and otherwise set up from a package
//! registry under a toolchains directory (the checkout's `.toolchains/` for
//! `cargo xtask`, the user's cache for `wasmonkey plugin build`):
//!
//! | language   | standard tool used when present          | else, set up in the toolchains directory  |
//! |------------|------------------------------------------|-------------------------------------------|
//! | Python     | —                                        | `componentize-py/`: a venv, from PyPI     |
//! | JavaScript | —                                        | `componentize-js/`: npm packages          |
//! | C          | a wasi-sdk in `WASI_SDK_PATH`            | `clang-wasi/`: Debian's clang and wasi-libc, unpacked |
//! | Zig        | `zig` on `PATH` if it is Zig 0.17        | `zig/`: a venv with PyPI's `ziglang`      |
//!
//! Every set-up happens in `NAME.partial/`, is checked by running the tool,
//! gets a `READY` marker (the recipe and what was installed) and only then is
//! renamed to `NAME/`; an interrupted set-up is discarded on the next run,
//! and a marker from another recipe makes it start again. Two builds
//! setting up the same tool at once take turns (a lock file). Delete the
//! directory to download everything afresh.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::toolchain::{checked, unpack, which, Apt, Parts, SetupLock};

/// The Python package that turns a Python module into a component.
pub const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";
/// The npm package that turns a JavaScript module into a component
/// (StarlingMonkey, a SpiderMonkey build for WASI).
pub const COMPONENTIZE_JS: (&str, &str) = ("@bytecodealliance/componentize-js", "0.23.0");
/// Zig from PyPI (the Zig project's own builds, as a wheel).
pub const ZIGLANG: &str = "ziglang==0.17.1";
/// The Zig release the Zig plugins are written for.
pub const ZIG_SERIES: &str = "0.17.";

/// Bump when a set-up changes, so that old ones are redone.
const RECIPE: &str = "1";
const MARKER: &str = "READY";

/// componentize-py in its venv.
pub struct ComponentizePy {
    python: PathBuf,
}

/// Runs componentize-py's entry point: the package has no `__main__`, and
/// its console script's `#!` line would name the staging directory.
const COMPONENTIZE_PY_MAIN: &[&str] = &[
    "-c",
    "import sys; from componentize_py import script; sys.argv[0] = 'componentize-py'; sys.exit(script())",
];

impl ComponentizePy {
    /// A command running componentize-py.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.python);
        cmd.args(COMPONENTIZE_PY_MAIN);
        cmd
    }
}

/// componentize-js from its npm install.
pub struct ComponentizeJs {
    bin: PathBuf,
}

impl ComponentizeJs {
    /// A command running componentize-js.
    pub fn command(&self) -> Command {
        Command::new(&self.bin)
    }
}

/// A clang that targets `wasm32-wasi`, with its sysroot.
pub struct Clang {
    clang: PathBuf,
    /// Flags every compile and link needs (target, sysroot, linker).
    flags: Vec<String>,
    /// Libraries the unpacked Debian clang needs.
    library_path: Option<std::ffi::OsString>,
    /// What it is, for messages.
    pub what: String,
}

impl Clang {
    /// `clang` with the target, sysroot and linker flags.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.clang);
        cmd.args(&self.flags);
        if let Some(path) = &self.library_path {
            cmd.env("LD_LIBRARY_PATH", path);
        }
        cmd
    }
}

/// The Zig compiler.
pub struct Zig {
    /// The program and the arguments before zig's own (`python -m ziglang`).
    program: Vec<PathBuf>,
    /// Zig's global cache, shared by every Zig plugin build (it holds the
    /// wasi-libc that Zig builds once, which takes over a minute).
    cache: PathBuf,
    /// What it is, for messages.
    pub what: String,
}

impl Zig {
    /// A command running `zig`.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program[0]);
        cmd.args(&self.program[1..]);
        cmd.env("ZIG_GLOBAL_CACHE_DIR", &self.cache);
        cmd
    }
}

/// The toolchains, each set up on first use.
pub struct Guests {
    base: PathBuf,
    python: Option<ComponentizePy>,
    js: Option<ComponentizeJs>,
    clang: Option<Clang>,
    zig: Option<Zig>,
}

impl Guests {
    /// Nothing set up yet; set-ups go in `toolchains`.
    pub fn new(toolchains: &Path) -> Guests {
        Guests {
            base: toolchains.to_owned(),
            python: None,
            js: None,
            clang: None,
            zig: None,
        }
    }

    fn base(&self) -> PathBuf {
        self.base.clone()
    }

    /// componentize-py, set up if needed.
    pub fn python(&mut self) -> Result<&ComponentizePy> {
        let tool = match self.python.take() {
            Some(tool) => tool,
            None => {
                let _lock = SetupLock::take(&self.base)?;
                let dir = venv(
                    &self.base(),
                    "componentize-py",
                    COMPONENTIZE_PY,
                    COMPONENTIZE_PY_MAIN,
                )?;
                ComponentizePy {
                    python: dir.join("bin/python"),
                }
            }
        };
        Ok(self.python.insert(tool))
    }

    /// componentize-js, set up if needed.
    pub fn js(&mut self) -> Result<&ComponentizeJs> {
        let tool = match self.js.take() {
            Some(tool) => tool,
            None => {
                let _lock = SetupLock::take(&self.base)?;
                let dir = npm(&self.base(), "componentize-js", COMPONENTIZE_JS)?;
                ComponentizeJs {
                    bin: dir.join("node_modules/.bin/componentize-js"),
                }
            }
        };
        Ok(self.js.insert(tool))
    }

    /// A wasm32-wasi clang: the wasi-sdk in `WASI_SDK_PATH`, else Debian's.
    pub fn clang(&mut self) -> Result<&Clang> {
        let tool = match self.clang.take() {
            Some(tool) => tool,
            None => match std::env::var_os("WASI_SDK_PATH") {
                Some(sdk) if !sdk.is_empty() => wasi_sdk(Path::new(&sdk))?,
                _ => {
                    let _lock = SetupLock::take(&self.base)?;
                    debian_clang(&self.base())?
                }
            },
        };
        Ok(self.clang.insert(tool))
    }

    /// Zig 0.17: `zig` on `PATH` if it is that version, else PyPI's.
    pub fn zig(&mut self) -> Result<&Zig> {
        let tool = match self.zig.take() {
            Some(tool) => tool,
            None => {
                let cache = self.base().join("zig-cache");
                let system = which("zig").filter(|zig| {
                    version_of(Command::new(zig).arg("version"))
                        .is_some_and(|v| v.starts_with(ZIG_SERIES))
                });
                match system {
                    Some(zig) => Zig {
                        what: format!("{} (on PATH)", zig.display()),
                        program: vec![zig],
                        cache,
                    },
                    None => {
                        let _lock = SetupLock::take(&self.base)?;
                        let dir = venv(&self.base(), "zig", ZIGLANG, &["-m", "ziglang"])?;
                        Zig {
                            what: format!("{ZIGLANG} in {}", dir.display()),
                            program: vec![dir.join("bin/python"), "-m".into(), "ziglang".into()],
                            cache,
                        }
                    }
                }
            }
        };
        Ok(self.zig.insert(tool))
    }
}

/// The first line a command prints, if it runs and succeeds.
fn version_of(cmd: &mut Command) -> Option<String> {
    let out = cmd.stderr(Stdio::null()).output().ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .map(|l| l.trim().to_owned())
}

/// The set-up in `base/name`, if its marker says it is complete and made
/// by this recipe for `what`.
fn ready(base: &Path, name: &str, what: &str) -> Option<PathBuf> {
    let dir = base.join(name);
    let marker = fs::read_to_string(dir.join(MARKER)).ok()?;
    let expected = format!("recipe {RECIPE}\nfor {what}\n");
    if marker.contains(&expected) {
        Some(dir)
    } else {
        eprintln!("{} was set up by another recipe: redoing it", dir.display());
        None
    }
}

/// A fresh `base/name.partial/`, with any stale set-up removed.
fn staging(base: &Path, name: &str) -> Result<PathBuf> {
    let ready = base.join(name);
    let staging = base.join(format!("{name}.partial"));
    for stale in [&ready, &staging] {
        if stale.exists() {
            fs::remove_dir_all(stale)
                .with_context(|| format!("removing the incomplete {}", stale.display()))?;
        }
    }
    fs::create_dir_all(&staging).with_context(|| format!("creating {}", staging.display()))?;
    Ok(staging)
}

/// Write the marker last, then rename the staging directory into place:
/// only a complete set-up ever carries a marker under the ready name.
fn publish(base: &Path, name: &str, what: &str, details: &str) -> Result<PathBuf> {
    let staging = base.join(format!("{name}.partial"));
    let ready = base.join(name);
    fs::write(
        staging.join(MARKER),
        format!(
            "# wasmonkey guest toolchain. Delete this directory to set it up afresh.\n\
             recipe {RECIPE}\nfor {what}\n{details}"
        ),
    )?;
    fs::rename(&staging, &ready)
        .with_context(|| format!("renaming {} to {}", staging.display(), ready.display()))?;
    Ok(ready)
}

/// A Python venv in `base/name` with `package` installed from PyPI; the tool
/// must then run as `python RUN… --version` (`zig version` for Zig). Tools
/// are always run through the venv's `python`, never by their console
/// scripts, whose `#!` lines would still name the staging directory.
fn venv(base: &Path, name: &str, package: &str, run: &[&str]) -> Result<PathBuf> {
    if let Some(dir) = ready(base, name, package) {
        return Ok(dir);
    }
    eprintln!("setting up {package} in {}", base.join(name).display());
    let python = which("python3").context(
        "setting up a Python guest toolchain needs `python3` (with its venv module) on PATH",
    )?;
    let staging = staging(base, name)?;
    let mut create = Command::new(&python);
    create.args(["-m", "venv"]).arg(&staging);
    checked(&mut create)
        .context("creating a Python venv (Debian: apt-get install python3-venv)")?;
    let mut pip = Command::new(staging.join("bin/python"));
    pip.args([
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--no-input",
        "--quiet",
        package,
    ]);
    checked(&mut pip).with_context(|| {
        format!("installing {package} from PyPI failed: check that this machine reaches PyPI")
    })?;
    let version_arg = if name == "zig" {
        "version"
    } else {
        "--version"
    };
    let version = version_of(
        Command::new(staging.join("bin/python"))
            .args(run)
            .arg(version_arg)
            .env_remove("PYTHONPATH"),
    )
    .with_context(|| format!("{package} does not run after its installation"))?;
    publish(base, name, package, &format!("version {version}\n"))
}

/// `npm install` of one exact package version into `base/name`.
fn npm(base: &Path, name: &str, (package, version): (&str, &str)) -> Result<PathBuf> {
    let what = format!("{package}@{version}");
    if let Some(dir) = ready(base, name, &what) {
        return Ok(dir);
    }
    eprintln!("setting up {what} in {}", base.join(name).display());
    let npm = which("npm").context("setting up the JavaScript guest toolchain needs `npm` on PATH (Debian: apt-get install npm)")?;
    let staging = staging(base, name)?;
    fs::write(
        staging.join("package.json"),
        format!(
            "{{\n  \"private\": true,\n  \"description\": \"wasmonkey's JavaScript guest toolchain\",\n  \
             \"dependencies\": {{ \"{package}\": \"{version}\" }}\n}}\n"
        ),
    )?;
    let mut install = Command::new(npm);
    install
        .args(["install", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(&staging);
    checked(&mut install).with_context(|| {
        format!(
            "installing {what} from npm failed: check that this machine reaches the npm registry"
        )
    })?;
    let bin = staging.join("node_modules/.bin/componentize-js");
    let version = version_of(Command::new(&bin).arg("--version"))
        .with_context(|| format!("{} does not run after `npm install`", bin.display()))?;
    publish(base, name, &what, &format!("version {version}\n"))
}

/// A wasi-sdk: its clang knows the sysroot it ships.
fn wasi_sdk(sdk: &Path) -> Result<Clang> {
    let clang = sdk.join("bin/clang");
    if !clang.is_file() {
        bail!(
            "WASI_SDK_PATH={} has no bin/clang: point it at a wasi-sdk, or unset it to use Debian's clang",
            sdk.display()
        );
    }
    Ok(Clang {
        flags: vec![
            "--target=wasm32-wasi".into(),
            format!("--sysroot={}", sdk.join("share/wasi-sysroot").display()),
        ],
        clang,
        library_path: None,
        what: format!("wasi-sdk in {}", sdk.display()),
    })
}

/// Debian's clang, lld and wasi-libc; their dependencies that the machine
/// lacks are downloaded too.
const CLANG_ROOTS: &[&str] = &[
    "clang-16",
    "lld-16",
    "wasi-libc",
    "libclang-rt-16-dev-wasm32",
];
/// Dependencies that only serve native compiles.
const CLANG_NOT_NEEDED: &[&str] = &[
    "gcc",
    "libc-dev",
    "libc6-dev",
    "binutils",
    "libgcc-12-dev",
    "libstdc++-12-dev",
    "libobjc-12-dev",
    "llvm-16-linker-tools",
    "libclang1-16",
];
const CLANG_PARTS: Parts = &[];

/// Debian's clang-16 with wasi-libc, unpacked (never installed) under
/// `base/clang-wasi/root`.
fn debian_clang(base: &Path) -> Result<Clang> {
    let name = "clang-wasi";
    let what = CLANG_ROOTS.join(" ");
    let dir = match ready(base, name, &what) {
        Some(dir) => dir,
        None => {
            eprintln!(
                "no WASI_SDK_PATH: setting up Debian's clang and wasi-libc in {}",
                base.join(name).display()
            );
            for tool in ["apt-get", "apt-cache", "dpkg-deb", "dpkg-query", "tar"] {
                if which(tool).is_none() {
                    bail!(
                        "building C plugins needs a wasi-sdk: set WASI_SDK_PATH (the fallback that \
                         downloads Debian's clang needs `{tool}`, which this machine lacks)"
                    );
                }
            }
            let staging = staging(base, name)?;
            let debs = staging.join("debs");
            let root = staging.join("root");
            fs::create_dir_all(&debs)?;
            fs::create_dir_all(&root)?;
            let packages = Apt::new(CLANG_ROOTS, CLANG_NOT_NEEDED).download(&debs)?;
            for (package, _) in &packages {
                unpack(&debs, package, &root, CLANG_PARTS)?;
            }
            fs::remove_dir_all(&debs)?;
            let clang = clang_in(&staging)?;
            let version = version_of(clang.command().arg("--version"))
                .context("the unpacked clang does not run")?;
            let mut details = format!("clang {version}\n");
            for (package, version) in &packages {
                details.push_str(&format!("package {package} {version}\n"));
            }
            publish(base, name, &what, &details)?
        }
    };
    clang_in(&dir)
}

/// The clang unpacked under `dir/root`, with flags for its wasi-libc.
fn clang_in(dir: &Path) -> Result<Clang> {
    let usr = dir.join("root/usr");
    // Run clang from its real directory, so that it finds its resource
    // directory (lib/clang/16) beside it.
    let clang = usr.join("lib/llvm-16/bin/clang");
    let wasm_ld = usr.join("bin/wasm-ld-16");
    for needed in [&clang, &wasm_ld, &usr.join("include/wasm32-wasi/stdlib.h")] {
        if !needed.exists() {
            bail!(
                "{} is missing: delete {} to set it up again",
                needed.display(),
                dir.display()
            );
        }
    }
    let mut paths = vec![
        usr.join("lib/x86_64-linux-gnu"),
        usr.join("lib/llvm-16/lib"),
        usr.join("lib"),
    ];
    if let Some(old) = std::env::var_os("LD_LIBRARY_PATH") {
        paths.extend(std::env::split_paths(&old));
    }
    Ok(Clang {
        flags: vec![
            "--target=wasm32-wasi".into(),
            format!("--sysroot={}", usr.display()),
            "-isystem".into(),
            usr.join("include/wasm32-wasi").display().to_string(),
            format!("-L{}", usr.join("lib/wasm32-wasi").display()),
            format!("-fuse-ld={}", wasm_ld.display()),
        ],
        clang,
        library_path: Some(std::env::join_paths(paths).context("joining LD_LIBRARY_PATH")?),
        what: format!("Debian clang-16 and wasi-libc in {}", dir.display()),
    })
}
