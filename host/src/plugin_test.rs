//! `wasmonkey plugin test`: a plugin run, for real, on a matrix of
//! simulated fleets and faults, with the properties every strategy must
//! keep checked on each run's report:
//!
//! * **it finishes**: no error, trap or breached limit, through throttled
//!   calls and denied terminations alike;
//! * **within the blast radius**: no more terminations than allowed;
//! * **never outside scope**: it never asks for an instance it was not
//!   shown (a `scope` or `opt-out` denial), and no victim is out of scope;
//! * **its victims are real**: its outcome names only instances the host
//!   terminated.
//!
//! The runs' journals, kill history and kill switch are the test's own, in
//! a temporary directory; the compiled code goes to the project's
//! `build/cache`, as its `try.toml`'s does. The operator's host-wide kill
//! switch still holds.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::manifest::Manifest;
use crate::report::{Report, VictimStatus};
use crate::runner::{self, RunOptions};

/// A fleet and the rules a case runs under.
struct Case {
    name: &'static str,
    fleet: &'static str,
    scope: &'static [&'static str],
    max_terminations: u32,
}

const ONE_GROUP: &str = "[[group]]\nname = \"web\"\nzones = [\"us-east-1a\", \"us-east-1b\"]\ndesired = 4\nmin = 2\nmax = 6\nlaunch_secs = 30\ndetect_secs = 10\n";

const THREE_GROUPS: &str = "[[group]]\nname = \"web\"\nzones = [\"us-east-1a\", \"us-east-1b\", \"us-east-1c\"]\ndesired = 6\nmin = 3\nmax = 9\nlaunch_secs = 30\n\n[[group]]\nname = \"api\"\nzones = [\"us-east-1a\"]\ndesired = 2\nmin = 1\nmax = 4\nlaunch_secs = 45\n\n[[group]]\nname = \"batch\"\nzones = [\"us-east-1b\", \"us-east-1c\"]\ndesired = 3\nmin = 0\nmax = 6\nlaunch_secs = 60\n";

const FENCED: &str = "[[group]]\nname = \"web\"\nzones = [\"us-east-1a\", \"us-east-1b\"]\ndesired = 4\nmin = 2\nmax = 6\nlaunch_secs = 30\n\n[[group]]\nname = \"vault\"\nzones = [\"us-east-1a\"]\ndesired = 2\nmin = 2\nmax = 2\ntags = { chaos-opt-out = \"true\" }\nlaunch_secs = 30\n\n[[group]]\nname = \"payments\"\nzones = [\"us-east-1b\"]\ndesired = 2\nmin = 2\nmax = 2\nlaunch_secs = 30\n\n[[instance]]\nzone = \"us-east-1a\"\n";

const THROTTLED: &str = "throttle_every = 3\n\n[[group]]\nname = \"web\"\nzones = [\"us-east-1a\", \"us-east-1b\"]\ndesired = 4\nmin = 2\nmax = 6\nlaunch_secs = 30\ndetect_secs = 10\n";

/// The matrix.
const CASES: &[Case] = &[
    Case {
        name: "one group",
        fleet: ONE_GROUP,
        scope: &["*"],
        max_terminations: 1,
    },
    Case {
        name: "three groups, three zones",
        fleet: THREE_GROUPS,
        scope: &["*"],
        max_terminations: 2,
    },
    Case {
        name: "scope, opt-out and a standalone instance",
        fleet: FENCED,
        scope: &["web", "vault"],
        max_terminations: 3,
    },
    Case {
        name: "every third call throttled",
        fleet: THROTTLED,
        scope: &["*"],
        max_terminations: 1,
    },
    Case {
        name: "no terminations allowed",
        fleet: THREE_GROUPS,
        scope: &["*"],
        max_terminations: 0,
    },
];

/// The seeds each case runs with.
const SEEDS: [u64; 2] = [1, 2];

/// One property of one run.
pub(crate) struct Finding {
    /// The case and seed.
    pub case: String,
    /// The property.
    pub property: &'static str,
    /// Whether it held.
    pub held: bool,
    /// What was seen.
    pub detail: String,
}

