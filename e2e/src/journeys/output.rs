//! The exact-output check of the journeys: the word-count job's committed part files,
//! where each word's running counts must be exactly 1, 2, … n.

use anyhow::{Context as _, ensure};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Reads every committed output line under `<dir>/out` and checks that each word's counts
/// are 1, 2, … n: none missing (a record lost), none twice (a record counted twice).
/// Returns the number of lines.
pub fn exact_counts(dir: &Path) -> anyhow::Result<usize> {
    let mut counts: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut lines = 0;
    let mut files = Vec::new();
    collect_parts(&dir.join("out"), &mut files);
    for file in files {
        // A part file is renamed into place whole when its checkpoint commits, so one
        // that vanished between listing and reading was superseded, never half-written.
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        for line in text.lines() {
            lines += 1;
            let (word, count) = parse_count(line)
                .with_context(|| format!("{}: not a count: {line}", file.display()))?;
            counts.entry(word).or_default().push(count);
        }
    }
    for (word, mut seen) in counts {
        seen.sort_unstable();
        let expected: Vec<u64> = (1..=seen.len() as u64).collect();
        ensure!(
            seen == expected,
            "the counts of '{word}' are {seen:?}, not 1..={} (records lost or repeated)",
            expected.len()
        );
    }
    Ok(lines)
}

fn collect_parts(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            collect_parts(&path, out);
        } else if name.starts_with("part-") {
            out.push(path);
        }
    }
}

/// `word,count` or `(word,count)` or `word count`.
fn parse_count(line: &str) -> Option<(String, u64)> {
    let line = line.trim().trim_start_matches('(').trim_end_matches(')');
    let (word, count) = line.rsplit_once([',', ' ', '\t'])?;
    Some((word.trim().to_string(), count.trim().parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with(tag: &str, parts: &[(&str, &str)]) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("strom-e2e-output-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for (name, text) in parts {
            let path = dir.join("out").join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        dir
    }

    #[test]
    fn counts_that_go_one_by_one_across_files_pass() {
        let dir = dir_with(
            "pass",
            &[
                ("0/part-c1-0-0", "(a,1)\n(b,1)\n"),
                ("1/part-c1-1-0", "a,2\n"),
            ],
        );
        assert_eq!(exact_counts(&dir).unwrap(), 3);
    }

    #[test]
    fn a_repeated_or_missing_count_fails_and_names_the_word() {
        let dir = dir_with(
            "twice",
            &[
                ("0/part-c1-0-0", "a,1\na,2\n"),
                ("0/part-c1-0-1", "a,2\nb,1\n"),
            ],
        );
        let e = exact_counts(&dir).unwrap_err().to_string();
        assert!(e.contains("'a' are [1, 2, 2]"), "{e}");
        let dir = dir_with("missing", &[("0/part-c1-0-0", "a,1\na,3\n")]);
        let e = exact_counts(&dir).unwrap_err().to_string();
        assert!(e.contains("'a' are [1, 3]"), "{e}");
    }

    #[test]
    fn in_progress_files_are_not_output() {
        let dir = dir_with(
            "hidden",
            &[
                ("0/part-c1-0-0", "a,1\n"),
                ("0/.part-c1-0-1.inprogress", "a,7\n"),
            ],
        );
        assert_eq!(exact_counts(&dir).unwrap(), 1);
    }
}
