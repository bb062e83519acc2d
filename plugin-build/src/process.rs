//! Running the language tools: their output streams through, a failure
//! says which command failed with its exit code.

use std::ffi::OsString;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result};

/// A child process that exited unsuccessfully; its output was streamed.
#[derive(Debug)]
pub struct ChildFailed {
    /// The command, as [`describe`] shows it.
    pub what: String,
    /// Its exit code (1 for a signal).
    pub code: u8,
}

impl std::fmt::Display for ChildFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}` failed (exit code {})", self.what, self.code)
    }
}

impl std::error::Error for ChildFailed {}

/// Run `cmd`, its output streamed; an unsuccessful exit is a [`ChildFailed`].
pub fn run(cmd: &mut Command) -> Result<()> {
    let what = describe(cmd);
    let status = cmd
        .status()
        .with_context(|| format!("cannot start `{what}`"))?;
    if status.success() {
        return Ok(());
    }
    // A signal has no code; 1 is the conventional failure then.
    let code = status
        .code()
        .and_then(|c| u8::try_from(c).ok())
        .filter(|&c| c != 0)
        .unwrap_or(1);
    Err(ChildFailed { what, code }.into())
}

/// `program arg…` for messages.
pub fn describe(cmd: &Command) -> String {
    let program = Path::new(cmd.get_program())
        .file_name()
        .unwrap_or(cmd.get_program())
        .to_string_lossy()
        .into_owned();
    std::iter::once(program)
        .chain(cmd.get_args().map(|a| a.to_string_lossy().into_owned()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `cargo` (the one running us, if any) in `dir`.
pub fn cargo(dir: &Path) -> Command {
    let program = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut cmd = Command::new(program);
    cmd.current_dir(dir);
    // `cargo run` gave this process its package's variables. Build scripts
    // that watch one (ring watches CARGO_MANIFEST_DIR) would see it change
    // between `cargo xtask test` and a plain `cargo test`, and every crate
    // above them would be rebuilt (five minutes here) each time.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        let from_cargo_run = name.starts_with("CARGO_PKG_")
            || matches!(
                &*name,
                "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_BIN_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
                    | "CARGO_RUSTC_CURRENT_DIR"
            );
        if from_cargo_run {
            cmd.env_remove(&*name);
        }
    }
    cmd
}

/// Run `f` as a named step, saying on stderr when it starts and how it
/// ended.
pub fn step<T>(name: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    eprintln!("==> {name}");
    let started = Instant::now();
    let result = f();
    let took = seconds(started.elapsed().as_secs_f64());
    match &result {
        Ok(_) => eprintln!("<== {name}: ok in {took}"),
        Err(_) => eprintln!("<== {name}: FAILED after {took}"),
    }
    result
}

/// Seconds as the steps show them.
pub fn seconds(secs: f64) -> String {
    format!("{secs:.1} s")
}
