//! The files the host trusts must be the operator's: a compiled-code cache
//! only this user can change, and pins the operator holds, checked before
//! any plugin code runs.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::Path;
use std::process::{Command, Output};

use sha2::{Digest as _, Sha256};
use wasmonkey::plugins::Catalog;
use wasmonkey::sandbox::Sandbox;

use crate::sandbox_limits::{directory, Wat};
use crate::support::{self, wasmonkey, FLEET};

fn refusal(cache: &Path) -> String {
    match Sandbox::new(cache) {
        Ok(_) => panic!("{} was accepted as a cache", cache.display()),
        Err(err) => format!("{err:#}"),
    }
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn a_new_cache_is_private_to_the_user() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("deep").join("cache");
    Sandbox::new(&cache).unwrap();
    let mode = std::fs::metadata(&cache).unwrap().mode() & 0o777;
    assert_eq!(mode, 0o700, "{mode:o}");
}

#[test]
fn a_cache_others_may_write_to_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    std::fs::create_dir(&cache).unwrap();
    for mode in [0o777, 0o770, 0o702] {
        chmod(&cache, mode);
        let err = refusal(&cache);
        assert!(
            err.contains(&cache.display().to_string()) && err.contains("may be written by others"),
            "{err}"
        );
    }
    // Private again, it is accepted.
    chmod(&cache, 0o700);
    Sandbox::new(&cache).unwrap();
}

#[test]
fn a_cache_in_a_directory_others_may_change_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    let cache = shared.join("cache");
    std::fs::create_dir(&cache).unwrap();
    chmod(&cache, 0o700);
    // World-writable without the sticky bit: anyone may rename ours away.
    chmod(&shared, 0o777);
    assert!(refusal(&cache).contains("which others may change"));
    // With the sticky bit (as /tmp has), only the owner may.
    chmod(&shared, 0o1777);
    Sandbox::new(&cache).unwrap();
}

#[test]
fn a_cache_of_another_user_is_refused() {
    // SAFETY: geteuid has no preconditions.
    #[allow(unsafe_code, reason = "std has no geteuid")]
    let me = unsafe { libc::geteuid() };
    let dir = tempfile::tempdir().unwrap();
    let theirs = if me == 0 {
        let cache = dir.path().join("cache");
        std::fs::create_dir(&cache).unwrap();
        chmod(&cache, 0o700);
        std::os::unix::fs::chown(&cache, Some(65534), Some(65534)).unwrap();
        cache
    } else {
        // Not root: a directory root owns is someone else's.
        Path::new("/usr/share").to_owned()
    };
    let err = refusal(&theirs);
    assert!(err.contains("belongs to user"), "{err}");
}

/// `wasmonkey ARGS` with `config`, without HOME or XDG_CACHE_HOME.
fn homeless(args: &[&str], config: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wasmonkey"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env_remove("HOME")
        .env_remove("XDG_CACHE_HOME")
        .env("WASMONKEY_LOG", "warn")
        .output()
        .unwrap()
}

#[test]
fn without_a_home_there_is_no_cache_and_never_a_shared_one() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("fleet.toml"), FLEET).unwrap();
    let config = dir.path().join("wasmonkey.toml");
    std::fs::write(
        &config,
        format!(
            "[backend]\nkind = \"sim\"\nfleet = \"fleet.toml\"\n[plugins]\ndir = {:?}\n\
             [[experiment]]\nplugin = \"classic-monkey\"\n",
            support::plugin_dir().display().to_string()
        ),
    )
    .unwrap();
    for args in [&["plugins", "list"][..], &["run"]] {
        let output = homeless(args, &config);
        assert!(!output.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("plugins.cache_dir") && stderr.contains("XDG_CACHE_HOME"),
            "{stderr}"
        );
    }
}

