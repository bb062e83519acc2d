//! Every resource limit a plugin runs under, in one place.
//!
//! A plugin's effective limits are its manifest's requests (or the defaults
//! below), which must stay within the operator's ceilings. A breach ends that
//! plugin's run with a [`LimitBreach`] naming the limit; the host carries on.

use std::time::Duration;

use serde::{Deserialize, Serialize};

const MIB: u64 = 1024 * 1024;

/// Limits for one plugin run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Fuel: roughly one unit per WebAssembly instruction executed.
    pub fuel: u64,
    /// Cap on the plugin's linear memory, in MiB.
    pub memory_mib: u64,
    /// Cap on the WebAssembly call stack, in KiB.
    pub stack_kib: u64,
    /// Deadline for one run, in seconds, on the wall clock *and* on the run's
    /// clock (so a plugin cannot sleep forever on the simulator's virtual
    /// clock either).
    pub timeout_secs: u64,
    /// Longest one host operation (a cloud call, a probe) may take before it
    /// answers with a backend error, in seconds.
    pub host_call_timeout_secs: u64,
    /// Most bytes of arguments one host call may carry (log messages,
    /// notification bodies, reasons…), in KiB.
    pub host_call_kib: u64,
    /// Most host calls one run may make.
    pub host_calls: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            fuel: 20_000_000_000,
            memory_mib: 128,
            stack_kib: 512,
            timeout_secs: 3600,
            host_call_timeout_secs: 60,
            host_call_kib: 1024,
            host_calls: 100_000,
        }
    }
}

/// The most `metadata()`, and the start functions instantiation runs, may
/// use: loading a plugin, or listing a directory of them, is bounded by these
/// whatever a manifest asks for. About a second of CPU, and what Python's
/// runtime needs to start (`docs/security.md`).
pub const METADATA_LIMITS: Limits = Limits {
    fuel: 1_000_000_000,
    memory_mib: 256,
    stack_kib: 512,
    timeout_secs: 5,
    host_call_timeout_secs: 1,
    host_call_kib: 64,
    host_calls: 0,
};

impl Limits {
    /// The limits `metadata()` runs under for a plugin that runs under
    /// `self`: [`METADATA_LIMITS`], and never more than `self`.
    pub(crate) fn for_metadata(&self) -> Limits {
        let cap = METADATA_LIMITS;
        Limits {
            fuel: self.fuel.min(cap.fuel),
            memory_mib: self.memory_mib.min(cap.memory_mib),
            stack_kib: self.stack_kib.min(cap.stack_kib),
            timeout_secs: self.timeout_secs.min(cap.timeout_secs),
            host_call_timeout_secs: self.host_call_timeout_secs.min(cap.host_call_timeout_secs),
            host_call_kib: self.host_call_kib.min(cap.host_call_kib),
            host_calls: self.host_calls.min(cap.host_calls),
        }
    }

    /// The operator's ceilings when the config names none.
    pub(crate) fn default_ceiling() -> Self {
        Limits {
            fuel: 1_000_000_000_000,
            memory_mib: 1024,
            stack_kib: 8 * 1024,
            timeout_secs: 6 * 3600,
            host_call_timeout_secs: 600,
            host_call_kib: 16 * 1024,
            host_calls: 10_000_000,
        }
    }

    /// Memory cap in bytes.
    pub(crate) fn memory_bytes(&self) -> usize {
        usize::try_from(self.memory_mib.saturating_mul(MIB)).unwrap_or(usize::MAX)
    }

    /// Stack cap in bytes.
    pub fn stack_bytes(&self) -> usize {
        usize::try_from(self.stack_kib.saturating_mul(1024)).unwrap_or(usize::MAX)
    }

    /// Host-call argument cap in bytes.
    pub(crate) fn host_call_bytes(&self) -> usize {
        usize::try_from(self.host_call_kib.saturating_mul(1024)).unwrap_or(usize::MAX)
    }

    /// The run's deadline.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }

    /// One host operation's deadline.
    pub(crate) fn host_call_timeout(&self) -> Duration {
        Duration::from_secs(self.host_call_timeout_secs)
    }

    /// Apply `overrides` on top of `self`, field by field.
    pub fn with(mut self, overrides: &LimitOverrides) -> Self {
        let LimitOverrides {
            fuel,
            memory_mib,
            stack_kib,
            timeout_secs,
            host_call_timeout_secs,
            host_call_kib,
            host_calls,
        } = *overrides;
        self.fuel = fuel.unwrap_or(self.fuel);
        self.memory_mib = memory_mib.unwrap_or(self.memory_mib);
        self.stack_kib = stack_kib.unwrap_or(self.stack_kib);
        self.timeout_secs = timeout_secs.unwrap_or(self.timeout_secs);
        self.host_call_timeout_secs = host_call_timeout_secs.unwrap_or(self.host_call_timeout_secs);
        self.host_call_kib = host_call_kib.unwrap_or(self.host_call_kib);
        self.host_calls = host_calls.unwrap_or(self.host_calls);
        self
    }

    /// The limits above `ceiling`, as `(name, asked, ceiling)`.
    pub(crate) fn exceeding(&self, ceiling: &Limits) -> Vec<(&'static str, u64, u64)> {
        [
            ("fuel", self.fuel, ceiling.fuel),
            ("memory_mib", self.memory_mib, ceiling.memory_mib),
            ("stack_kib", self.stack_kib, ceiling.stack_kib),
            ("timeout_secs", self.timeout_secs, ceiling.timeout_secs),
            (
                "host_call_timeout_secs",
                self.host_call_timeout_secs,
                ceiling.host_call_timeout_secs,
            ),
            ("host_call_kib", self.host_call_kib, ceiling.host_call_kib),
            ("host_calls", self.host_calls, ceiling.host_calls),
        ]
        .into_iter()
        .filter(|(_, asked, max)| asked > max)
        .collect()
    }
}

