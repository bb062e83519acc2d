//! wasmonkey's build entry point, run as `cargo xtask <command>`.
//!
//! * `plugins` — set up the guest toolchain if needed, build the strategy
//!   plugins (`plugins/`) and the test-only plugins (`tests/plugins/`) for
//!   `wasm32-unknown-unknown`, turn each core module into a component and put
//!   it with its manifest in `target/plugins/` or `target/test-plugins/`.
//!   With `--all`, `polyglot` too.
//! * `polyglot` — set up the Python, JavaScript, C and Zig toolchains if
//!   needed and build the reference strategy in each language
//!   (`examples/plugins/`) into `target/example-plugins/`, and the test-only
//!   plugins in those languages into `target/polyglot-test-plugins/`.
//! * `build-plugin DIR` — build one plugin project, in any of the five
//!   languages (as `wasmonkey new` makes them), into `DIR/dist/`.
//! * `demo` — `plugins`, then run the example configuration with `--execute`,
//!   writing its HTML report to `target/demo-report.html`.
//! * `test` — `plugins --all`, then `cargo test --workspace` (extra arguments
//!   are passed to `cargo test`).
//! * `ci` — the trimmed EC2 client's check, formatting and clippy checks,
//!   then what `test` does.
//! * `toolchain` — only set up the guest toolchain and say which one is used;
//!   with `--all`, every language's.
//! * `vendor-ec2` — derive `vendor/aws-sdk-ec2`, the EC2 client trimmed to
//!   the operations wasmonkey calls, from the published crate; with
//!   `--check`, fail when the committed copy differs (`ci` runs this).

mod moto;
mod plugins;
mod polyglot;
mod system;
mod vendor;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use wasmonkey_plugin_build::guests;
use wasmonkey_plugin_build::process::{cargo, describe, run, seconds, step, ChildFailed};
use wasmonkey_plugin_build::toolchain;

const USAGE: &str = "\
usage: cargo xtask <command> [-- args]

