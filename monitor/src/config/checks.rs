//! Checks of single values: each turns a raw string into a typed value or a
//! one-line reason, and [`Checker`] collects the reasons so one run reports
//! every problem at once.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::units::parse_duration;

/// Every problem found in the environment, one line each.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigErrors(pub Vec<String>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "invalid configuration ({} problem(s)):", self.0.len())?;
        for line in &self.0 {
            writeln!(f, "  {line}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Collects problems while converting.
pub(super) struct Checker {
    pub(super) problems: Vec<String>,
}

impl Checker {
    pub(super) fn required<'a>(&mut self, var: &str, value: &'a Option<String>) -> Option<&'a str> {
        let v = value.as_deref();
        if v.is_none() {
            self.problems.push(format!("{var}: required but not set"));
        }
        v
    }

    pub(super) fn convert<T>(
        &mut self,
        var: &str,
        value: Option<&str>,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let value = value?;
        parse(value)
            .map_err(|why| self.problems.push(format!("{var}={value:?}: {why}")))
            .ok()
    }

    /// Records the problem of a check that names its variables itself.
    pub(super) fn check(&mut self, result: Result<(), String>) {
        if let Err(why) = result {
            self.problems.push(why);
        }
    }

    /// A name used in file and object paths: non-empty, no '/', no '..', no NUL.
    pub(super) fn path_name(&mut self, var: &str, value: Option<&str>) -> Option<String> {
        self.convert(var, value, |v| {
            if v.trim().is_empty() {
                Err("must not be empty".into())
            } else if v.contains('/') || v.contains('\0') || v.contains("..") {
                Err(
                    "must not contain '/', '..' or NUL (it is used in file and object names)"
                        .into(),
                )
            } else {
                Ok(v.to_string())
            }
        })
    }
}

pub(super) fn non_zero_duration(v: &str) -> Result<Duration, String> {
    let d = parse_duration(v)?;
    if d.is_zero() {
        Err("must be above zero".into())
    } else {
        Ok(d)
    }
}

pub(super) fn positive<T: std::str::FromStr + PartialEq + Default>(v: &str) -> Result<T, String> {
    let n: T = v
        .trim()
        .parse()
        .map_err(|_| "not a whole number".to_string())?;
    if n == T::default() {
        Err("must be above zero".into())
    } else {
        Ok(n)
    }
}

pub(super) fn multiplier(v: &str) -> Result<f64, String> {
    let m: f64 = v.trim().parse().map_err(|_| "not a number".to_string())?;
    if m.is_finite() && m > 1.0 {
        Ok(m)
    } else {
        Err("must be a finite number above 1".into())
    }
}

/// A directory given as an absolute path: a relative one would depend on the
/// working directory the container happens to start in.
/// A share of the memory limit: `90%` or `0.9`, strictly between 0 and 1.
pub(super) fn share(v: &str) -> Result<f64, String> {
    let v = v.trim();
    let (number, scale) = match v.strip_suffix('%') {
        Some(percent) => (percent.trim(), 100.0),
        None => (v, 1.0),
    };
    let share = number
        .parse::<f64>()
        .map_err(|_| "expected a share of the limit such as 90% or 0.9".to_string())?
        / scale;
    if share.is_finite() && share > 0.0 && share < 1.0 {
        Ok(share)
    } else {
        Err("must be above 0 and below 100% (1.0)".into())
    }
}

pub(super) fn absolute_dir(v: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(v);
    if v.trim().is_empty() {
        Err("must not be empty".into())
    } else if v.contains('\0') {
        Err("must not contain NUL".into())
    } else if !path.is_absolute() {
        Err("must be an absolute path".into())
    } else {
        Ok(path)
    }
}

/// A Slack channel name or ID (`alerts-prod`, `#alerts-prod`, `C0123ABC`);
/// empty means "route by ENVIRONMENT". Slack names are at most 80 characters
/// without spaces, so anything else is a typo better caught at start.
pub(super) fn slack_channel(v: &str) -> Result<(), String> {
    let name = v.trim().trim_start_matches('#');
    if v.trim().is_empty() {
        Ok(())
    } else if name.is_empty() || name.chars().count() > 80 {
        Err("must be a channel name or ID of 1 to 80 characters".into())
    } else if !name
        .chars()
        .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        Err("a channel name has only letters, digits, '-', '_' and '.'".into())
    } else {
        Ok(())
    }
}

/// The token in the file at `path`, trimmed (a Secret mounted as a file
/// usually ends in a newline). Its content never appears in the error.
pub(super) fn token_file(path: &str) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read it: {e}"))?;
    let token = text.trim();
    if token.is_empty() {
        Err("the file is empty".into())
    } else {
        Ok(token.to_string())
    }
}

pub(super) fn boolean(v: &str) -> Result<bool, String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" | "" => Ok(false),
        _ => Err("expected true or false".into()),
    }
}
