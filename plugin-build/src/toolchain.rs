//! The toolchain that builds guests for `wasm32-unknown-unknown`.
//!
//! Where rustup has the target installed, the plain cargo build is used. Where
//! it has not (and cannot download it, as on machines that reach only package
//! registries), Debian's `rustc-web` compiler, the standard library's source
//! and the `lld` wasm linker are downloaded as `.deb` files into the
//! toolchains directory, unpacked there (never installed) and std is built
//! from source with `-Zbuild-std`.
//!
//! The set-up happens in `rust-web.partial/` and is renamed to `rust-web/`
//! only after the compiler has run, with a `READY` marker listing the
//! package versions; an interrupted set-up is discarded on the next run.
//! Delete the directory to download afresh.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{anyhow, bail, Context, Result};

/// The rustc target every guest is built for.
pub const TARGET: &str = "wasm32-unknown-unknown";

/// The Debian packages the set-up starts from; their dependencies that the
/// machine lacks are added.
const ROOTS: &[&str] = &["rustc-web", "rust-web-src", "libstd-rust-web-dev", "lld-16"];

/// Dependencies of `rustc-web` that only serve native linking: the wasm build
/// links with `wasm-ld`, and build scripts use the machine's own C toolchain.
const NOT_NEEDED: &[&str] = &["gcc", "libc-dev", "libc6-dev", "binutils"];

/// Packages of which only these paths are unpacked: the compiler's source
/// is 400 MB, of which `-Zbuild-std` reads only the 44 MB of `library/`.
const PARTS: &[(&str, &[&str])] = &[(
    "rust-web-src",
    &["./usr/lib/rustlib", "./usr/src/*/library"],
)];

/// Bump when the set-up changes so that an old `.toolchains/` must be redone.
const RECIPE: &str = "2";

const MARKER: &str = "READY";

/// How the guests are compiled.
pub enum GuestToolchain {
    /// rustup's toolchain, which has the target's std.
    Rustup,
    /// Debian's `rustc-web`, unpacked into `.toolchains/`.
    Debian(DebianToolchain),
}

impl GuestToolchain {
    /// Extra `cargo build` arguments this toolchain needs.
    pub fn cargo_args(&self) -> Vec<String> {
        match self {
            GuestToolchain::Rustup => Vec::new(),
            GuestToolchain::Debian(_) => vec!["-Zbuild-std=std,panic_abort".to_owned()],
        }
    }

    /// Point a cargo command at this toolchain.
    pub fn configure(&self, cmd: &mut Command) -> Result<()> {
        match self {
            GuestToolchain::Rustup => Ok(()),
            GuestToolchain::Debian(tc) => tc.configure(cmd),
        }
    }

    /// One line saying which toolchain this is.
    pub fn describe(&self) -> String {
        match self {
            GuestToolchain::Rustup => format!("rustup toolchain with the {TARGET} target"),
            GuestToolchain::Debian(tc) => format!(
                "{} (Debian rustc-web in {}, std built from source)",
                tc.rustc_version,
                tc.dir.display()
            ),
        }
    }
}

/// Debian's compiler, unpacked under `dir`.
pub struct DebianToolchain {
    dir: PathBuf,
    rustc: PathBuf,
    wasm_ld: PathBuf,
    lib_dirs: Vec<PathBuf>,
    rustc_version: String,
}

/// Choose the guest toolchain for a build in `dir`, setting up the Debian
/// one in `toolchains` if needed.
pub fn guest_toolchain(toolchains: &Path, dir: &Path) -> Result<GuestToolchain> {
    let forced = std::env::var("WASMONKEY_GUEST_TOOLCHAIN").unwrap_or_default();
    match forced.as_str() {
        "" if rustup_has_target(dir) => Ok(GuestToolchain::Rustup),
        "" | "debian" => Ok(GuestToolchain::Debian(debian(toolchains)?)),
        "rustup" if rustup_has_target(dir) => Ok(GuestToolchain::Rustup),
        "rustup" => bail!(
            "WASMONKEY_GUEST_TOOLCHAIN=rustup, but `rustup target list --installed` does not \
             list {TARGET}: run `rustup target add {TARGET}`, or unset the variable"
        ),
        other => bail!("WASMONKEY_GUEST_TOOLCHAIN={other:?}: expected `rustup` or `debian`"),
    }
}

