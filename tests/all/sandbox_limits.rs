//! The store's limits cover the whole plugin: the sum of all its memories and
//! tables, the counts of instances, memories and tables, and `metadata()` and
//! start functions under small limits of their own. The plugins are
//! hand-written core modules (WAT) made into strategy components here, since
//! no compiler emits several memories on purpose.

use std::path::Path;
use std::time::Duration;

use wasmonkey::limits::{LimitRules, Limits, METADATA_LIMITS};
use wasmonkey::plugins::Catalog;
use wasmonkey::sandbox::Sandbox;

use crate::support::{self, FLEET, RULES};

/// The strategy export names a core module must use.
const METADATA: &str = "wasmonkey:chaos/strategy@0.1.0#metadata";
const RUN: &str = "wasmonkey:chaos/strategy@0.1.0#run";

/// A little-endian `i32` as a WAT data string.
fn le(value: u32) -> String {
    value
        .to_le_bytes()
        .iter()
        .map(|b| format!("\\{b:02x}"))
        .collect()
}

/// A strategy component from a hand-written core module: a plugin named
/// `name` whose `run` answers an empty outcome and whose `metadata` answers
/// its name, after running whatever bodies the test gives them.
#[derive(Default)]
pub struct Wat {
    name: String,
    imports: String,
    fields: String,
    run: String,
    metadata: String,
    version: Option<String>,
    description: Option<String>,
}

impl Wat {
    pub fn new(name: &str) -> Wat {
        Wat {
            name: name.to_owned(),
            ..Wat::default()
        }
    }

    /// Core imports, from the contract's interfaces.
    pub fn imports(mut self, imports: &str) -> Wat {
        self.imports = imports.to_owned();
        self
    }

    /// More module fields: memories, tables, functions, a start function.
    pub fn fields(mut self, fields: &str) -> Wat {
        self.fields = fields.to_owned();
        self
    }

    /// What `run` does before it answers.
    pub fn run(mut self, body: &str) -> Wat {
        self.run = body.to_owned();
        self
    }

    /// What `metadata` does before it answers.
    pub fn metadata(mut self, body: &str) -> Wat {
        self.metadata = body.to_owned();
        self
    }

    /// The version `metadata` answers (default `0.1.0`).
    pub fn version(mut self, version: &str) -> Wat {
        self.version = Some(version.to_owned());
        self
    }

    /// The description `metadata` answers.
    pub fn description(mut self, description: &str) -> Wat {
        self.description = Some(description.to_owned());
        self
    }

    /// The component's bytes.
    pub fn build(&self) -> Vec<u8> {
        let Wat {
            name,
            imports,
            fields,
            run,
            metadata,
            version,
            description,
        } = self;
        // plugin-metadata at 1024: name, version, description (ptr, len
        // each), params (ptr 0, len 0); the strings at 1100. An ok(outcome)
        // with no victims and an empty summary is all zeros, at 2048.
        let version = version.as_deref().unwrap_or("0.1.0");
        let description = description.as_deref().unwrap_or("hand-written test plugin");
        let (name_at, version_at, description_at) = (1100, 1200, 1300);
        let record = [
            name_at,
            name.len() as u32,
            version_at,
            version.len() as u32,
            description_at,
            description.len() as u32,
            0,
            0,
        ]
        .map(le)
        .concat();
        let wat = format!(
            r#"(module
  {imports}
  (memory (export "memory") 1)
  {fields}
  (global $heap (mut i32) (i32.const 4096))
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
    (local $at i32)
    (local.set $at (global.get $heap))
    (global.set $heap (i32.add (global.get $heap)
      (i32.and (i32.add (local.get 3) (i32.const 7)) (i32.const -8))))
    (local.get $at))
  (func (export "{METADATA}") (result i32) {metadata} (i32.const 1024))
  (func (export "{RUN}") (param i32 i32) (result i32) {run} (i32.const 2048))
  (data (i32.const 1024) "{record}")
  (data (i32.const {name_at}) "{name}")
  (data (i32.const {version_at}) "{}")
  (data (i32.const {description_at}) "{}")
)"#,
            data(version),
            data(description),
        );
        let mut module = wat::parse_str(&wat).expect("the test's WAT assembles");
        let mut resolve = wit_parser::Resolve::default();
        let (package, _) = resolve
            .push_dir(support::root().join("wit").join("v0.1.0"))
            .expect("the contract parses");
        let world = resolve
            .select_world(&[package], Some("strategy-plugin"))
            .expect("the contract has its world");
        wit_component::embed_component_metadata(
            &mut module,
            &resolve,
            world,
            wit_component::StringEncoding::UTF8,
        )
        .expect("embed the world");
        wit_component::ComponentEncoder::default()
            .module(&module)
            .expect("a module the encoder takes")
            .validate(true)
            .encode()
            .expect("a component")
    }
}

