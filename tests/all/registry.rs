//! Plugins through a real OCI registry: Debian's `docker-registry`
//! (distribution 2.8), which `cargo xtask test` installs and passes in
//! `WASMONKEY_REGISTRY`, started here on loopback for each test. A plugin is
//! pushed, signed, pulled by digest and run; each way its origin can be
//! wrong is refused with nothing run; skopeo (a tool nobody here wrote)
//! reads what wasmonkey pushes, and wasmonkey pulls what skopeo pushes; and
//! the signatures agree with an implementation of cosign's format by
//! Python's `cryptography`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support;

/// A registry of its own, killed when dropped.
struct Registry {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

fn program(var: &str, debian: &str) -> PathBuf {
    std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(debian))
}

impl Registry {
    fn start() -> Registry {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("address")
            .port();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("data").display()
            ),
        )
        .expect("config");
        let bin = program("WASMONKEY_REGISTRY", "/usr/bin/docker-registry");
        let child = Command::new(&bin)
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| {
                panic!(
                    "{} runs (cargo xtask test installs it): {err}",
                    bin.display()
                )
            });
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the registry never listened"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Registry { child, port, dir }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The file holding a blob, in distribution's storage layout.
    fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.dir
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A workshop: an author's project holding classic-monkey as built, and an
/// operator's home.
struct Lab {
    dir: tempfile::TempDir,
}