/// Whether rustup (for the toolchain in force in `dir`) has the target.
fn rustup_has_target(dir: &Path) -> bool {
    let output = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .current_dir(dir)
        .stderr(Stdio::null())
        .output();
    match output {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|line| line.trim() == TARGET),
        _ => false,
    }
}

fn debian(base: &Path) -> Result<DebianToolchain> {
    let _lock = SetupLock::take(base)?;
    let ready = base.join("rust-web");
    if let Some(tc) = DebianToolchain::load(&ready) {
        return Ok(tc);
    }
    eprintln!(
        "no {TARGET} target in rustup: setting up Debian's rustc-web in {}",
        ready.display()
    );
    for tool in ["apt-get", "apt-cache", "dpkg-deb", "dpkg-query", "tar"] {
        if which(tool).is_none() {
            bail!(
                "building the plugins needs the {TARGET} target: run `rustup target add {TARGET}` \
                 (the fallback that downloads Debian's rustc-web needs `{tool}`, which this \
                 machine lacks)"
            );
        }
    }
    let staging = base.join("rust-web.partial");
    for stale in [&ready, &staging] {
        if stale.exists() {
            fs::remove_dir_all(stale)
                .with_context(|| format!("removing the incomplete {}", stale.display()))?;
        }
    }
    let debs = staging.join("debs");
    let unpacked = staging.join("root");
    fs::create_dir_all(&debs).with_context(|| format!("creating {}", debs.display()))?;

    let mut apt = Apt::new(ROOTS, NOT_NEEDED);
    let packages = apt.download(&debs)?;
    fs::create_dir_all(&unpacked)?;
    for (name, _) in &packages {
        unpack(&debs, name, &unpacked, PARTS)?;
    }
    fs::remove_dir_all(&debs).with_context(|| format!("removing {}", debs.display()))?;

    let mut tc = DebianToolchain::locate(&staging)?;
    tc.rustc_version = tc.query_version()?;
    let mut marker = format!(
        "# wasmonkey guest toolchain. Delete this directory to download it afresh.\n\
         recipe {RECIPE}\nroots {}\nrustc {}\n",
        ROOTS.join(" "),
        tc.rustc_version
    );
    for (name, version) in &packages {
        marker.push_str(&format!("package {name} {version}\n"));
    }
    // Written last, then the whole directory is renamed: only a complete
    // set-up ever carries a marker under the ready name.
    fs::write(staging.join(MARKER), marker)?;
    fs::rename(&staging, &ready)
        .with_context(|| format!("renaming {} to {}", staging.display(), ready.display()))?;
    DebianToolchain::load(&ready)
        .ok_or_else(|| anyhow!("{} is not usable right after its set-up", ready.display()))
}

/// An exclusive lock on a toolchains directory, held while a tool is looked
/// for and set up: two builds never set one up at once (each would remove
/// the other's staging directory). Released when dropped.
pub struct SetupLock {
    _file: fs::File,
}