commands:
  plugins [--all]     build the Rust plugins into target/plugins/ and target/test-plugins/
                      (--all: and what `polyglot` builds)
  polyglot            build the Python, JavaScript, C and Zig plugins into
                      target/example-plugins/ and target/polyglot-test-plugins/
  build-plugin DIR    build the plugin project in DIR (any language) into DIR/dist/
  demo                plugins, then `wasmonkey run --config examples/wasmonkey.toml --execute
                      --html target/demo-report.html [args]`
  test                plugins --all, moto, chromium, promtool, prometheus, postgresql,
                      docker-registry and skopeo (installed when missing), then
                      `cargo test --workspace [args]`
  ci                  vendor-ec2 --check, cargo fmt --check, cargo clippy -D warnings,
                      then what `test` does
  toolchain [--all]   set up the Rust guest toolchain (--all: every language's) and say which
  vendor-ec2 [--check]
                      derive vendor/aws-sdk-ec2 (EC2's client trimmed to the operations used)
                      from the published crate (--check: fail if the committed copy differs)

environment:
  WASMONKEY_GUEST_TOOLCHAIN=rustup|debian   force a Rust guest toolchain route
  WASI_SDK_PATH=DIR                          build C plugins with this wasi-sdk
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = args.split_first() else {
        eprint!("{USAGE}");
        return ExitCode::from(2);
    };
    // `cargo xtask test -- -p wasmonkey -- --nocapture` and `cargo xtask test
    // -p wasmonkey` both hand `-p wasmonkey …` on to `cargo test`.
    let rest = match rest.first().map(String::as_str) {
        Some("--") => &rest[1..],
        _ => rest,
    };
    let check_only = matches!(rest, [flag] if flag == "--check");
    let all = match (command.as_str(), rest) {
        ("plugins" | "toolchain", []) => false,
        ("plugins" | "toolchain", [flag]) if flag == "--all" => true,
        ("plugins" | "toolchain", _) => {
            eprint!("`{command}` takes no arguments but --all\n\n{USAGE}");
            return ExitCode::from(2);
        }
        ("polyglot", [_, ..]) => {
            eprint!("`polyglot` takes no arguments\n\n{USAGE}");
            return ExitCode::from(2);
        }
        ("vendor-ec2", []) => false,
        ("vendor-ec2", _) if check_only => false,
        ("vendor-ec2", _) => {
            eprint!("`vendor-ec2` takes no arguments but --check\n\n{USAGE}");
            return ExitCode::from(2);
        }
        ("build-plugin", [_]) => false,
        ("build-plugin", _) => {
            eprint!("`build-plugin` takes one argument: the project's directory\n\n{USAGE}");
            return ExitCode::from(2);
        }
        _ => false,
    };
    let started = Instant::now();
    let result = match command.as_str() {
        "plugins" if all => all_plugins_step(),
        "plugins" => plugins_step(),
        "polyglot" => polyglot_step(),
        "build-plugin" => build_plugin(&rest[0]),
        "demo" => demo(rest),
        "test" => test(rest),
        "ci" => ci(rest),
        "vendor-ec2" => vendor_ec2(check_only),
        "toolchain" if all => toolchains_all(),
        "toolchain" => toolchain_only(),
        "help" | "-h" | "--help" => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        other => {
            eprint!("unknown command `{other}`\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => {
            eprintln!(
                "xtask {command}: done in {}",
                seconds(started.elapsed().as_secs_f64())
            );
            ExitCode::SUCCESS
        }
        Err(err) => {
            // A child that failed has already printed why; pass its exit code on.
            if let Some(failed) = err.downcast_ref::<ChildFailed>() {
                eprintln!("xtask {command}: {failed}");
                return ExitCode::from(failed.code);
            }
            eprintln!("xtask {command}: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn plugins_step() -> Result<()> {
    let root = repo_root()?;
    step("plugins", || plugins::build(&root))
}

fn polyglot_step() -> Result<()> {
    let root = repo_root()?;
    step("polyglot plugins", || polyglot::build_all(&root))
}

fn all_plugins_step() -> Result<()> {
    plugins_step()?;
    polyglot_step()
}

fn build_plugin(dir: &str) -> Result<()> {
    let root = repo_root()?;
    // Relative to where the user is, not to the repository.
    let dir = std::env::current_dir()
        .context("reading the current directory")?
        .join(dir);
    let built = polyglot::build_one(&root, &dir)?;
    println!("{}", built.display());
    Ok(())
}

fn vendor_ec2(check: bool) -> Result<()> {
    let root = repo_root()?;
    if check {
        step("vendor-ec2 --check", || vendor::check(&root))
    } else {
        step("vendor-ec2", || vendor::update(&root))
    }
}

fn toolchains_all() -> Result<()> {
    toolchain_only()?;
    let root = repo_root()?;
    let mut guests = guests::Guests::new(&polyglot::toolchains(&root));
    step("toolchain (python)", || guests.python().map(|_| ()))?;
    step("toolchain (js)", || guests.js().map(|_| ()))?;
    let clang = step("toolchain (c)", || guests.clang().map(|c| c.what.clone()))?;
    println!("C: {clang}");
    let zig = step("toolchain (zig)", || guests.zig().map(|z| z.what.clone()))?;
    println!("Zig: {zig}");
    Ok(())
}

fn demo(args: &[String]) -> Result<()> {
    plugins_step()?;
    let root = repo_root()?;
    let mut cmd = cargo(&root);
    // The simulated fleet needs no AWS SDK: leaving it out saves most of a
    // cold build.
    cmd.args([
        "run",
        "--bin",
        "wasmonkey",
        "--no-default-features",
        "--",
        "run",
    ]);
    cmd.args(["--config", "examples/wasmonkey.toml", "--execute"]);
    // The report a person opens: the wasmonkey run prints where it is.
    cmd.args(["--html", "target/demo-report.html"]);
    cmd.args(args);
    step("demo", || run(&mut cmd))
}

fn test(args: &[String]) -> Result<()> {
    all_plugins_step()?;
    let root = repo_root()?;
    let mut cmd = cargo(&root);
    let moto = step("moto (AWS API emulator)", || moto::ensure(&root))?;
    cmd.env("WASMONKEY_MOTO", moto);
    let chromium = step("chromium (for the HTML report's browser test)", || {
        system::ensure(&system::CHROMIUM)
    })?;
    cmd.env("WASMONKEY_CHROMIUM", chromium);
    let promtool = step("promtool (for the metrics test)", || {
        system::ensure(&system::PROMTOOL)
    })?;
    cmd.env("WASMONKEY_PROMTOOL", promtool);
    let prometheus = step("prometheus (for the PromQL stop conditions' test)", || {
        system::ensure(&system::PROMETHEUS)
    })?;
    cmd.env("WASMONKEY_PROMETHEUS", prometheus);
    let faketime = step("libfaketime (for the daemon's clock-jump test)", || {
        system::libfaketime()
    })?;
    cmd.env("WASMONKEY_LIBFAKETIME", faketime);
    let postgres = step(
        "postgresql (for the shared state's tests)",
        system::postgres_bin,
    )?;
    cmd.env("WASMONKEY_POSTGRES_BIN", postgres);
    let registry = step(
        "docker-registry (an OCI registry, for plugin push and pull)",
        || system::ensure(&system::REGISTRY),
    )?;
    cmd.env("WASMONKEY_REGISTRY", registry);
    let skopeo = step("skopeo (copies what wasmonkey pushes and pulls)", || {
        system::ensure(&system::SKOPEO)
    })?;
    cmd.env("WASMONKEY_SKOPEO", skopeo);
    cmd.args(["test", "--workspace"]).args(args);
    step("cargo test", || run(&mut cmd))?;
    if args.is_empty() {
        // The demo's build: the host without the AWS backend must build, and
        // say how to get the backend when a config asks for it.
        let mut lean = cargo(&root);
        lean.args(["test", "-p", "wasmonkey", "--no-default-features", "--lib"]);
        step("cargo test (without the aws feature)", || run(&mut lean))?;
    }
    Ok(())
}

fn ci(args: &[String]) -> Result<()> {
    let root = repo_root()?;
    step("vendor-ec2 --check", || vendor::check(&root))?;
    let mut fmt = cargo(&root);
    fmt.args(["fmt", "--all", "--", "--check"]);
    step("cargo fmt --check", || run(&mut fmt))?;
    // The guest workspaces are not members of the host workspace: check them
    // on their own, on the host target (their bindings compile there too).
    for workspace in plugins::WORKSPACES {
        let mut fmt = guest_cargo(&root, "fmt", workspace);
        fmt.args(["--all", "--", "--check"]);
        step(&format!("cargo fmt --check ({})", workspace.dir), || {
            run(&mut fmt)
        })?;
    }
    let mut clippy = cargo(&root);
    clippy.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]);
    step("cargo clippy", || run(&mut clippy))?;
    let mut lean = cargo(&root);
    lean.args([
        "clippy",
        "-p",
        "wasmonkey",
        "--no-default-features",
        "--lib",
        "--bins",
        "--",
        "-D",
        "warnings",
    ]);
    step("cargo clippy (without the aws feature)", || run(&mut lean))?;
    for workspace in plugins::WORKSPACES {
        let mut clippy = guest_cargo(&root, "clippy", workspace);
        clippy.args([
            "--workspace",
            "--all-targets",
            "--target-dir",
            GUEST_CHECK_DIR,
        ]);
        clippy.args(["--", "-D", "warnings"]);
        step(&format!("cargo clippy ({})", workspace.dir), || {
            run(&mut clippy)
        })?;
    }
    let mut unit = guest_cargo(&root, "test", &plugins::WORKSPACES[0]);
    unit.args(["--workspace", "--target-dir", GUEST_CHECK_DIR]);
    step(
        &format!("cargo test ({})", plugins::WORKSPACES[0].dir),
        || run(&mut unit),
    )?;
    test(args)
}

/// Where the guest crates are checked and unit-tested for the host target.
const GUEST_CHECK_DIR: &str = "target/guest-check";

/// `cargo SUBCOMMAND --manifest-path WORKSPACE/Cargo.toml`.
fn guest_cargo(root: &Path, subcommand: &str, workspace: &plugins::Workspace) -> Command {
    let mut cmd = cargo(root);
    cmd.arg(subcommand)
        .arg("--manifest-path")
        .arg(root.join(workspace.dir).join("Cargo.toml"));
    cmd
}

fn toolchain_only() -> Result<()> {
    let root = repo_root()?;
    let toolchain = step("toolchain", || {
        toolchain::guest_toolchain(&polyglot::toolchains(&root), &root)
    })?;
    println!("{}", toolchain.describe());
    Ok(())
}

/// The repository root: the parent of this crate's directory.
fn repo_root() -> Result<PathBuf> {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    let root = manifest_dir
        .parent()
        .context("xtask's manifest directory has no parent")?;
    if !root.join("wit").is_dir() {
        bail!(
            "{} does not look like the wasmonkey repository (no wit/)",
            root.display()
        );
    }
    Ok(root.to_path_buf())
}
