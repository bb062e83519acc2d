//! The plugin contract: the host's version-free face of it, and one module
//! per WIT package version.
//!
//! Only this module and its version modules know a WIT version. Each version
//! module generates its bindings and translates between its WIT types and
//! the domain types here; the sandbox links and calls a plugin through
//! [`Linked`] and [`Strategy`], enums over the versions this host speaks. A
//! new contract version is a new module and a new variant; old plugins keep
//! loading, and the rest of the host does not change.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use wasmtime::component::{InstancePre, Linker};
use wasmtime::{AsContextMut, Store};

use crate::names::named;
use crate::session::Session;

pub(crate) mod shared;
pub mod v0_1_0;
pub mod v0_2_0;

/// A version of the contract this host speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Version {
    /// `wasmonkey:chaos@0.1.0`.
    V0_1_0,
    /// `wasmonkey:chaos@0.2.0`: faults beyond termination.
    V0_2_0,
}

impl Version {
    /// The newest: what `wasmonkey new` writes by default and what a
    /// component that names no version of the contract is linked as.
    pub(crate) const LATEST: Version = Version::V0_2_0;

    /// Every version this host speaks, oldest first.
    pub const ALL: [Version; 2] = [Version::V0_1_0, Version::V0_2_0];

    /// The version a component speaks, from the contract interfaces it
    /// imports and exports (`wasmonkey:chaos/cloud@0.2.0`,
    /// `wasmonkey:chaos/strategy@0.1.0`…): the newest the host has when it
    /// names none. A version this host does not speak, or two versions at
    /// once, is refused, naming them.
    pub fn of_interfaces<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Version, String> {
        let mut named: Vec<&str> = names
            .into_iter()
            .filter_map(|name| name.strip_prefix("wasmonkey:chaos/"))
            .filter_map(|rest| rest.split_once('@').map(|(_, version)| version))
            .collect();
        named.sort_unstable();
        named.dedup();
        match named.as_slice() {
            [] => Ok(Version::LATEST),
            [one] => Version::parse(one).ok_or_else(|| {
                format!(
                    "it uses wasmonkey:chaos@{one}, which this host does not speak (it speaks {})",
                    Version::ALL.map(Version::package).join(", ")
                )
            }),
            several => Err(format!(
                "it uses several versions of wasmonkey:chaos at once ({})",
                several.join(", ")
            )),
        }
    }

    /// The version numbered `number` (`0.2.0`), if this host speaks it.
    pub fn parse(number: &str) -> Option<Version> {
        Version::ALL.into_iter().find(|v| v.number() == number)
    }

    /// Its number, e.g. `0.2.0`.
    pub fn number(self) -> &'static str {
        let package = self.package();
        package
            .rsplit_once('@')
            .map_or(package, |(_, number)| number)
    }

    /// Its WIT files, as `(name, text)`.
    pub(crate) fn wit_files(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Version::V0_1_0 => v0_1_0::WIT,
            Version::V0_2_0 => v0_2_0::WIT,
        }
    }

    /// The package, as components name it in their imports.
    pub fn package(self) -> &'static str {
        match self {
            Version::V0_1_0 => v0_1_0::PACKAGE,
            Version::V0_2_0 => v0_2_0::PACKAGE,
        }
    }

    /// Give a linker this version's imports, backed by the store's
    /// [`Session`].
    pub(crate) fn add_to_linker<T: Send + 'static>(
        self,
        linker: &mut Linker<T>,
        session: fn(&mut T) -> &mut Session,
    ) -> wasmtime::Result<()> {
        match self {
            Version::V0_1_0 => v0_1_0::add_to_linker(linker, session),
            Version::V0_2_0 => v0_2_0::add_to_linker(linker, session),
        }
    }
}

/// A component linked against one version, ready to instantiate cheaply.
pub(crate) enum Linked<T: 'static> {
    /// Against `wasmonkey:chaos@0.1.0`.
    V0_1_0(v0_1_0::StrategyPluginPre<T>),
    /// Against `wasmonkey:chaos@0.2.0`.
    V0_2_0(v0_2_0::StrategyPluginPre<T>),
}

impl<T: 'static> Clone for Linked<T> {
    fn clone(&self) -> Self {
        match self {
            Linked::V0_1_0(pre) => Linked::V0_1_0(pre.clone()),
            Linked::V0_2_0(pre) => Linked::V0_2_0(pre.clone()),
        }
    }
}