impl SetupLock {
    /// Wait for the lock of `base` (made if missing).
    pub fn take(base: &Path) -> Result<SetupLock> {
        fs::create_dir_all(base).with_context(|| format!("creating {}", base.display()))?;
        let path = base.join(".setup.lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        file.lock()
            .with_context(|| format!("locking {}", path.display()))?;
        Ok(SetupLock { _file: file })
    }
}

/// Which paths to unpack of which package; other packages are unpacked whole.
pub type Parts<'a> = &'a [(&'a str, &'a [&'a str])];

/// Unpack the downloaded `.deb` of package `name` from `debs` into `dest`
/// (only the listed `parts` of the packages named there).
pub fn unpack(debs: &Path, name: &str, dest: &Path, parts: Parts) -> Result<()> {
    let prefix = format!("{name}_");
    let deb = fs::read_dir(debs)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".deb"))
        })
        .with_context(|| format!("`apt-get download` left no {name}_*.deb"))?;
    let Some((_, parts)) = parts.iter().find(|(package, _)| *package == name) else {
        let mut cmd = Command::new("dpkg-deb");
        cmd.arg("-x").arg(&deb).arg(dest);
        return checked(&mut cmd);
    };
    // dpkg-deb --fsys-tarfile DEB | tar -x -C DEST --wildcards PART…
    let mut tarfile = Command::new("dpkg-deb")
        .arg("--fsys-tarfile")
        .arg(&deb)
        .stdout(Stdio::piped())
        .spawn()
        .context("running dpkg-deb")?;
    let stdout = tarfile.stdout.take().context("dpkg-deb's output")?;
    let untarred = {
        let mut tar = Command::new("tar");
        tar.arg("-x")
            .arg("-C")
            .arg(dest)
            .arg("--wildcards")
            .args(*parts)
            .stdin(stdout);
        checked(&mut tar)
        // `tar` drops here with its end of the pipe, so dpkg-deb cannot block.
    };
    let status = tarfile.wait()?;
    untarred?;
    if !status.success() {
        bail!(
            "dpkg-deb --fsys-tarfile {} failed ({status})",
            deb.display()
        );
    }
    Ok(())
}

impl DebianToolchain {
    /// The toolchain in `dir`, if its marker says it is complete and current.
    fn load(dir: &Path) -> Option<DebianToolchain> {
        let marker = fs::read_to_string(dir.join(MARKER)).ok()?;
        let field = |key: &str| {
            marker
                .lines()
                .find_map(|line| line.strip_prefix(key)?.strip_prefix(' '))
                .map(str::to_owned)
        };
        if field("recipe").as_deref() != Some(RECIPE) || field("roots") != Some(ROOTS.join(" ")) {
            eprintln!("{} was set up by another recipe: redoing it", dir.display());
            return None;
        }
        match DebianToolchain::locate(dir) {
            Ok(mut tc) => {
                tc.rustc_version = field("rustc").unwrap_or_default();
                Some(tc)
            }
            Err(err) => {
                eprintln!("{} is damaged ({err:#}): redoing it", dir.display());
                None
            }
        }
    }

    /// Find the compiler, linker and libraries unpacked under `dir/root`.
    fn locate(dir: &Path) -> Result<DebianToolchain> {
        let usr = dir.join("root/usr");
        let rustc = usr.join("bin/rustc");
        if !rustc.is_file() {
            bail!("{} is missing", rustc.display());
        }
        // lld-N ships `wasm-ld-N`; take the newest if several.
        let wasm_ld = fs::read_dir(usr.join("bin"))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("wasm-ld"))
            })
            .max()
            .with_context(|| format!("no wasm-ld in {}", usr.join("bin").display()))?;
        let mut lib_dirs: Vec<PathBuf> = fs::read_dir(usr.join("lib"))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_dir()
                    && p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.ends_with("-linux-gnu"))
            })
            .collect();
        lib_dirs.push(usr.join("lib"));
        Ok(DebianToolchain {
            dir: dir.to_path_buf(),
            rustc,
            wasm_ld,
            lib_dirs,
            rustc_version: String::new(),
        })
    }

    /// Set the environment that makes cargo build with this compiler.
    fn configure(&self, cmd: &mut Command) -> Result<()> {
        let mut paths: Vec<PathBuf> = self.lib_dirs.clone();
        if let Some(old) = std::env::var_os("LD_LIBRARY_PATH") {
            paths.extend(std::env::split_paths(&old));
        }
        let library_path = std::env::join_paths(paths).context("joining LD_LIBRARY_PATH")?;
        cmd.env("RUSTC", &self.rustc)
            // `-Zbuild-std` is unstable; rustc-web is a stable compiler.
            .env("RUSTC_BOOTSTRAP", "1")
            .env("CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER", &self.wasm_ld)
            .env("LD_LIBRARY_PATH", library_path);
        Ok(())
    }

    /// `rustc --version`, which also proves the compiler finds its libraries.
    fn query_version(&self) -> Result<String> {
        let mut cmd = Command::new(&self.rustc);
        cmd.arg("--version");
        self.configure(&mut cmd)?;
        let out = cmd
            .output()
            .with_context(|| format!("running {}", self.rustc.display()))?;
        if !out.status.success() {
            bail!(
                "the unpacked compiler does not run ({}): {}",
                self.rustc.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }
}

/// Debian's package tools, updating the package lists at most once.
pub struct Apt {
    /// The packages wanted; their dependencies that the machine lacks are added.
    roots: &'static [&'static str],
    /// Dependencies never downloaded (only needed for what we do not do).
    not_needed: &'static [&'static str],
    updated: bool,
}