fn sha256_of(path: &Path) -> String {
    Sha256::digest(std::fs::read(path).unwrap())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn an_operator_pin_is_checked_before_any_plugin_code_runs() {
    // metadata() of this plugin loops: were it run before the pin check, the
    // failure would be a fuel breach, not the pin.
    let spin = "(loop $forever (br $forever))";
    let plugins = directory(&[("loops", Wat::new("loops").metadata(spin).build())]);
    let pins = [("loops".to_owned(), "0".repeat(64))].into();
    let catalog = Catalog::scan(plugins.path()).unwrap().with_pins(pins);
    let sandbox = Sandbox::new(&support::cache_dir()).unwrap();
    let failure = support::load(&catalog, &sandbox, "loops")
        .await
        .err()
        .expect("a wrong pin must not load");
    let text = failure.to_string();
    assert!(text.contains("does not match the operator's pin"), "{text}");
}

#[tokio::test]
async fn the_operator_pin_wins_over_a_manifest_rewritten_beside_the_component() {
    let dir = tempfile::tempdir().unwrap();
    for file in ["classic-monkey.wasm", "classic-monkey.toml"] {
        std::fs::copy(support::plugin_dir().join(file), dir.path().join(file)).unwrap();
    }
    let wasm = dir.path().join("classic-monkey.wasm");
    let actual = sha256_of(&wasm);
    // Whoever replaced the component also pinned it in its own manifest.
    let manifest = dir.path().join("classic-monkey.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, format!("sha256 = \"{actual}\"\n{text}")).unwrap();
    let sandbox = Sandbox::new(&support::cache_dir()).unwrap();
    let load = |pin: String| {
        let catalog = Catalog::scan(dir.path())
            .unwrap()
            .with_pins([("classic-monkey".to_owned(), pin)].into());
        let sandbox = &sandbox;
        async move {
            support::load(&catalog, sandbox, "classic-monkey")
                .await
                .map(|p| p.prepared.compiled.sha256.clone())
                .map_err(|f| f.to_string())
        }
    };
    let refused = load("ab".repeat(32)).await.unwrap_err();
    assert!(refused.contains("operator's pin"), "{refused}");
    assert_eq!(load(actual.clone()).await, Ok(actual));
}

fn pinned_setup(plugins_table: &str, experiment: &str) -> support::Setup {
    let setup = support::setup(FLEET, &support::plugin_dir(), "");
    let text = std::fs::read_to_string(&setup.config).unwrap();
    let text = text.replace("[plugins]\n", &format!("[plugins]\n{plugins_table}"));
    std::fs::write(&setup.config, format!("{text}{experiment}")).unwrap();
    setup
}

#[test]
fn require_pins_refuses_unpinned_plugins_under_execute_and_list_shows_pins() {
    let classic = sha256_of(&support::plugin_dir().join("classic-monkey.wasm"));
    let experiment = "[[experiment]]\nplugin = \"classic-monkey\"\ngrants = [\"terminate\"]\n";
    let unpinned = pinned_setup("require_pins = true\n", experiment);
    let refused = wasmonkey(&["run", "--execute"], &unpinned.config);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains("require_pins") && stderr.contains("classic-monkey"),
        "{stderr}"
    );
    assert!(
        !unpinned.dir.path().join("journal").exists(),
        "a journal was started: something ran"
    );
    // A dry run still works unpinned.
    let dry = wasmonkey(&["run"], &unpinned.config);
    assert!(
        dry.status.success(),
        "{}",
        String::from_utf8_lossy(&dry.stderr)
    );

    let pinned = pinned_setup(
        &format!("require_pins = true\npins = {{ classic-monkey = \"{classic}\" }}\n"),
        experiment,
    );
    let ran = wasmonkey(&["run", "--execute"], &pinned.config);
    assert!(
        ran.status.success(),
        "{}",
        String::from_utf8_lossy(&ran.stderr)
    );

    let list = String::from_utf8_lossy(&wasmonkey(&["plugins", "list"], &pinned.config).stdout)
        .into_owned();
    let state = |name: &str| {
        list.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(2))
            .map(str::to_owned)
    };
    assert_eq!(state("classic-monkey").as_deref(), Some("pinned"), "{list}");
    assert_eq!(state("rolling").as_deref(), Some("unpinned"), "{list}");
}

#[test]
fn bad_or_conflicting_pins_are_config_errors_naming_the_field() {
    let classic = sha256_of(&support::plugin_dir().join("classic-monkey.wasm"));
    for (table, experiment, field) in [
        (
            "pins = { classic-monkey = \"abc\" }\n".to_owned(),
            String::new(),
            "plugins.pins.classic-monkey",
        ),
        (
            format!("pins = {{ classic-monkey = \"{classic}\" }}\n"),
            format!(
                "[[experiment]]\nplugin = \"classic-monkey\"\nsha256 = \"{}\"\n",
                "0".repeat(64)
            ),
            "experiment 1 sha256",
        ),
    ] {
        let setup = pinned_setup(&table, &experiment);
        let output = wasmonkey(&["plugins", "list"], &setup.config);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success());
        assert!(
            stderr.contains("wasmonkey.toml") && stderr.contains(field),
            "{stderr}"
        );
    }
}