impl Lab {
    fn new() -> Lab {
        let dir = tempfile::tempdir().expect("temp dir");
        let project = dir.path().join("project");
        std::fs::create_dir_all(project.join("dist")).expect("dist");
        let plugins = support::plugin_dir();
        for file in ["classic-monkey.wasm", "classic-monkey.toml"] {
            std::fs::copy(plugins.join(file), project.join("dist").join(file)).expect("copy");
        }
        std::fs::copy(
            plugins.join("classic-monkey.toml"),
            project.join("wasmonkey.toml"),
        )
        .expect("manifest");
        std::fs::write(
            dir.path().join("fleet.toml"),
            "[[group]]\nname = \"web\"\nzones = [\"us-east-1a\", \"us-east-1b\"]\ndesired = 4\nmin = 2\nmax = 6\nlaunch_secs = 30\ndetect_secs = 10\n",
        )
        .expect("fleet");
        Lab { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn wasmonkey(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_wasmonkey"))
            .args(args)
            .current_dir(self.dir.path())
            .env("XDG_STATE_HOME", self.path("state"))
            .env("XDG_CACHE_HOME", self.path("cache"))
            .env("COSIGN_PASSWORD", "correct horse")
            .env("WASMONKEY_LOG", "warn")
            .output()
            .expect("wasmonkey runs")
    }

    /// `plugins pull SOURCE --config CONFIG`, which must succeed.
    fn pull(&self, source: &str, config: &Path) -> String {
        let config = config.display().to_string();
        ok(
            "pull",
            &self.wasmonkey(&["plugins", "pull", source, "--config", &config]),
        )
    }

    /// An operator's config in `home`, trusting `keys`, naming `sources`.
    fn operator(&self, home: &str, keys: &[&str], sources: &[(&str, &str)]) -> PathBuf {
        let dir = self.path(home);
        std::fs::create_dir_all(&dir).expect("home");
        let keys: Vec<String> = keys
            .iter()
            .map(|k| format!("{:?}", self.path(k).display().to_string()))
            .collect();
        let mut body = format!(
            "seed = 7\njournal_dir = \"journal\"\n\n[backend]\nkind = \"sim\"\nfleet = {:?}\n\n[plugins]\ndir = \"plugins\"\ntrusted_keys = [{}]\nrequire_signatures = true\n\n[plugins.sources]\n",
            self.path("fleet.toml").display().to_string(),
            keys.join(", ")
        );
        for (name, source) in sources {
            body.push_str(&format!("{name} = {source:?}\n"));
        }
        body.push_str("\n[scope]\ngroups = [\"*\"]\n\n[[experiment]]\nplugin = \"classic-monkey\"\ngrants = [\"terminate\"]\nparams = { probability = 1.0, poll-secs = 1 }\n");
        let config = dir.join("wasmonkey.toml");
        std::fs::write(&config, body).expect("config");
        config
    }
}

fn ok(what: &str, output: &Output) -> String {
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A run refused before anything ran: an error naming `expected`, and no
/// journal (no run began).
fn refused(lab: &Lab, config: &Path, expected: &[&str]) {
    let config = config.display().to_string();
    let run = lab.wasmonkey(&["run", "--execute", "--config", &config]);
    let said = String::from_utf8_lossy(&run.stderr).into_owned();
    assert!(!run.status.success(), "{said}");
    for part in expected {
        assert!(said.contains(part), "{part:?} missing in:\n{said}");
    }
    let journal = Path::new(&config).with_file_name("journal");
    let journals = std::fs::read_dir(&journal).map(|d| d.count()).unwrap_or(0);
    assert_eq!(journals, 0, "a run began: {said}");
}

/// Push, sign, pull by digest, run; then each wrong origin refused.
#[test]
fn a_signed_plugin_pulled_by_digest_runs_and_every_wrong_origin_is_refused() {
    let registry = Registry::start();
    let lab = Lab::new();
    let target = format!("{}/chaos/classic-monkey:0.1.0", registry.host());
    let source = ok(
        "push",
        &lab.wasmonkey(&["plugin", "push", &target, "--dir", "project"]),
    );
    let source = source.trim().to_owned();
    let digest = source.rsplit_once('@').expect("REF@digest").1.to_owned();
    assert!(
        source.starts_with(&format!("{}/chaos/classic-monkey@sha256:", registry.host())),
        "{source}"
    );
    ok(
        "keygen",
        &lab.wasmonkey(&["plugin", "keygen", "--dir", "team"]),
    );
    ok(
        "keygen",
        &lab.wasmonkey(&["plugin", "keygen", "--dir", "stranger"]),
    );
    ok(
        "sign",
        &lab.wasmonkey(&["plugin", "sign", &source, "--key", "team/cosign.key"]),
    );

    // Pulled by digest, signed by the trusted key: it runs and kills.
    let config = lab.operator("op", &["team/cosign.pub"], &[("classic-monkey", &source)]);
    let shown = config.display().to_string();
    let pulled = lab.pull(&source, &config);
    assert!(pulled.contains("signature: signed by sha256:"), "{pulled}");
    let listed = ok(
        "plugins list",
        &lab.wasmonkey(&["plugins", "list", "--config", &shown]),
    );
    assert!(
        listed.contains(&format!("source {source}")) && listed.contains("signed by"),
        "{listed}"
    );
    let run = ok(
        "run",
        &lab.wasmonkey(&["run", "--execute", "--json", "--config", &shown]),
    );
    let report: serde_json::Value = serde_json::from_str(&run).expect("JSON");
    let killed = report["victims"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["status"] == "terminated")
        .count();
    assert!(killed >= 1, "{report:#}");

    // Signed by a key the operator does not trust.
    let config = lab.operator(
        "op-stranger",
        &["stranger/cosign.pub"],
        &[("classic-monkey", &source)],
    );
    lab.pull(&source, &config);
    refused(
        &lab,
        &config,
        &[&digest, "no trusted key verifies it", "stranger/cosign.pub"],
    );

    // No signature at all: the same bytes under another repository.
    let unsigned_target = format!("{}/chaos/unsigned:0.1.0", registry.host());
    let unsigned = ok(
        "push",
        &lab.wasmonkey(&["plugin", "push", &unsigned_target, "--dir", "project"]),
    );
    let unsigned = unsigned.trim().to_owned();
    let config = lab.operator(
        "op-unsigned",
        &["team/cosign.pub"],
        &[("classic-monkey", &unsigned)],
    );
    lab.pull(&unsigned, &config);
    let unsigned_digest = unsigned.rsplit_once('@').expect("@").1;
    refused(
        &lab,
        &config,
        &[unsigned_digest, "is unsigned", "team/cosign.pub"],
    );

    // The config names another digest than the one pulled.
    let wrong = format!(
        "{}@sha256:{}",
        source.rsplit_once('@').expect("@").0,
        "0".repeat(64)
    );
    let config = lab.operator(
        "op-wrong",
        &["team/cosign.pub"],
        &[("classic-monkey", &wrong)],
    );
    std::fs::create_dir_all(lab.path("op-wrong/plugins")).expect("plugins");
    for file in [
        "classic-monkey.wasm",
        "classic-monkey.toml",
        "classic-monkey.oci.json",
        "classic-monkey.sig.json",
    ] {
        std::fs::copy(
            lab.path("op/plugins").join(file),
            lab.path("op-wrong/plugins").join(file),
        )
        .expect("copy");
    }
    refused(&lab, &config, &[&digest, &"0".repeat(64), "refused"]);

    // The component changed after the pull.
    let config = lab.operator(
        "op-changed",
        &["team/cosign.pub"],
        &[("classic-monkey", &source)],
    );
    lab.pull(&source, &config);
    std::fs::copy(
        support::plugin_dir().join("oldest-first.wasm"),
        lab.path("op-changed/plugins/classic-monkey.wasm"),
    )
    .expect("swap");
    refused(
        &lab,
        &config,
        &["classic-monkey.wasm is sha256:", "not the component"],
    );

    // A blob tampered with in the registry: the pull fails, nothing lands.
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(lab.path("op/plugins/classic-monkey.oci.json")).expect("kept manifest"),
    )
    .expect("JSON");
    let layer = manifest["layers"][0]["digest"]
        .as_str()
        .expect("layer digest")
        .to_owned();
    let blob = registry.blob_file(&layer);
    let mut bytes = std::fs::read(&blob).expect("blob");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&blob, bytes).expect("tamper");
    let config = lab.operator(
        "op-tampered",
        &["team/cosign.pub"],
        &[("classic-monkey", &source)],
    );
    let pull = lab.wasmonkey(&[
        "plugins",
        "pull",
        &source,
        "--config",
        &config.display().to_string(),
    ]);
    let said = String::from_utf8_lossy(&pull.stderr);
    assert!(
        !pull.status.success() && said.contains("the component"),
        "{said}"
    );
    assert!(
        !lab.path("op-tampered/plugins/classic-monkey.wasm").exists(),
        "a tampered component landed"
    );
}

/// skopeo copies what wasmonkey pushed to a directory and back to another
/// repository with the same digest, and wasmonkey pulls that copy.
#[test]
fn skopeo_reads_what_wasmonkey_pushes_and_wasmonkey_pulls_what_skopeo_pushes() {
    let registry = Registry::start();
    let lab = Lab::new();
    let target = format!("{}/chaos/classic-monkey:1", registry.host());
    let source = ok(
        "push",
        &lab.wasmonkey(&["plugin", "push", &target, "--dir", "project"]),
    );
    let digest = source.trim().rsplit_once('@').expect("@").1.to_owned();
    let skopeo = program("WASMONKEY_SKOPEO", "/usr/bin/skopeo");
    let layout = lab.path("layout");
    let copy = |from: String, to: String| {
        let out = Command::new(&skopeo)
            .args([
                "copy",
                "--src-tls-verify=false",
                "--dest-tls-verify=false",
                "--preserve-digests",
            ])
            .args([&from, &to])
            .output()
            .expect("skopeo runs");
        assert!(
            out.status.success(),
            "skopeo copy {from} {to}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    copy(
        format!("docker://{}/chaos/classic-monkey@{digest}", registry.host()),
        format!("oci:{}:copied", layout.display()),
    );
    // What skopeo read is wasmonkey's layout: one wasm layer, our manifest.
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).expect("index"))
            .expect("JSON");
    assert_eq!(
        index["manifests"][0]["digest"],
        digest.as_str(),
        "{index:#}"
    );
    copy(
        format!("oci:{}:copied", layout.display()),
        format!("docker://{}/mirror/strategy:1", registry.host()),
    );
    let mirrored = format!("{}/mirror/strategy@{digest}", registry.host());
    let config = lab.operator("op", &[], &[("classic-monkey", &mirrored)]);
    let body = std::fs::read_to_string(&config).expect("config");
    std::fs::write(
        &config,
        body.replace("require_signatures = true", "require_signatures = false"),
    )
    .expect("config");
    let shown = config.display().to_string();
    let pulled = lab.pull(&mirrored, &config);
    assert!(pulled.contains("signature: unsigned"), "{pulled}");
    let run = ok(
        "run",
        &lab.wasmonkey(&["run", "--execute", "--json", "--config", &shown]),
    );
    let report: serde_json::Value = serde_json::from_str(&run).expect("JSON");
    assert_eq!(report["outcome"], "succeeded", "{report:#}");
}

