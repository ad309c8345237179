//! `--arg key=value` options of a job: declared with defaults, checked by name, read by
//! type. Every error names the argument, what was given, and what is accepted.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// One argument a job accepts.
#[derive(Clone, Copy, Debug)]
pub struct ArgSpec {
    pub name: &'static str,
    /// The value when not given ("" for none).
    pub default: &'static str,
    pub help: &'static str,
}

impl ArgSpec {
    pub const fn new(name: &'static str, default: &'static str, help: &'static str) -> Self {
        ArgSpec {
            name,
            default,
            help,
        }
    }
}

/// A bad `--arg`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgError(pub String);

impl fmt::Display for ArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ArgError {}

/// The arguments of one job run, defaults filled in.
#[derive(Clone, Debug)]
pub struct JobArgs {
    job: String,
    specs: Vec<ArgSpec>,
    values: BTreeMap<String, String>,
}

fn accepted(specs: &[ArgSpec]) -> String {
    if specs.is_empty() {
        return "this job takes no arguments".into();
    }
    let list: Vec<String> = specs
        .iter()
        .map(|s| {
            if s.default.is_empty() {
                format!("{} ({})", s.name, s.help)
            } else {
                format!("{} ({}; default {})", s.name, s.help, s.default)
            }
        })
        .collect();
    format!("accepted: {}", list.join(", "))
}

impl JobArgs {
    /// Checks `given` (`key=value` strings) against `specs`.
    pub fn parse(job: &str, specs: &[ArgSpec], given: &[String]) -> Result<JobArgs, ArgError> {
        let mut values: BTreeMap<String, String> = specs
            .iter()
            .map(|s| (s.name.to_string(), s.default.to_string()))
            .collect();
        for raw in given {
            let Some((k, v)) = raw.split_once('=') else {
                return Err(ArgError(format!(
                    "--arg {raw}: expected key=value; {}",
                    accepted(specs)
                )));
            };
            let k = k.trim();
            if !specs.iter().any(|s| s.name == k) {
                return Err(ArgError(format!(
                    "--arg {raw}: job '{job}' has no argument '{k}'; {}",
                    accepted(specs)
                )));
            }
            values.insert(k.to_string(), v.to_string());
        }
        Ok(JobArgs {
            job: job.to_string(),
            specs: specs.to_vec(),
            values,
        })
    }

    /// Arguments from pairs (for tests and embedding).
    pub fn from_pairs(
        job: &str,
        specs: &[ArgSpec],
        pairs: &[(&str, &str)],
    ) -> Result<JobArgs, ArgError> {
        let given: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        Self::parse(job, specs, &given)
    }

    pub fn job(&self) -> &str {
        &self.job
    }

    fn help_of(&self, name: &str) -> &str {
        self.specs
            .iter()
            .find(|s| s.name == name)
            .map_or("", |s| s.help)
    }

    fn bad(&self, name: &str, value: &str, expected: &str) -> ArgError {
        ArgError(format!(
            "--arg {name}={value}: expected {expected} ({name}: {})",
            self.help_of(name)
        ))
    }

    /// The raw value ("" when unset and without default).
    pub fn str(&self, name: &str) -> &str {
        self.values.get(name).map_or("", String::as_str)
    }

    /// `None` when empty.
    pub fn opt_str(&self, name: &str) -> Option<&str> {
        Some(self.str(name)).filter(|s| !s.is_empty())
    }

    /// A path, `None` when empty.
    pub fn path(&self, name: &str) -> Option<PathBuf> {
        self.opt_str(name).map(PathBuf::from)
    }

    pub fn u64(&self, name: &str) -> Result<u64, ArgError> {
        let v = self.str(name);
        v.trim()
            .replace('_', "")
            .parse()
            .map_err(|_| self.bad(name, v, "a whole number (0 or more)"))
    }

    /// A count where 0 (or "unbounded") means no limit.
    pub fn count(&self, name: &str) -> Result<Option<u64>, ArgError> {
        let v = self.str(name).trim();
        if v.eq_ignore_ascii_case("unbounded") || v == "0" {
            return Ok(None);
        }
        self.u64(name)
            .map(Some)
            .map_err(|_| self.bad(name, v, "a whole number, or 0/unbounded for no limit"))
    }

