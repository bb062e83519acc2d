//! Declaring parameters in `metadata()` and reading them in `run`.
//!
//! The host hands `run` every declared parameter, already checked against the
//! kind of its default; [`Params`] still checks names and kinds so that a
//! mismatch becomes a clear [`RunError::InvalidParam`] rather than a panic.

use crate::{Param, ParamSpec, ParamValue, RunError};

/// Name of the group glob parameter most strategies take.
pub const GROUPS: &str = "groups";
/// Name of the parameter bounding the wait for recovery, in seconds.
pub const RECOVERY_TIMEOUT_SECS: &str = "recovery-timeout-secs";
/// Name of the parameter setting how often recovery is checked, in seconds.
pub const POLL_SECS: &str = "poll-secs";

/// A text parameter and its default.
pub fn text(name: &str, description: &str, default: &str) -> ParamSpec {
    spec(name, description, ParamValue::Text(default.to_owned()))
}

/// An integer parameter and its default.
pub fn integer(name: &str, description: &str, default: i64) -> ParamSpec {
    spec(name, description, ParamValue::Integer(default))
}

/// A number parameter and its default.
pub fn number(name: &str, description: &str, default: f64) -> ParamSpec {
    spec(name, description, ParamValue::Number(default))
}

/// A flag parameter and its default.
pub fn flag(name: &str, description: &str, default: bool) -> ParamSpec {
    spec(name, description, ParamValue::Flag(default))
}

fn spec(name: &str, description: &str, default: ParamValue) -> ParamSpec {
    ParamSpec {
        name: name.to_owned(),
        description: description.to_owned(),
        default,
    }
}

/// `groups`: glob over Auto Scaling group names, default `*`.
pub fn groups_spec() -> ParamSpec {
    text(
        GROUPS,
        "Glob over the names of the Auto Scaling groups to act on (`*`, `?`, `[ab]`)",
        "*",
    )
}

/// `recovery-timeout-secs` with the given default.
pub fn recovery_timeout_spec(default_secs: i64) -> ParamSpec {
    integer(
        RECOVERY_TIMEOUT_SECS,
        "How long to wait for the affected groups to recover, in seconds",
        default_secs,
    )
}

/// `poll-secs` with the given default.
pub fn poll_spec(default_secs: i64) -> ParamSpec {
    integer(
        POLL_SECS,
        "How often to check whether the affected groups recovered, in seconds",
        default_secs,
    )
}

/// The parameters handed to `run`, looked up by name.
pub struct Params {
    values: Vec<Param>,
}

impl Params {
    /// Wrap the list `run` receives.
    pub fn new(values: Vec<Param>) -> Params {
        Params { values }
    }

    fn get(&self, name: &str) -> Result<&ParamValue, RunError> {
        self.values
            .iter()
            .find(|p| p.name == name)
            .map(|p| &p.value)
            .ok_or_else(|| invalid(name, "missing"))
    }

    /// A text parameter.
    pub fn text(&self, name: &str) -> Result<&str, RunError> {
        match self.get(name)? {
            ParamValue::Text(value) => Ok(value),
            other => Err(wrong_kind(name, "text", other)),
        }
    }

    /// An integer parameter.
    pub fn integer(&self, name: &str) -> Result<i64, RunError> {
        match self.get(name)? {
            ParamValue::Integer(value) => Ok(*value),
            other => Err(wrong_kind(name, "integer", other)),
        }
    }

    /// A number parameter; an integer value is accepted too.
    pub fn number(&self, name: &str) -> Result<f64, RunError> {
        match self.get(name)? {
            ParamValue::Number(value) => Ok(*value),
            ParamValue::Integer(value) => Ok(*value as f64),
            other => Err(wrong_kind(name, "number", other)),
        }
    }

    /// A flag parameter.
    pub fn flag(&self, name: &str) -> Result<bool, RunError> {
        match self.get(name)? {
            ParamValue::Flag(value) => Ok(*value),
            other => Err(wrong_kind(name, "flag", other)),
        }
    }

    /// An integer parameter that must be at least `min`, as a `u64`.
    pub fn integer_at_least(&self, name: &str, min: u64) -> Result<u64, RunError> {
        let value = self.integer(name)?;
        u64::try_from(value)
            .ok()
            .filter(|v| *v >= min)
            .ok_or_else(|| invalid(name, &format!("must be at least {min}, got {value}")))
    }

    /// A number parameter that must lie in `min..=max`.
    pub fn number_within(&self, name: &str, min: f64, max: f64) -> Result<f64, RunError> {
        let value = self.number(name)?;
        if (min..=max).contains(&value) {
            Ok(value)
        } else {
            Err(invalid(
                name,
                &format!("must be between {min} and {max}, got {value}"),
            ))
        }
    }
}

/// `RunError::InvalidParam("name: problem")`.
pub fn invalid(name: &str, problem: &str) -> RunError {
    RunError::InvalidParam(format!("{name}: {problem}"))
}

fn wrong_kind(name: &str, expected: &str, got: &ParamValue) -> RunError {
    let got = match got {
        ParamValue::Text(_) => "text",
        ParamValue::Integer(_) => "integer",
        ParamValue::Number(_) => "number",
        ParamValue::Flag(_) => "flag",
    };
    invalid(name, &format!("expected {expected}, got {got}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> Params {
        let param = |name: &str, value| Param {
            name: name.to_owned(),
            value,
        };
        Params::new(vec![
            param("groups", ParamValue::Text("web-*".to_owned())),
            param("count", ParamValue::Integer(-1)),
            param("probability", ParamValue::Integer(1)),
            param("ratio", ParamValue::Number(1.5)),
            param("verbose", ParamValue::Flag(true)),
        ])
    }

    fn message(err: RunError) -> String {
        match err {
            RunError::InvalidParam(message) => message,
            other => panic!("expected invalid-param, got {other:?}"),
        }
    }

    #[test]
    fn values_are_read_by_name_and_kind() {
        let params = params();
        assert_eq!(params.text("groups").unwrap(), "web-*");
        assert_eq!(params.integer("count").unwrap(), -1);
        assert!(params.flag("verbose").unwrap());
        // An integer is a fine number.
        assert_eq!(params.number("probability").unwrap(), 1.0);
    }

    #[test]
    fn errors_name_the_parameter() {
        let params = params();
        assert_eq!(message(params.text("zone").unwrap_err()), "zone: missing");
        assert_eq!(
            message(params.integer("groups").unwrap_err()),
            "groups: expected integer, got text"
        );
        assert_eq!(
            message(params.integer_at_least("count", 0).unwrap_err()),
            "count: must be at least 0, got -1"
        );
        assert_eq!(
            message(params.number_within("ratio", 0.0, 1.0).unwrap_err()),
            "ratio: must be between 0 and 1, got 1.5"
        );
    }
}
