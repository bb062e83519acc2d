//! Programs the tests drive from Debian's packages: Chromium (the HTML
//! report is checked in a real browser), promtool (the metrics are
//! checked by Prometheus's own linter), the Prometheus server (PromQL stop
//! conditions query it), libfaketime (the daemon's clock is jumped under
//! it), PostgreSQL (the shared state several daemons keep), and an OCI
//! registry with skopeo (plugins pushed, pulled and copied by a tool we did
//! not write). Installed with apt-get when missing, as root; anyone else is
//! told the one command to run.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::moto::check;

/// A program the tests need and the Debian packages that bring it.
pub struct Needed {
    pub program: &'static str,
    pub packages: &'static [&'static str],
}

/// Chromium for the browser tests, with a font so screenshots show text.
pub const CHROMIUM: Needed = Needed {
    program: "chromium",
    packages: &["chromium", "fonts-dejavu-core"],
};

/// promtool, which ships with Debian's Prometheus server package.
pub const PROMTOOL: Needed = Needed {
    program: "promtool",
    packages: &["prometheus"],
};

/// The Prometheus server, for the PromQL stop conditions and steady state.
pub const PROMETHEUS: Needed = Needed {
    program: "prometheus",
    packages: &["prometheus"],
};

/// libfaketime, which moves the system clock a process sees.
pub const FAKETIME: Needed = Needed {
    program: "faketime",
    packages: &["faketime"],
};

/// The preloadable libfaketime the `faketime` package brings, wherever the
/// machine's multiarch directory puts it.
pub fn libfaketime() -> Result<PathBuf> {
    ensure(&FAKETIME)?;
    let found = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("faketime").join("libfaketime.so.1"))
        .find(|lib| lib.is_file());
    found.context("`faketime` is installed but no /usr/lib/*/faketime/libfaketime.so.1 was found")
}

/// The OCI registry (CNCF distribution 2.8), for plugin push and pull. The
/// tests start it with a config of their own: the package's asks for a
/// password file, and its service is never started here.
pub const REGISTRY: Needed = Needed {
    program: "docker-registry",
    packages: &["docker-registry"],
};

/// skopeo, which copies images and artifacts between registries and
/// directories: the tool nobody here wrote that reads what wasmonkey
/// pushes, and pushes what wasmonkey pulls.
pub const SKOPEO: Needed = Needed {
    program: "skopeo",
    packages: &["skopeo"],
};

/// PostgreSQL's server programs (`initdb`, `postgres`), for the shared
/// state's tests. Debian keeps them off PATH, in
/// /usr/lib/postgresql/VERSION/bin; the tests run them as the `postgres`
/// user the package creates (the server refuses root).
pub const POSTGRESQL: Needed = Needed {
    program: "postgres",
    packages: &["postgresql"],
};

/// The directory of Debian's PostgreSQL server programs (the newest
/// version's), installing the package first if it is missing.
pub fn postgres_bin() -> Result<PathBuf> {
    let server = ensure_found(&POSTGRESQL, debian_postgres)?;
    server
        .parent()
        .map(Path::to_path_buf)
        .context("the PostgreSQL server has no directory")
}

/// `/usr/lib/postgresql/VERSION/bin/postgres`, the highest VERSION first.
fn debian_postgres(program: &str) -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path().join("bin").join(program)))
        })
        .filter(|(_, path)| is_executable(path))
        .collect();
    versions.sort();
    versions.pop().map(|(_, path)| path)
}

/// The program's path, installing its packages first if it is missing.
pub fn ensure(needed: &Needed) -> Result<PathBuf> {
    ensure_found(needed, find)
}

/// The program's path as `locate` finds it, installing its packages first
/// if it is missing.
fn ensure_found(needed: &Needed, locate: fn(&str) -> Option<PathBuf>) -> Result<PathBuf> {
    if let Some(found) = locate(needed.program) {
        return Ok(found);
    }
    let command = format!(
        "apt-get install -y --no-install-recommends {}",
        needed.packages.join(" ")
    );
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.trim_ascii() == b"0");
    if !root {
        bail!(
            "the tests need `{}`: install it with `sudo {command}` and run again",
            needed.program
        );
    }
    eprintln!("    installing {} with apt-get", needed.packages.join(", "));
    // The package lists of a fresh machine may be stale or absent: one
    // update, then the install once more.
    if install(needed.packages).is_err() {
        check(
            Command::new("apt-get").args(["update", "-q"]),
            "apt-get update",
        )?;
        install(needed.packages)?;
    }
    locate(needed.program).with_context(|| {
        format!(
            "`{command}` succeeded but `{}` is still not found",
            needed.program
        )
    })
}

fn install(packages: &[&str]) -> Result<()> {
    let mut cmd = Command::new("apt-get");
    cmd.args(["install", "-y", "-q", "--no-install-recommends"])
        .args(packages)
        .env("DEBIAN_FRONTEND", "noninteractive");
    check(&mut cmd, "apt-get install")
}

/// The program on PATH.
fn find(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