/// cosign's signature format as Python's `cryptography` implements it:
/// it verifies wasmonkey's signature with wasmonkey's public key, and signs
/// with a key of its own a payload wasmonkey then accepts.
#[test]
fn signatures_agree_with_an_independent_implementation_of_cosigns_format() {
    let registry = Registry::start();
    let lab = Lab::new();
    let target = format!("{}/chaos/classic-monkey:1", registry.host());
    let source = ok(
        "push",
        &lab.wasmonkey(&["plugin", "push", &target, "--dir", "project"]),
    );
    let source = source.trim().to_owned();
    let digest = source.rsplit_once('@').expect("@").1.to_owned();
    ok(
        "keygen",
        &lab.wasmonkey(&["plugin", "keygen", "--dir", "team"]),
    );
    ok(
        "sign",
        &lab.wasmonkey(&["plugin", "sign", &source, "--key", "team/cosign.key"]),
    );
    let config = lab.operator(
        "op",
        &["team/cosign.pub", "py.pub"],
        &[("classic-monkey", &source)],
    );
    // Python's key, trusted too (written before the config is read).
    let python = std::env::var_os("WASMONKEY_MOTO")
        .map(PathBuf::from)
        .and_then(|moto| moto.parent().map(|bin| bin.join("python")))
        .unwrap_or_else(|| support::root().join(".toolchains/moto/bin/python"));
    let script = r#"
import base64, json, sys
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
mode, lab, digest = sys.argv[1], sys.argv[2], sys.argv[3]
if mode == "verify":
    key = serialization.load_pem_public_key(open(lab + "/team/cosign.pub", "rb").read())
    sigs = json.load(open(lab + "/op/plugins/classic-monkey.sig.json"))
    payload = base64.b64decode(sigs[0]["payload"])
    key.verify(base64.b64decode(sigs[0]["signature"]), payload, ec.ECDSA(hashes.SHA256()))
    claims = json.loads(payload)
    assert claims["critical"]["type"] == "cosign container image signature", claims
    assert claims["critical"]["image"]["docker-manifest-digest"] == digest, claims
    print("verified")
else:
    key = ec.generate_private_key(ec.SECP256R1())
    open(lab + "/py.pub", "wb").write(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    payload = json.dumps({"critical": {"identity": {"docker-reference": "r"},
        "image": {"docker-manifest-digest": digest},
        "type": "cosign container image signature"}, "optional": None},
        separators=(",", ":")).encode()
    signature = base64.b64encode(key.sign(payload, ec.ECDSA(hashes.SHA256()))).decode()
    print(json.dumps([{"payload": base64.b64encode(payload).decode(), "signature": signature}]))
"#;
    let lab_dir = lab.dir.path().display().to_string();
    let python_run = |mode: &str| {
        let out = Command::new(&python)
            .args(["-c", script, mode, &lab_dir, &digest])
            .output()
            .expect("python runs");
        assert!(
            out.status.success(),
            "python {mode}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let python_signature = python_run("sign");
    let shown = config.display().to_string();
    lab.pull(&source, &config);
    assert_eq!(python_run("verify").trim(), "verified");
    // Python's signature in place of ours: the run accepts it, by its key.
    std::fs::write(
        lab.path("op/plugins/classic-monkey.sig.json"),
        python_signature,
    )
    .expect("sig");
    let listed = ok(
        "plugins list",
        &lab.wasmonkey(&["plugins", "list", "--config", &shown]),
    );
    assert!(listed.contains("py.pub"), "{listed}");
    ok(
        "run",
        &lab.wasmonkey(&["run", "--execute", "--config", &shown]),
    );
}
