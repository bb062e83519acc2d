//! moto, the AWS API emulator the aws backend's tests run against: from
//! PyPI, in a virtualenv under `.toolchains/moto`, set up once.
//!
//! The `READY` marker is written last, after `moto_server` has answered, so
//! an interrupted set-up never looks ready: the next run starts it afresh.
//! (A virtualenv records its own path, so it cannot be built elsewhere and
//! renamed into place.)

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// The version the tests were written against.
const REQUIREMENT: &str = "moto[server]==5.2.5";

/// The `moto_server` executable, installing it first if needed.
pub fn ensure(root: &Path) -> Result<PathBuf> {
    let dir = root.join(".toolchains").join("moto");
    let marker = dir.join("READY");
    let server = dir.join("bin").join("moto_server");
    if std::fs::read_to_string(&marker).is_ok_and(|m| m.trim() == REQUIREMENT) && server.is_file() {
        return Ok(server);
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned());
    eprintln!("    installing {REQUIREMENT} into {}", dir.display());
    check(
        Command::new(&python).args(["-m", "venv"]).arg(&dir),
        "creating a Python virtualenv (is python3 with venv installed?)",
    )?;
    check(
        Command::new(dir.join("bin").join("python")).args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            REQUIREMENT,
        ]),
        "installing moto from PyPI",
    )?;
    check(Command::new(&server).arg("--help"), "checking moto_server")?;
    std::fs::write(&marker, REQUIREMENT).context("marking moto ready")?;
    Ok(server)
}

/// Run `cmd`; on failure, say `what` failed with its stderr.
pub(crate) fn check(cmd: &mut Command, what: &str) -> Result<()> {
    let output = cmd
        .output()
        .with_context(|| format!("{what}: cannot start {:?}", cmd.get_program()))?;
    if !output.status.success() {
        bail!(
            "{what} failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}