/// Run the project's built plugin (`DIR/dist/`) through the matrix with
/// `params` (a TOML inline table, or none for its defaults).
pub(crate) async fn run(dir: &Path, params: Option<&str>) -> anyhow::Result<Vec<Finding>> {
    let manifest = Manifest::load(&dir.join("wasmonkey.toml"))?;
    let name = manifest.name.clone();
    let work = tempfile::tempdir().context("a temporary directory")?;
    let plugins = work.path().join("plugins");
    std::fs::create_dir_all(&plugins)?;
    for file in [format!("{name}.wasm"), format!("{name}.toml")] {
        let from = dir.join("dist").join(&file);
        std::fs::copy(&from, plugins.join(&file)).with_context(|| {
            format!(
                "{}: cannot read (build it first: wasmonkey plugin build)",
                from.display()
            )
        })?;
    }
    let grants: Vec<String> = manifest
        .grants
        .iter()
        .map(|g| format!("{:?}", g.name()))
        .collect();
    // The project's own compiled-code cache, as its try.toml's: a
    // component is compiled once for both.
    let cache = std::path::absolute(dir)
        .with_context(|| format!("{}: cannot resolve", dir.display()))?
        .join("build")
        .join("cache");
    let mut findings = Vec::new();
    for (index, case) in CASES.iter().enumerate() {
        for seed in SEEDS {
            let label = format!("{} (seed {seed})", case.name);
            let case_files = CaseFiles {
                work: work.path(),
                cache: &cache,
                index,
                seed,
            };
            let config = case_files.write(case, &name, &grants, params)?;
            let options = RunOptions {
                config: config.clone(),
                seed: Some(seed),
                execute: true,
                ..RunOptions::default()
            };
            match runner::run(&options, std::future::pending()).await {
                Ok(output) => findings.extend(check(&label, case, &output.report)),
                Err(err) => findings.push(Finding {
                    case: label,
                    property: "it finishes",
                    held: false,
                    detail: format!("the run would not start: {err:#}"),
                }),
            }
        }
    }
    Ok(findings)
}

/// Where one case's run keeps its files.
struct CaseFiles<'a> {
    work: &'a Path,
    cache: &'a Path,
    index: usize,
    seed: u64,
}

impl CaseFiles<'_> {
    /// Write the case's fleet and run config; the config's path.
    fn write(
        &self,
        case: &Case,
        name: &str,
        grants: &[String],
        params: Option<&str>,
    ) -> anyhow::Result<PathBuf> {
        let (work, index, seed) = (self.work, self.index, self.seed);
        let fleet = work.join(format!("fleet-{index}.toml"));
        std::fs::write(&fleet, case.fleet)?;
        let scope: Vec<String> = case.scope.iter().map(|g| format!("{g:?}")).collect();
        let mut body = format!(
            "seed = {seed}\njournal_dir = {:?}\nstate_dir = {:?}\n\n[backend]\nkind = \"sim\"\nfleet = {:?}\n\n[plugins]\ndir = \"plugins\"\ncache_dir = {:?}\n\n[scope]\ngroups = [{}]\n\n[blast_radius]\nmax_terminations = {}\n\n[[experiment]]\nplugin = {name:?}\ngrants = [{}]\n",
            work.join(format!("journal-{index}-{seed}")).display().to_string(),
            work.join("state").display().to_string(),
            fleet.display().to_string(),
            self.cache.display().to_string(),
            scope.join(", "),
            case.max_terminations,
            grants.join(", ")
        );
        if let Some(params) = params {
            body.push_str(&format!("params = {params}\n"));
        }
        let config = work.join(format!("case-{index}-{seed}.toml"));
        std::fs::write(&config, body)?;
        Ok(config)
    }
}

/// The properties, read from one run's report.
fn check(label: &str, case: &Case, report: &Report) -> Vec<Finding> {
    let finding = |property, held, detail: String| Finding {
        case: label.to_owned(),
        property,
        held,
        detail,
    };
    let errors: Vec<String> = report
        .experiments
        .iter()
        .filter_map(|e| {
            e.error
                .clone()
                .or_else(|| e.limit_breached.clone())
                .or_else(|| (!e.finished).then(|| "it did not finish".to_owned()))
        })
        .map(|e| crate::text::one_line(&e).into_owned())
        .collect();
    let lying = errors.iter().find(|e| e.contains("the outcome lists"));
    let terminated: Vec<_> = report
        .victims
        .iter()
        .filter(|v| v.status == VictimStatus::Terminated)
        .collect();
    let denials: Vec<_> = report.experiments.iter().flat_map(|e| &e.denials).collect();
    let fenced = denials
        .iter()
        .find(|d| d.rule == "scope" || d.rule == "opt-out");
    let strays: Vec<&str> = terminated
        .iter()
        .filter(|v| {
            v.group
                .as_deref()
                .is_none_or(|group| !case.scope.iter().any(|glob| *glob == "*" || *glob == group))
        })
        .map(|v| v.instance_id.as_str())
        .collect();
    vec![
        finding(
            "it finishes",
            errors.is_empty(),
            if errors.is_empty() {
                format!("{} denial(s) handled", denials.len())
            } else {
                errors.join("; ")
            },
        ),
        finding(
            "within the blast radius",
            terminated.len() <= case.max_terminations as usize,
            format!(
                "{} terminated, at most {}",
                terminated.len(),
                case.max_terminations
            ),
        ),
        finding(
            "never outside scope",
            fenced.is_none() && strays.is_empty(),
            match (fenced, strays.is_empty()) {
                (Some(denial), _) => format!(
                    "asked for {} it was never shown ({})",
                    crate::text::one_line(&denial.target),
                    denial.rule
                ),
                (None, false) => format!("terminated out of scope: {}", strays.join(", ")),
                (None, true) => "only what it was shown".to_owned(),
            },
        ),
        finding(
            "its victims are real",
            lying.is_none(),
            lying
                .cloned()
                .unwrap_or_else(|| "every victim it named was terminated".to_owned()),
        ),
    ]
}
