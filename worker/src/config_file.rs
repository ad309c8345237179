//! The `--config` file (or `STROM_CONFIG`): TOML with one section per command, whose keys
//! are that command's long flags without the dashes. It is read before the command line
//! is parsed and its options are placed before the ones typed, so a flag on the command
//! line wins over the file, and the file wins over environment variables and defaults.
//!
//! ```toml
//! [master]
//! bind = "0.0.0.0:6123"
//! rest-bind = "0.0.0.0:8081"
//! heartbeat-timeout-ms = 10000
//! restart-strategy = "fixed-delay"
//! restart-attempts = 3
//! arg = ["input=/data/in", "output=/data/out"]   # repeated flags: a list
//! run-id = "v2"                    # this deployment of the job (STROM_RUN_ID)
//! from-latest-checkpoint = true    # switches: true adds the flag, false leaves it out
//! after-job-end = "serve"          # or "exit" (STROM_AFTER_JOB_END)
//! leader-lease = "word-count-master"   # elect the leader with this Lease (STROM_LEADER_LEASE)
//! leader-lease-namespace = "jobs"      # (POD_NAMESPACE) [default: the client's namespace]
//! leader-identity = "master-0"         # (POD_NAME) [default: the host name]
//! leader-lease-duration-ms = 15000
//! leader-renew-deadline-ms = 10000
//! leader-retry-period-ms = 2000
//! ha-configmap = "word-count-ha"       # kept by the leader (STROM_HA_CONFIGMAP)
//!
//! [worker]
//! master = "http://strom-master:6123"
//! slots = 2
//! ```

use std::ffi::OsString;

/// Commands that take options from the file.
const SECTIONS: [&str; 9] = [
    "run",
    "master",
    "worker",
    "submit",
    "list",
    "status",
    "cancel",
    "savepoint",
    "stop",
];

/// Options that take a value before the command (so their value is not the command).
const GLOBAL_WITH_VALUE: [&str; 3] = ["--log-level", "--log-format", "--config"];

/// The command line with the file's options for its command inserted after the command
/// name; `--config` itself is taken out. Reads the file named by `--config` or, without
/// it, by `STROM_CONFIG`.
pub(crate) fn expand(args: Vec<OsString>) -> Result<Vec<OsString>, String> {
    let (args, path) = take_config_flag(args);
    let Some(path) = path.or_else(|| std::env::var_os("STROM_CONFIG").map(Into::into)) else {
        return Ok(args);
    };
    let text =
        std::fs::read_to_string(&path).map_err(|e| format!("--config {}: {e}", path.display()))?;
    expand_with(args, &text).map_err(|e| format!("config file {}: {e}", path.display()))
}

fn take_config_flag(args: Vec<OsString>) -> (Vec<OsString>, Option<std::path::PathBuf>) {
    let mut out = Vec::with_capacity(args.len());
    let mut path = None;
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        let text = a.to_string_lossy();
        if text == "--config" {
            path = it.next().map(Into::into);
        } else if let Some(p) = text.strip_prefix("--config=") {
            path = Some(p.into());
        } else {
            out.push(a);
        }
    }
    (out, path)
}

/// `expand` with the file's text at hand.
pub(crate) fn expand_with(args: Vec<OsString>, text: &str) -> Result<Vec<OsString>, String> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| e.to_string())?;
    for section in table.keys() {
        if !SECTIONS.contains(&section.as_str()) {
            return Err(format!(
                "unknown section [{section}]; sections are {}",
                SECTIONS.map(|s| format!("[{s}]")).join(", ")
            ));
        }
    }
    let Some(at) = command_position(&args) else {
        return Ok(args);
    };
    let command = args[at].to_string_lossy().into_owned();
    let Some(section) = table.get(&command) else {
        return Ok(args);
    };
    let Some(options) = section.as_table() else {
        return Err(format!("[{command}] must be a table of options"));
    };
    let mut inserted = Vec::new();
    for (key, value) in options {
        let flag = format!("--{key}");
        let values = match value {
            toml::Value::Array(items) => items.iter().collect(),
            other => vec![other],
        };
        for v in values {
            match v {
                toml::Value::String(s) => inserted.extend([flag.clone(), s.clone()]),
                toml::Value::Integer(n) => inserted.extend([flag.clone(), n.to_string()]),
                toml::Value::Float(x) => inserted.extend([flag.clone(), x.to_string()]),
                toml::Value::Boolean(true) => inserted.push(flag.clone()),
                toml::Value::Boolean(false) => {}
                _ => {
                    return Err(format!(
                        "[{command}] {key}: give a string, number, true/false, or a list of them"
                    ));
                }
            }
        }
    }
    let mut out = args;
    out.splice(at + 1..at + 1, inserted.into_iter().map(OsString::from));
    Ok(out)
}

/// Where the command name is: the first word after the program that is not an option
/// or a global option's value.
fn command_position(args: &[OsString]) -> Option<usize> {
    let mut i = 1;
    while i < args.len() {
        let a = args[i].to_string_lossy();
        if GLOBAL_WITH_VALUE.contains(&a.as_ref()) {
            i += 2;
        } else if a.starts_with('-') {
            i += 1;
        } else {
            return Some(i);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<OsString> {
        s.split_whitespace().map(OsString::from).collect()
    }

    fn text(v: Vec<OsString>) -> String {
        v.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    const FILE: &str = r#"
        [master]
        bind = "127.0.0.1:7000"
        heartbeat-timeout-ms = 2500
        arg = ["input=a.txt", "output=out"]
        verbose = false

        [worker]
        slots = 2
    "#;

    #[test]
    fn the_command_s_section_goes_before_the_typed_options() {
        // (Keys come in the file's sorted order; the order of options does not matter.)
        let out = expand_with(
            args("strom --log-level debug master word-count --bind 0.0.0.0:1"),
            FILE,
        )
        .expect("expands");
        assert_eq!(
            text(out),
            "strom --log-level debug master --arg input=a.txt --arg output=out \
             --bind 127.0.0.1:7000 --heartbeat-timeout-ms 2500 word-count --bind 0.0.0.0:1"
        );
        assert_eq!(
            text(expand_with(args("strom worker"), FILE).expect("expands")),
            "strom worker --slots 2"
        );
        // A command without a section, or no command at all: unchanged.
        assert_eq!(
            text(expand_with(args("strom jobs"), FILE).expect("expands")),
            "strom jobs"
        );
        assert_eq!(
            text(expand_with(args("strom --help"), FILE).expect("expands")),
            "strom --help"
        );
    }

    #[test]
    fn config_flag_is_taken_out_in_both_spellings() {
        let (rest, path) = take_config_flag(args("strom --config a.toml worker"));
        assert_eq!(
            (text(rest), path),
            ("strom worker".into(), Some("a.toml".into()))
        );
        let (rest, path) = take_config_flag(args("strom worker --config=b.toml"));
        assert_eq!(
            (text(rest), path),
            ("strom worker".into(), Some("b.toml".into()))
        );
    }

    #[test]
    fn mistakes_name_the_section_or_key() {
        let e = expand_with(args("strom master"), "[mastr]\nbind = \"x\"").expect_err("typo");
        assert!(
            e.contains("unknown section [mastr]") && e.contains("[master]"),
            "{e}"
        );
        let e = expand_with(args("strom master"), "[master]\nbind = { a = 1 }").expect_err("table");
        assert!(e.contains("[master] bind"), "{e}");
        let e = expand_with(args("strom master"), "[master\n").expect_err("syntax");
        assert!(!e.is_empty());
    }
}
