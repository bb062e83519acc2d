//! Loading a plugin directory: bad files are reported with their path and
//! reason while the good ones load; pins are enforced; compiled code and
//! metadata() answers are cached.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmonkey::limits::{LimitOverrides, LimitRules, Limits, METADATA_LIMITS};
use wasmonkey::plugins::Catalog;
use wasmonkey::sandbox::Sandbox;

use crate::support;

/// A plugin directory with a copy of classic-monkey (and its manifest).
fn directory_with_classic() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for file in ["classic-monkey.wasm", "classic-monkey.toml"] {
        std::fs::copy(support::plugin_dir().join(file), dir.path().join(file)).unwrap();
    }
    dir
}

fn sandbox() -> Sandbox {
    Sandbox::new(&support::cache_dir()).unwrap()
}

fn set_pin(dir: &Path, pin: &str) {
    let manifest = dir.join("classic-monkey.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("sha256"))
        .collect();
    std::fs::write(
        &manifest,
        format!("sha256 = \"{pin}\"\n{}\n", kept.join("\n")),
    )
    .unwrap();
}

#[tokio::test]
async fn bad_files_are_named_and_the_others_still_load() {
    let dir = directory_with_classic();
    std::fs::write(dir.path().join("garbage.wasm"), b"definitely not wasm").unwrap();
    // A valid, empty component: the wrong world.
    std::fs::write(dir.path().join("empty.wasm"), b"\0asm\x0d\x00\x01\x00").unwrap();
    // A real plugin under another name.
    std::fs::copy(
        dir.path().join("classic-monkey.wasm"),
        dir.path().join("impostor.wasm"),
    )
    .unwrap();
    let catalog = Catalog::scan(dir.path()).unwrap();
    let (loaded, failed) = catalog.load_all(&sandbox(), &LimitRules::default()).await;
    assert_eq!(
        loaded.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
        ["classic-monkey"]
    );
    let reason = |name: &str| -> String {
        let failure = failed
            .iter()
            .find(|f| f.path.ends_with(format!("{name}.wasm")))
            .unwrap_or_else(|| panic!("{name} did not fail: {failed:#?}"));
        failure.to_string()
    };
    let garbage = reason("garbage");
    assert!(
        garbage.contains("garbage.wasm") && garbage.contains("not a valid WebAssembly component"),
        "{garbage}"
    );
    let empty = reason("empty");
    assert!(
        empty.contains("empty.wasm") && empty.contains("strategy"),
        "{empty}"
    );
    let impostor = reason("impostor");
    assert!(
        impostor.contains("classic-monkey") && impostor.contains("impostor.wasm"),
        "{impostor}"
    );
}

#[tokio::test]
async fn a_pin_mismatch_is_refused_and_a_matching_pin_loads() {
    let dir = directory_with_classic();
    set_pin(dir.path(), &"0".repeat(64));
    let catalog = Catalog::scan(dir.path()).unwrap();
    let failure = catalog
        .load(
            &sandbox(),
            "classic-monkey",
            &LimitRules::default(),
            &LimitOverrides::default(),
        )
        .await
        .err()
        .expect("a wrong pin must not load");
    let text = failure.to_string();
    assert!(
        text.contains("does not match the pin") && text.contains("classic-monkey.wasm"),
        "{text}"
    );

    let bytes = std::fs::read(dir.path().join("classic-monkey.wasm")).unwrap();
    let actual: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    set_pin(dir.path(), &actual);
    let plugin = catalog
        .load(
            &sandbox(),
            "classic-monkey",
            &LimitRules::default(),
            &LimitOverrides::default(),
        )
        .await
        .unwrap();
    assert_eq!(plugin.prepared.compiled.sha256, actual);
}

#[tokio::test]
async fn compiled_code_is_cached_by_content_and_engine() {
    let cache = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(support::plugin_dir().join("classic-monkey.wasm")).unwrap();
    let stack = Limits::default().stack_bytes();
    let first = Sandbox::new(cache.path())
        .unwrap()
        .compile(&bytes, stack)
        .unwrap();
    assert!(!first.from_cache);
    let second = Sandbox::new(cache.path())
        .unwrap()
        .compile(&bytes, stack)
        .unwrap();
    assert!(second.from_cache);
    assert_eq!(std::fs::read_dir(cache.path()).unwrap().count(), 1);
    // The stack cap is checked at run time, not compiled in: an engine with
    // another cap shares the entry (the engine's compatibility hash says so).
    let other = Sandbox::new(cache.path())
        .unwrap()
        .compile(&bytes, stack * 2)
        .unwrap();
    assert!(other.from_cache);
    assert_eq!(std::fs::read_dir(cache.path()).unwrap().count(), 1);
    // A corrupt entry is ignored and replaced, never trusted. Entries are
    // mapped, so it is replaced the only way the cache writes: whole, by
    // rename (and the components mapping the old one are gone first).
    drop((first, second, other));
    for entry in std::fs::read_dir(cache.path()).unwrap() {
        let entry = entry.unwrap().path();
        let temp = cache.path().join("corrupt.tmp");
        std::fs::write(&temp, b"corrupt").unwrap();
        std::fs::rename(&temp, &entry).unwrap();
    }
    let again = Sandbox::new(cache.path())
        .unwrap()
        .compile(&bytes, stack)
        .unwrap();
    assert!(!again.from_cache);
    assert!(
        Sandbox::new(cache.path())
            .unwrap()
            .compile(&bytes, stack)
            .unwrap()
            .from_cache
    );
}

#[tokio::test]
async fn a_plugin_file_is_hashed_again_once_it_changes() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let file = dir.path().join("plugin.wasm");
    let classic = std::fs::read(support::plugin_dir().join("classic-monkey.wasm")).unwrap();
    let rolling = std::fs::read(support::plugin_dir().join("rolling.wasm")).unwrap();
    let sha = |bytes: &[u8]| -> String {
        Sha256::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    let stack = Limits::default().stack_bytes();
    std::fs::write(&file, &classic).unwrap();
    // The hash of a file is only remembered once it has settled (2 s).
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let sandbox = Sandbox::new(&cache).unwrap();
    let first = sandbox.compile_file(&file, stack).unwrap();
    assert!(!first.from_cache);
    assert_eq!(first.sha256, sha(&classic));
    let known = sandbox.compile_file(&file, stack).unwrap();
    assert!(known.from_cache);
    assert_eq!(known.sha256, sha(&classic));
    assert!(cache.join("files").is_dir(), "the hash was not remembered");
    // Rewritten in place: the same path now holds other code.
    std::fs::write(&file, &rolling).unwrap();
    let changed = sandbox.compile_file(&file, stack).unwrap();
    assert!(!changed.from_cache);
    assert_eq!(changed.sha256, sha(&rolling));
    let prepared = sandbox.prepare(changed).unwrap();
    let metadata = sandbox
        .metadata(&prepared, &Limits::default())
        .await
        .unwrap();
    assert_eq!(metadata.name, "rolling");
}

/// The remembered metadata() answers in a cache directory.
fn answers(cache: &Path) -> Vec<PathBuf> {
    let mut answers: Vec<PathBuf> = std::fs::read_dir(cache.join("metadata"))
        .map(|entries| entries.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    answers.sort();
    answers
}

#[tokio::test]
async fn a_metadata_answer_is_remembered_per_component_and_limits() {
    let dir = directory_with_classic();
    let cache = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::new(cache.path()).unwrap();
    let catalog = Catalog::scan(dir.path()).unwrap();
    let rules = |fuel: u64| LimitRules {
        defaults: Limits {
            fuel,
            ..Limits::default()
        },
        ..LimitRules::default()
    };
    let load = |fuel: u64| {
        let (catalog, sandbox) = (&catalog, &sandbox);
        async move {
            catalog
                .load(
                    sandbox,
                    "classic-monkey",
                    &rules(fuel),
                    &LimitOverrides::default(),
                )
                .await
        }
    };
    // metadata() runs under at most METADATA_LIMITS, so the questions below
    // differ only within it.
    let fuel = METADATA_LIMITS.fuel;

    // An answer that breached its limits is not remembered.
    let starved = load(10).await.err().expect("10 fuel cannot answer");
    assert!(starved.reason.contains("fuel"), "{starved}");
    assert!(answers(cache.path()).is_empty());

    let asked = load(fuel).await.unwrap();
    let [answer] = answers(cache.path()).try_into().expect("one answer");
    // What is on disk is what the next load believes: no instance is asked.
    let mut record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&answer).unwrap()).unwrap();
    assert_eq!(
        record["metadata"]["description"],
        asked.metadata.description
    );
    record["metadata"]["description"] = "remembered".into();
    std::fs::write(&answer, serde_json::to_vec(&record).unwrap()).unwrap();
    assert_eq!(load(fuel).await.unwrap().metadata.description, "remembered");

    // Other limits are another question: the plugin itself answers.
    let other = load(fuel / 2).await.unwrap();
    assert_eq!(other.metadata.description, asked.metadata.description);
    assert_eq!(answers(cache.path()).len(), 2);

    // A damaged answer is asked again and replaced.
    std::fs::write(&answer, b"{\"question\":").unwrap();
    let again = load(fuel).await.unwrap();
    assert_eq!(again.metadata.description, asked.metadata.description);
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&answer).unwrap()).unwrap();
    assert_eq!(record["metadata"]["name"], "classic-monkey");

    // A remembered answer is checked like a fresh one: the same component
    // under another file name is still refused.
    std::fs::copy(
        dir.path().join("classic-monkey.wasm"),
        dir.path().join("impostor.wasm"),
    )
    .unwrap();
    let catalog = Catalog::scan(dir.path()).unwrap();
    let impostor = catalog
        .load(
            &sandbox,
            "impostor",
            &rules(fuel),
            &LimitOverrides::default(),
        )
        .await
        .err()
        .expect("an impostor loads");
    assert!(impostor.reason.contains("names the plugin"), "{impostor}");
}