/// What `apt-cache show` says about one package.
struct Stanza {
    version: String,
    /// Each entry is a list of alternatives (`a | b`), as `(name, exact version)`.
    depends: Vec<Vec<(String, Option<String>)>>,
}

impl Apt {
    /// Downloads of `roots` and what they need, less `not_needed`.
    pub fn new(roots: &'static [&'static str], not_needed: &'static [&'static str]) -> Apt {
        Apt {
            roots,
            not_needed,
            updated: false,
        }
    }

    /// Download the packages (roots and missing dependencies) into `dir`;
    /// returns `(name, version)` of each.
    pub fn download(&mut self, dir: &Path) -> Result<Vec<(String, String)>> {
        loop {
            let packages = match self.resolve() {
                Ok(packages) => packages,
                Err(err) if !self.updated => {
                    eprintln!("{err:#}: updating the package lists");
                    self.update()?;
                    continue;
                }
                Err(err) => return Err(err),
            };
            let mut cmd = Command::new("apt-get");
            cmd.arg("download").current_dir(dir);
            cmd.args(packages.iter().map(|(n, v)| format!("{n}={v}")));
            eprintln!(
                "downloading {} Debian packages into {}",
                packages.len(),
                dir.display()
            );
            match checked(&mut cmd) {
                Ok(()) => return Ok(packages),
                // Stale lists name versions the mirror no longer has.
                Err(err) if !self.updated => {
                    eprintln!("{err:#}: updating the package lists and retrying");
                    self.update()?;
                }
                Err(err) => {
                    return Err(err.context(format!(
                        "downloading {} failed: check that this machine reaches the Debian \
                         package mirror",
                        self.roots.join(" ")
                    )))
                }
            }
        }
    }

    fn update(&mut self) -> Result<()> {
        self.updated = true;
        let mut cmd = Command::new("apt-get");
        cmd.arg("update");
        checked(&mut cmd)
            .context("`apt-get update` failed (it needs root: run `sudo apt-get update` and retry)")
    }

    /// The roots and their dependencies this machine lacks.
    fn resolve(&self) -> Result<Vec<(String, String)>> {
        let installed = installed_packages()?;
        let mut seen: BTreeSet<String> = self.roots.iter().map(|s| s.to_string()).collect();
        let mut level: Vec<String> = seen.iter().cloned().collect();
        let mut packages = Vec::new();
        // One `apt-cache` call per level of the dependency tree: each call
        // reads all the package lists, which takes most of a second.
        while !level.is_empty() {
            let mut stanzas = show(&level)?;
            let mut next = Vec::new();
            for name in level {
                let Some(stanza) = stanzas.remove(&name) else {
                    if self.roots.contains(&name.as_str()) {
                        bail!("the package lists have no `{name}`");
                    }
                    eprintln!("note: `{name}` is virtual or unknown; not downloading it");
                    continue;
                };
                for alternatives in &stanza.depends {
                    let satisfied = alternatives.iter().any(|(dep, exact)| {
                        installed
                            .get(dep)
                            .is_some_and(|have| exact.as_ref().is_none_or(|want| want == have))
                    });
                    let wanted = alternatives
                        .iter()
                        .find(|(dep, _)| !self.not_needed.contains(&dep.as_str()));
                    if let (false, Some((dep, _))) = (satisfied, wanted) {
                        if seen.insert(dep.clone()) {
                            next.push(dep.clone());
                        }
                    }
                }
                packages.push((name, stanza.version));
            }
            level = next;
        }
        Ok(packages)
    }
}