impl<T: Send + 'static> Linked<T> {
    /// Check that a pre-instantiated component exports `version`'s
    /// strategy.
    pub(crate) fn new(version: Version, pre: InstancePre<T>) -> wasmtime::Result<Linked<T>> {
        match version {
            Version::V0_1_0 => v0_1_0::StrategyPluginPre::new(pre).map(Linked::V0_1_0),
            Version::V0_2_0 => v0_2_0::StrategyPluginPre::new(pre).map(Linked::V0_2_0),
        }
    }

    /// The version it speaks.
    pub(crate) fn version(&self) -> Version {
        match self {
            Linked::V0_1_0(_) => Version::V0_1_0,
            Linked::V0_2_0(_) => Version::V0_2_0,
        }
    }

    /// A fresh instance in `store`.
    pub(crate) async fn instantiate(&self, store: &mut Store<T>) -> wasmtime::Result<Strategy> {
        match self {
            Linked::V0_1_0(pre) => pre.instantiate_async(store).await.map(Strategy::V0_1_0),
            Linked::V0_2_0(pre) => pre.instantiate_async(store).await.map(Strategy::V0_2_0),
        }
    }
}

/// An instance of a plugin's strategy.
pub enum Strategy {
    /// Of `wasmonkey:chaos@0.1.0`.
    V0_1_0(v0_1_0::StrategyPlugin),
    /// Of `wasmonkey:chaos@0.2.0`.
    V0_2_0(v0_2_0::StrategyPlugin),
}

impl Strategy {
    /// Its `metadata()`.
    pub async fn metadata(
        &self,
        store: impl AsContextMut<Data: Send>,
    ) -> wasmtime::Result<PluginMetadata> {
        match self {
            Strategy::V0_1_0(plugin) => v0_1_0::metadata(plugin, store).await,
            Strategy::V0_2_0(plugin) => v0_2_0::metadata(plugin, store).await,
        }
    }

    /// Its `run(params)`.
    pub async fn run(
        &self,
        store: impl AsContextMut<Data: Send>,
        params: &[Param],
    ) -> wasmtime::Result<Result<Outcome, RunError>> {
        match self {
            Strategy::V0_1_0(plugin) => v0_1_0::run(plugin, store, params).await,
            Strategy::V0_2_0(plugin) => v0_2_0::run(plugin, store, params).await,
        }
    }
}

/// A parameter's value; its kind is its default's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ParamValue {
    /// A string.
    Text(String),
    /// A signed 64-bit integer.
    Integer(i64),
    /// A float.
    Number(f64),
    /// A boolean.
    Flag(bool),
}

impl ParamValue {
    /// As JSON, for journals and reports.
    pub(crate) fn to_json(&self) -> serde_json::Value {
        match self {
            ParamValue::Text(text) => serde_json::Value::from(text.as_str()),
            ParamValue::Integer(n) => serde_json::Value::from(*n),
            ParamValue::Number(x) => serde_json::Value::from(*x),
            ParamValue::Flag(b) => serde_json::Value::from(*b),
        }
    }

    /// Its kind, as the operator's error messages name it.
    pub fn kind(&self) -> &'static str {
        match self {
            ParamValue::Text(_) => "text",
            ParamValue::Integer(_) => "integer",
            ParamValue::Number(_) => "number",
            ParamValue::Flag(_) => "flag",
        }
    }
}

/// A parameter a strategy declares, with the default used when the operator
/// does not set it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParamSpec {
    /// Its name in `[[experiment]] params`.
    pub name: String,
    /// One line for `wasmonkey plugins inspect`.
    pub description: String,
    /// Its default, whose kind is the parameter's.
    pub default: ParamValue,
}

/// Who a plugin is, from its `metadata()`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginMetadata {
    /// Must equal the file stem and the manifest's name.
    pub name: String,
    /// Semantic version, e.g. `1.2.0`.
    pub version: String,
    /// One or two sentences.
    pub description: String,
    /// What it accepts.
    pub params: Vec<ParamSpec>,
}

/// One named value handed to `run`.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    /// The declared parameter's name.
    pub name: String,
    /// The operator's value, or the default.
    pub value: ParamValue,
}

named! {
    /// A plugin's own judgement of a victim's recovery; its name is what
    /// journals and reports show.
    Verdict {
        /// It saw the group (and targets) healthy again.
        Recovered = "recovered",
        /// It gave up waiting.
        NotRecovered = "not-recovered",
        /// It did not wait.
        Unchecked = "unchecked",
    }
}

/// One instance a strategy says it terminated (or would have, in a dry run).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Victim {
    /// The instance.
    pub instance_id: String,
    /// Its group, if any.
    pub group: Option<String>,
    /// Its zone.
    pub zone: String,
    /// From the termination the host returned.
    pub terminated_at_ms: u64,
    /// Whether it was a dry run.
    pub dry_run: bool,
    /// The plugin's verdict.
    pub verdict: Verdict,
    /// When the plugin judged it recovered, on the run's clock.
    pub recovered_at_ms: Option<u64>,
}

/// What a run did, as the plugin tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Its victims.
    pub victims: Vec<Victim>,
    /// One or two sentences for the report.
    pub summary: String,
}

/// Why a run failed as a whole, as the plugin tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunError {
    /// A parameter is missing or makes no sense; the text names it.
    InvalidParam(String),
    /// A cloud operation failed and the strategy could not go on; the text
    /// is the error as the contract names it.
    Cloud(String),
    /// The strategy stopped on purpose.
    Aborted(String),
}