/// Bytes as a WAT data string, every byte escaped.
fn data(text: &str) -> String {
    text.bytes().map(|b| format!("\\{b:02x}")).collect()
}

/// A plugin directory holding each `(name, component)`.
pub fn directory(plugins: &[(&str, Vec<u8>)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in plugins {
        std::fs::write(dir.path().join(format!("{name}.wasm")), bytes).unwrap();
    }
    dir
}

/// Run plugin `name` of `dir` once under the experiment `limits`; its error.
async fn run_error(dir: &Path, name: &str, limits: &str) -> Option<String> {
    let body = format!("{RULES}\n[[experiment]]\nplugin = \"{name}\"\nlimits = {{ {limits} }}\n");
    let setup = support::setup(FLEET, dir, &body);
    support::plugin_failure(&setup, 1, false).await
}

/// `count` memories (`$m1`…) of one page, each grown by `pages` in `run`.
fn grown_memories(count: usize, pages: u32) -> (String, String) {
    let fields = (1..=count)
        .map(|n| format!("(memory $m{n} 1)"))
        .collect::<String>();
    let run = (1..=count)
        .map(|n| format!("(drop (memory.grow $m{n} (i32.const {pages})))"))
        .collect::<String>();
    (fields, run)
}

#[tokio::test]
async fn the_memory_cap_covers_the_sum_of_all_memories() {
    // Four more memories of 8 MiB each: each is under the 16 MiB cap, their
    // sum is twice it.
    let (fields, run) = grown_memories(4, 128);
    let many = Wat::new("memories").fields(&fields).run(&run).build();
    // Two memories of 4 MiB fit in 16 MiB together.
    let (fields, run) = grown_memories(2, 64);
    let few = Wat::new("two-memories").fields(&fields).run(&run).build();
    let dir = directory(&[("memories", many), ("two-memories", few)]);
    let error = run_error(dir.path(), "memories", "memory_mib = 16")
        .await
        .expect("the memories' sum breaches the cap");
    assert!(
        error.contains("Memory limit breached (memory_mib)")
            && error.contains("the cap is 16777216 bytes for all of them"),
        "{error}"
    );
    assert_eq!(
        run_error(dir.path(), "two-memories", "memory_mib = 16").await,
        None
    );
}

#[tokio::test]
async fn tables_draw_on_the_same_budget() {
    // Four tables grown by a million entries each: 8 MiB each at 8 bytes an
    // entry, 32 MiB in all, under a 16 MiB cap.
    let fields = (1..=4)
        .map(|n| format!("(table $t{n} 1 funcref)"))
        .collect::<String>();
    let run = (1..=4)
        .map(|n| format!("(drop (table.grow $t{n} (ref.null func) (i32.const 1000000)))"))
        .collect::<String>();
    let dir = directory(&[(
        "tables",
        Wat::new("tables").fields(&fields).run(&run).build(),
    )]);
    let error = run_error(dir.path(), "tables", "memory_mib = 16")
        .await
        .expect("the tables breach the cap");
    assert!(
        error.contains("Memory limit breached (memory_mib)")
            && error.contains("a table would grow"),
        "{error}"
    );
}

#[tokio::test]
async fn counts_of_memories_and_tables_are_capped() {
    use wasmonkey::sandbox::budget::{MAX_MEMORIES, MAX_TABLES};
    // Empty memories and tables cost no bytes: only the counts stop them.
    let memories = (0..MAX_MEMORIES)
        .map(|n| format!("(memory $e{n} 0)"))
        .collect::<String>();
    let tables = (0..=MAX_TABLES)
        .map(|n| format!("(table $e{n} 0 funcref)"))
        .collect::<String>();
    let dir = directory(&[
        ("memories", Wat::new("memories").fields(&memories).build()),
        ("tables", Wat::new("tables").fields(&tables).build()),
    ]);
    let (loaded, failed) = Catalog::scan(dir.path())
        .unwrap()
        .load_all(&sandbox(), &LimitRules::default())
        .await;
    assert!(loaded.is_empty(), "loaded {:?}", names(&loaded));
    let reasons: Vec<String> = failed.iter().map(ToString::to_string).collect();
    // The main memory plus MAX_MEMORIES is one too many.
    assert!(
        reasons[0].contains("memories.wasm") && reasons[0].contains("memory count"),
        "{reasons:#?}"
    );
    assert!(
        reasons[1].contains("tables.wasm") && reasons[1].contains("table count"),
        "{reasons:#?}"
    );
}

fn sandbox() -> Sandbox {
    Sandbox::new(&support::cache_dir()).unwrap()
}

fn names(plugins: &[wasmonkey::plugins::Plugin]) -> Vec<&str> {
    plugins.iter().map(|p| p.name.as_str()).collect()
}

#[tokio::test]
async fn a_looping_metadata_or_start_function_is_cut_at_the_metadata_limits() {
    let spin = "(loop $spin (br $spin))";
    let dir = directory(&[
        ("loops", Wat::new("loops").metadata(spin).build()),
        (
            "starts-looping",
            Wat::new("starts-looping")
                .fields(&format!("(func $start {spin}) (start $start)"))
                .build(),
        ),
    ]);
    std::fs::copy(
        support::plugin_dir().join("classic-monkey.wasm"),
        dir.path().join("classic-monkey.wasm"),
    )
    .unwrap();
    // Manifests asking for the ceilings change nothing.
    for name in ["loops", "starts-looping"] {
        std::fs::write(
            dir.path().join(format!("{name}.toml")),
            format!(
                "name = \"{name}\"\nversion = \"0.1.0\"\n[limits]\nfuel = 1000000000000\ntimeout_secs = 21600\n"
            ),
        )
        .unwrap();
    }
    let cache = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::new(cache.path()).unwrap();
    let catalog = Catalog::scan(dir.path()).unwrap();
    let (loaded, failed) = tokio::time::timeout(
        Duration::from_secs(120),
        catalog.load_all(&sandbox, &LimitRules::default()),
    )
    .await
    .expect("loading is bounded");
    assert_eq!(names(&loaded), ["classic-monkey"]);
    assert_eq!(failed.len(), 2, "{failed:#?}");
    for failure in &failed {
        let reason = failure.to_string();
        assert!(
            reason.contains("metadata() failed: Fuel limit breached")
                && reason.contains(&format!("all {} units", METADATA_LIMITS.fuel)),
            "{reason}"
        );
    }
}

#[tokio::test]
async fn metadata_runs_under_the_experiments_limits_when_they_are_smaller() {
    // metadata() itself would need more than 50 units of fuel; the run would
    // get them only if metadata() ran under the manifest's limits.
    let error = run_error(&support::plugin_dir(), "classic-monkey", "fuel = 50")
        .await
        .expect("50 units of fuel cannot answer metadata()");
    assert!(
        error.contains("metadata() failed: Fuel limit breached") && error.contains("all 50 units"),
        "{error}"
    );
    assert!(Limits::default().fuel > 50);
}

#[tokio::test]
async fn host_copies_are_bounded_before_they_happen() {
    // `list-instances` with 50 tags whose keys all point at one 1 MiB string:
    // 50 MiB to copy from 1 MiB of plugin memory. The core signature is the
    // flattened instance-filter (option<string>, list<tag>, option<string>,
    // list<instance-state>) and a pointer for the answer.
    let imports = r#"(import "wasmonkey:chaos/cloud@0.1.0" "list-instances"
      (func $list (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32)))"#;
    let run = r#"
      (local $i i32)
      (drop (memory.grow (i32.const 17)))
      ;; tags at 8192, 16 bytes each: key (65536, 1 MiB), value (0, 0).
      (loop $fill
        (i32.store (i32.add (i32.const 8192) (i32.mul (local.get $i) (i32.const 16))) (i32.const 65536))
        (i32.store (i32.add (i32.const 8196) (i32.mul (local.get $i) (i32.const 16))) (i32.const 1048576))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $fill (i32.lt_u (local.get $i) (i32.const 50))))
      (call $list (i32.const 0) (i32.const 0) (i32.const 0)
                  (i32.const 8192) (i32.const 50)
                  (i32.const 0) (i32.const 0) (i32.const 0)
                  (i32.const 0) (i32.const 0)
                  (i32.const 3072))"#;
    let dir = directory(&[(
        "aliases",
        Wat::new("aliases").imports(imports).run(run).build(),
    )]);
    let error = run_error(dir.path(), "aliases", "host_call_kib = 64")
        .await
        .expect("the copy is refused");
    assert!(
        error.contains("HostCallBytes limit breached (host_call_kib)")
            && error.contains("before copying"),
        "{error}"
    );
}