#[tokio::test]
async fn shipped_plugins_need_no_wasi_and_describe_themselves() {
    let catalog = Catalog::scan(&support::plugin_dir()).unwrap();
    let (loaded, failed) = catalog.load_all(&sandbox(), &LimitRules::default()).await;
    assert!(failed.is_empty(), "{failed:#?}");
    let names: Vec<&str> = loaded.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        ["az-outage", "classic-monkey", "oldest-first", "rolling"]
    );
    for plugin in &loaded {
        assert!(
            !plugin.prepared.compiled.imports_wasi(),
            "{} imports WASI",
            plugin.name
        );
        assert!(!plugin.metadata.params.is_empty());
        let manifest = plugin
            .manifest
            .as_ref()
            .expect("shipped plugins have manifests");
        assert_eq!(manifest.version, plugin.metadata.version);
    }
}

#[tokio::test]
async fn hostile_directory_entries_are_reported_while_the_good_plugin_loads() {
    use std::os::unix::ffi::OsStrExt as _;
    let dir = directory_with_classic();
    let path = |name: &str| dir.path().join(name);
    // A FIFO would block a reader forever.
    let status = std::process::Command::new("mkfifo")
        .arg(path("fifo.wasm"))
        .status()
        .unwrap();
    assert!(status.success());
    // A device behind a link never ends.
    std::os::unix::fs::symlink("/dev/zero", path("zero.wasm")).unwrap();
    // 1 GiB of nothing.
    std::fs::File::create(path("sparse.wasm"))
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    std::fs::create_dir(path("folder.wasm")).unwrap();
    // A manifest that is a directory would lose its pin and grants.
    std::fs::copy(path("classic-monkey.wasm"), path("rolling.wasm")).unwrap();
    std::fs::create_dir(path("rolling.toml")).unwrap();
    let non_utf8 = std::ffi::OsStr::from_bytes(b"bad\xff.wasm");
    std::fs::copy(path("classic-monkey.wasm"), dir.path().join(non_utf8)).unwrap();
    // A Cyrillic о: a look-alike of classic-monkey that names itself so.
    std::fs::write(
        path("classic-m\u{43e}nkey.wasm"),
        crate::sandbox_limits::Wat::new("classic-m\u{43e}nkey").build(),
    )
    .unwrap();

    let catalog = Catalog::scan(dir.path()).unwrap();
    let (loaded, failed) = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        catalog.load_all(&sandbox(), &LimitRules::default()),
    )
    .await
    .expect("loading the directory is bounded");
    assert_eq!(
        loaded.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
        ["classic-monkey"]
    );
    // Every expectation is checked, and all that fail are listed at once.
    let reason = |file: &[u8]| -> String {
        failed
            .iter()
            .find(|f| f.path.file_name().is_some_and(|n| n.as_bytes() == file))
            .map(ToString::to_string)
            .unwrap_or_else(|| "not reported".into())
    };
    let expected: [(&[u8], &[&str]); 7] = [
        (b"fifo.wasm", &["not a regular file (a FIFO)"]),
        (b"zero.wasm", &["not a regular file (a character device)"]),
        (b"sparse.wasm", &["1073741824 bytes is larger than"]),
        (b"folder.wasm", &["not a regular file (a directory)"]),
        (
            b"rolling.wasm",
            &["rolling.toml", "not a regular file (a directory)"],
        ),
        (
            "classic-m\u{43e}nkey.wasm".as_bytes(),
            &["may only hold a-z, 0-9 and -"],
        ),
        (b"bad\xff.wasm", &["not valid UTF-8", "\\xFF"]),
    ];
    let wrong: Vec<String> = expected
        .iter()
        .filter_map(|(file, parts)| {
            let reason = reason(file);
            (!parts.iter().all(|part| reason.contains(part))).then(|| {
                format!(
                    "{}: expected {parts:?}, got {reason}",
                    String::from_utf8_lossy(file)
                )
            })
        })
        .collect();
    assert!(wrong.is_empty(), "{wrong:#?}");
    assert_eq!(failed.len(), 7, "{failed:#?}");
}