    pub fn f64(&self, name: &str) -> Result<f64, ArgError> {
        let v = self.str(name);
        match v.trim().parse::<f64>() {
            Ok(x) if x.is_finite() => Ok(x),
            _ => Err(self.bad(name, v, "a number")),
        }
    }

    /// A positive rate, `None` when empty or 0.
    pub fn rate(&self, name: &str) -> Result<Option<f64>, ArgError> {
        if self.str(name).trim().is_empty() {
            return Ok(None);
        }
        let v = self.f64(name)?;
        if v < 0.0 {
            return Err(self.bad(
                name,
                self.str(name),
                "a rate of 0 or more records per second",
            ));
        }
        Ok((v > 0.0).then_some(v))
    }

    pub fn bool(&self, name: &str) -> Result<bool, ArgError> {
        let v = self.str(name);
        match v.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" | "on" => Ok(true),
            "false" | "no" | "0" | "off" => Ok(false),
            _ => Err(self.bad(name, v, "true or false")),
        }
    }

    /// A duration like `500ms`, `5s`, `2m`, `1h` (a bare number is milliseconds).
    pub fn duration(&self, name: &str) -> Result<Duration, ArgError> {
        let v = self.str(name);
        parse_duration(v).ok_or_else(|| self.bad(name, v, "a duration like 500ms, 5s, 2m or 1h"))
    }

    /// One of `choices`.
    pub fn choice(&self, name: &str, choices: &[&'static str]) -> Result<&'static str, ArgError> {
        let v = self.str(name);
        choices
            .iter()
            .find(|c| c.eq_ignore_ascii_case(v.trim()))
            .copied()
            .ok_or_else(|| self.bad(name, v, &format!("one of {}", choices.join(", "))))
    }
}

/// Parses `500ms`, `5s`, `2m`, `1h`, `1d`, or a bare number of milliseconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    if !n.is_finite() || n < 0.0 {
        return None;
    }
    let ms = match unit.trim() {
        "" | "ms" => n,
        "s" => n * 1e3,
        "m" | "min" => n * 60e3,
        "h" => n * 3_600e3,
        "d" => n * 86_400e3,
        _ => return None,
    };
    Some(Duration::from_micros((ms * 1e3) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPECS: &[ArgSpec] = &[
        ArgSpec::new("events", "100", "number of events to generate"),
        ArgSpec::new("window", "5s", "window size"),
        ArgSpec::new("input", "", "file to read instead of generated data"),
    ];

    #[test]
    fn defaults_and_overrides() {
        let a = JobArgs::parse("j", SPECS, &["events=7".into()]).unwrap();
        assert_eq!(a.u64("events"), Ok(7));
        assert_eq!(a.duration("window"), Ok(Duration::from_secs(5)));
        assert_eq!(a.path("input"), None);
    }

    #[test]
    fn unknown_argument_lists_the_accepted_ones() {
        let e = JobArgs::parse("j", SPECS, &["evnts=7".into()]).unwrap_err();
        assert_eq!(
            e.0,
            "--arg evnts=7: job 'j' has no argument 'evnts'; accepted: events (number of events to generate; \
             default 100), window (window size; default 5s), input (file to read instead of generated data)"
        );
    }

    #[test]
    fn bad_value_names_the_argument_and_the_expected_form() {
        let a = JobArgs::parse("j", SPECS, &["events=many".into()]).unwrap();
        assert_eq!(
            a.u64("events").unwrap_err().0,
            "--arg events=many: expected a whole number (0 or more) (events: number of events to generate)"
        );
        let a = JobArgs::parse("j", SPECS, &["window=soon".into()]).unwrap();
        assert!(
            a.duration("window")
                .unwrap_err()
                .0
                .contains("a duration like 500ms")
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("10"), Some(Duration::from_millis(10)));
        assert_eq!(parse_duration("-1s"), None);
        assert_eq!(parse_duration("5 parsecs"), None);
    }
}