/// Installed packages and their versions.
fn installed_packages() -> Result<HashMap<String, String>> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f", "${Package} ${Version} ${Status}\n"])
        .output()
        .context("running dpkg-query")?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|line| line.ends_with(" installed"))
        .filter_map(|line| {
            let mut words = line.split(' ');
            Some((words.next()?.to_owned(), words.next()?.to_owned()))
        })
        .collect())
}

/// The candidate version and dependencies of each of `names` that the
/// package lists have (purely virtual packages have none).
fn show(names: &[String]) -> Result<HashMap<String, Stanza>> {
    let out = Command::new("apt-cache")
        .args(["show", "--no-all-versions"])
        .args(names)
        .stderr(Stdio::null())
        .output()
        .context("running apt-cache")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut stanzas = HashMap::new();
    for stanza in text.split("\n\n") {
        let field = |key: &str| {
            stanza
                .lines()
                .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
                .map(str::trim)
        };
        let (Some(name), Some(version)) = (field("Package"), field("Version")) else {
            continue;
        };
        let mut depends = Vec::new();
        for key in ["Pre-Depends", "Depends"] {
            for entry in field(key).unwrap_or_default().split(',') {
                let alternatives: Vec<_> = entry
                    .split('|')
                    .filter_map(|alt| parse_relation(alt.trim()))
                    .collect();
                if !alternatives.is_empty() {
                    depends.push(alternatives);
                }
            }
        }
        stanzas.insert(
            name.to_owned(),
            Stanza {
                version: version.to_owned(),
                depends,
            },
        );
    }
    Ok(stanzas)
}

/// `libfoo:any (= 1.2)` → `("libfoo", Some("1.2"))`; other relations than
/// `=` are taken as satisfied by any installed version.
fn parse_relation(relation: &str) -> Option<(String, Option<String>)> {
    let (name, constraint) = match relation.split_once('(') {
        Some((name, rest)) => (name.trim(), Some(rest.trim_end_matches(')').trim())),
        None => (relation, None),
    };
    let name = name.split(':').next()?.trim();
    if name.is_empty() {
        return None;
    }
    let exact = constraint
        .and_then(|c| c.strip_prefix('='))
        .map(|v| v.trim().to_owned());
    Some((name.to_owned(), exact))
}

/// Run a command with inherited output; an error names it.
pub fn checked(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {:?}", cmd.get_program()))?;
    if !status.success() {
        bail!("{} failed ({status})", crate::process::describe(cmd));
    }
    Ok(())
}

/// The first `tool` on `PATH`.
pub fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|candidate| candidate.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relations_parse() {
        assert_eq!(
            parse_relation("libstd-rust-web-dev (= 1.85.0+dfsg3-1~deb12u3)"),
            Some((
                "libstd-rust-web-dev".to_owned(),
                Some("1.85.0+dfsg3-1~deb12u3".to_owned())
            ))
        );
        assert_eq!(
            parse_relation("libc6 (>= 2.34)"),
            Some(("libc6".to_owned(), None))
        );
        assert_eq!(
            parse_relation("python3:any"),
            Some(("python3".to_owned(), None))
        );
        assert_eq!(parse_relation(""), None);
    }
}