#[test]
fn two_processes_loading_one_new_component_compile_it_once() {
    // JavaScript's 12 MB component takes seconds to compile: long enough
    // for the second process to arrive while the first is at it.
    let plugins = tempfile::tempdir().unwrap();
    let built = crate::conformance::example_plugin_dir();
    for file in ["classic-monkey-js.wasm", "classic-monkey-js.toml"] {
        std::fs::copy(built.join(file), plugins.path().join(file)).unwrap();
    }
    let (_dir, config) = support::own_cache_config(plugins.path(), "fresh-cache");
    let inspect = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_wasmonkey"))
            .args(["plugins", "inspect", "classic-monkey-js", "--config"])
            .arg(&config)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (first, second) = (inspect(), inspect());
    let how: Vec<String> = [first, second]
        .into_iter()
        .map(|child| {
            let output = child.wait_with_output().unwrap();
            assert!(output.status.success());
            let text = String::from_utf8_lossy(&output.stdout).into_owned();
            let loaded = text
                .lines()
                .find(|l| l.starts_with("loaded:"))
                .unwrap_or_default();
            loaded
                .split('(')
                .nth(1)
                .unwrap_or_default()
                .trim_end_matches(')')
                .to_owned()
        })
        .collect();
    let mut sorted = how.clone();
    sorted.sort();
    assert_eq!(sorted, ["compiled cache", "compiled now"], "{how:?}");
}