/// What the operator allows: the limits a plugin gets unless its manifest
/// asks for others, and the most it may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitRules {
    /// What a plugin gets when its manifest asks for nothing.
    pub defaults: Limits,
    /// The most any plugin may have.
    pub ceiling: Limits,
}

impl Default for LimitRules {
    fn default() -> Self {
        LimitRules {
            defaults: Limits::default(),
            ceiling: Limits::default_ceiling(),
        }
    }
}

impl LimitRules {
    /// The limits for a plugin asking for `asked` (a manifest's `[limits]`),
    /// or the first one it asks for above the ceiling.
    pub fn grant(&self, asked: &LimitOverrides) -> Result<Limits, AboveCeiling> {
        let limits = self.defaults.with(asked);
        match limits.exceeding(&self.ceiling).first() {
            Some(&(limit, asked, ceiling)) => Err(AboveCeiling {
                limit,
                asked,
                ceiling,
            }),
            None => Ok(limits),
        }
    }
}

/// A limit asked for above the operator's ceiling.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{limit} = {asked} is above the operator's ceiling {ceiling}")]
pub struct AboveCeiling {
    /// The limit's name, as in the config.
    pub limit: &'static str,
    /// What was asked for.
    pub asked: u64,
    /// The most allowed.
    pub ceiling: u64,
}

/// Some limits set, the rest left to whoever applies them: a manifest's
/// requests, an operator's defaults or ceilings.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(deny_unknown_fields)]
pub struct LimitOverrides {
    /// Fuel: units of Wasm work (about one per instruction).
    pub fuel: Option<u64>,
    /// Memory: every linear memory and table together, in MiB.
    pub memory_mib: Option<u64>,
    /// The Wasm stack, in KiB.
    pub stack_kib: Option<u64>,
    /// Wall-clock time of the whole run, in seconds.
    pub timeout_secs: Option<u64>,
    /// Wall-clock time of one host call, in seconds.
    pub host_call_timeout_secs: Option<u64>,
    /// Bytes one host call may carry in from the plugin, in KiB.
    pub host_call_kib: Option<u64>,
    /// Host calls per run.
    pub host_calls: Option<u64>,
}

/// Which limit a plugin ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Limit {
    /// Out of fuel.
    Fuel,
    /// Memory or tables grown past the budget.
    Memory,
    /// The Wasm stack overflowed.
    Stack,
    /// The run outlasted its wall-clock time.
    Timeout,
    /// A host call carried more bytes than allowed.
    HostCallBytes,
    /// More host calls than allowed.
    HostCalls,
    /// The outcome claimed more victims than the blast radius allows.
    OutcomeSize,
}

impl Limit {
    /// The config key that sets this limit.
    pub fn key(self) -> &'static str {
        match self {
            Limit::Fuel => "fuel",
            Limit::Memory => "memory_mib",
            Limit::Stack => "stack_kib",
            Limit::Timeout => "timeout_secs",
            Limit::HostCallBytes => "host_call_kib",
            Limit::HostCalls => "host_calls",
            Limit::OutcomeSize => "blast_radius.max_terminations",
        }
    }
}

/// A plugin breached one of its limits; its run is over.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{limit:?} limit breached ({key}): {detail}", key = limit.key())]
pub struct LimitBreach {
    /// Which limit.
    pub limit: Limit,
    /// What was seen, for the operator.
    pub detail: String,
}

impl LimitBreach {
    /// A breach of `limit`, explained by `detail`.
    pub fn new(limit: Limit, detail: impl Into<String>) -> Self {
        LimitBreach {
            limit,
            detail: detail.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_replace_only_what_they_set() {
        let limits = Limits::default().with(&LimitOverrides {
            memory_mib: Some(16),
            ..LimitOverrides::default()
        });
        assert_eq!(limits.memory_mib, 16);
        assert_eq!(limits.fuel, Limits::default().fuel);
        assert_eq!(limits.memory_bytes(), 16 * 1024 * 1024);
    }

    #[test]
    fn exceeding_names_each_limit_above_the_ceiling() {
        let ceiling = Limits::default();
        let asked = ceiling.with(&LimitOverrides {
            memory_mib: Some(ceiling.memory_mib + 1),
            host_calls: Some(ceiling.host_calls * 2),
            ..LimitOverrides::default()
        });
        let over: Vec<_> = asked
            .exceeding(&ceiling)
            .into_iter()
            .map(|(name, ..)| name)
            .collect();
        assert_eq!(over, ["memory_mib", "host_calls"]);
        assert!(Limits::default()
            .exceeding(&Limits::default_ceiling())
            .is_empty());
    }

    #[test]
    fn metadata_runs_under_the_smaller_of_its_cap_and_the_run_limits() {
        let generous = Limits::default_ceiling().for_metadata();
        assert_eq!(generous, METADATA_LIMITS);
        let tight = Limits {
            fuel: 10,
            stack_kib: 64,
            ..Limits::default_ceiling()
        }
        .for_metadata();
        assert_eq!((tight.fuel, tight.stack_kib), (10, 64));
        assert_eq!(tight.memory_mib, METADATA_LIMITS.memory_mib);
    }
}