impl RunError {
    /// As one line.
    pub fn text(&self) -> String {
        match self {
            RunError::InvalidParam(m) => format!("invalid parameter: {m}"),
            RunError::Aborted(m) => format!("aborted: {m}"),
            RunError::Cloud(e) => format!("cloud error: {e}"),
        }
    }
}

/// Check the operator's values against the plugin's declared parameters and
/// fill in defaults. Errors name the parameter.
pub fn resolve_params(
    specs: &[ParamSpec],
    given: &BTreeMap<String, toml::Value>,
) -> Result<Vec<Param>, String> {
    if let Some(unknown) = given
        .keys()
        .find(|name| !specs.iter().any(|s| &s.name == *name))
    {
        let known: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        return Err(format!(
            "unknown parameter {unknown:?}; the plugin declares {known:?}"
        ));
    }
    specs
        .iter()
        .map(|spec| {
            let value = match given.get(&spec.name) {
                None => spec.default.clone(),
                Some(value) => match (&spec.default, value) {
                    (ParamValue::Text(_), toml::Value::String(s)) => ParamValue::Text(s.clone()),
                    (ParamValue::Integer(_), toml::Value::Integer(n)) => ParamValue::Integer(*n),
                    (ParamValue::Number(_), toml::Value::Float(x)) => ParamValue::Number(*x),
                    (ParamValue::Number(_), toml::Value::Integer(n)) => {
                        ParamValue::Number(*n as f64)
                    }
                    (ParamValue::Flag(_), toml::Value::Boolean(b)) => ParamValue::Flag(*b),
                    (default, other) => {
                        return Err(format!(
                            "parameter {:?} takes a {} value, got {} {other}",
                            spec.name,
                            default.kind(),
                            other.type_str()
                        ))
                    }
                },
            };
            Ok(Param {
                name: spec.name.clone(),
                value,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest as _, Sha256};

    /// Each released contract's files, as their digest (each file's name, a
    /// NUL, its bytes, a NUL, in name order). A change to a released version
    /// is a new version in a new directory and module, never an edit.
    const FROZEN: [(Version, &str); 2] = [
        (
            Version::V0_1_0,
            "f9a0d7be5ca622c525566142a95491992f8242cdd376ae96df95a5d3d94141cc",
        ),
        (
            Version::V0_2_0,
            "4a767a6ace95878bf31e64e8ffb402472fe8b7c47e993af2dda30812ae791578",
        ),
    ];

    #[test]
    fn the_released_contracts_are_frozen() {
        for (version, frozen) in FROZEN {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../wit")
                .join(format!("v{}", version.number()));
            let mut names: Vec<_> = std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            names.sort();
            let mut digest = Sha256::new();
            for name in &names {
                digest.update(name.as_encoded_bytes());
                digest.update([0]);
                digest.update(std::fs::read(dir.join(name)).unwrap());
                digest.update([0]);
            }
            assert_eq!(
                crate::sandbox::hex(&digest.finalize()),
                frozen,
                "{} changed: a released contract is never edited; add the next version's directory and module instead",
                dir.display()
            );
            // What `wasmonkey new` copies is the directory, file for file.
            let copied: Vec<_> = version.wit_files().iter().map(|(name, _)| *name).collect();
            assert_eq!(
                copied,
                names
                    .iter()
                    .map(|n| n.to_str().unwrap())
                    .collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn versions_are_named_by_their_number() {
        for version in Version::ALL {
            assert_eq!(Version::parse(version.number()), Some(version));
        }
        assert_eq!(Version::V0_2_0.number(), "0.2.0");
        assert_eq!(Version::parse("0.3.0"), None);
        assert_eq!(Version::LATEST, *Version::ALL.last().unwrap());
    }

    fn spec(name: &str, default: ParamValue) -> ParamSpec {
        ParamSpec {
            name: name.into(),
            description: String::new(),
            default,
        }
    }

    #[test]
    fn params_are_checked_and_defaulted() {
        let specs = [
            spec("count", ParamValue::Integer(3)),
            spec("p", ParamValue::Number(1.0)),
        ];
        let given: BTreeMap<String, toml::Value> =
            [("p".to_string(), toml::Value::Integer(0))].into();
        let params = resolve_params(&specs, &given).unwrap();
        assert!(matches!(params[0].value, ParamValue::Integer(3)));
        assert!(matches!(params[1].value, ParamValue::Number(x) if x == 0.0));

        let wrong: BTreeMap<String, toml::Value> =
            [("count".to_string(), toml::Value::from("three"))].into();
        let err = resolve_params(&specs, &wrong).unwrap_err();
        assert!(
            err.contains("\"count\"") && err.contains("integer"),
            "{err}"
        );

        let unknown: BTreeMap<String, toml::Value> =
            [("cuont".to_string(), toml::Value::Integer(1))].into();
        assert!(resolve_params(&specs, &unknown)
            .unwrap_err()
            .contains("cuont"));
    }
}