#[test]
fn cache_prune_removes_what_went_unused_and_keeps_the_rest() {
    let (dir, config) = support::own_cache_config(&support::plugin_dir(), "cache");
    let listed = support::wasmonkey(&["plugins", "list"], &config);
    assert!(listed.status.success());
    let cache = dir.path().join("cache");
    let entries: Vec<PathBuf> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
        .collect();
    let count = entries.len();
    assert!(count >= 3, "{entries:?}");
    // One of them last used 40 days ago.
    let forty_days = std::time::Duration::from_secs(40 * 24 * 3600);
    std::fs::File::options()
        .append(true)
        .open(&entries[0])
        .unwrap()
        .set_modified(std::time::SystemTime::now() - forty_days)
        .unwrap();
    let shown = support::wasmonkey(&["cache"], &config);
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.contains(&format!("{count} compiled plugin(s)")),
        "{shown}"
    );
    let pruned = support::wasmonkey(&["cache", "prune", "--days", "30"], &config);
    let pruned = String::from_utf8_lossy(&pruned.stdout);
    assert!(
        pruned.starts_with("removed 1 compiled plugin(s)"),
        "{pruned}"
    );
    assert!(
        pruned.contains(&format!("{} compiled plugin(s)", count - 1)),
        "{pruned}"
    );
    assert!(!entries[0].exists());
    assert!(entries[1..].iter().all(|e| e.exists()));
}
