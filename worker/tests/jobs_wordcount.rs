//! The `word-count` job: its pipeline on fixed text in streaming and batch mode at several
//! parallelisms, and the whole job through the registry with files.

// Test helpers fail the test on unexpected errors, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{read_parts, sorted};
use std::path::PathBuf;
use strom::jobs::wordcount::{HAMLET, WordCount, word_counts};
use strom::prelude::*;

const TEXT: &[&str] = &[
    "To be, or not to be,--that is the question:--",
    "",
    "To be: a BE-ing!",
];

fn text() -> Vec<String> {
    TEXT.iter().map(|s| s.to_string()).collect()
}

fn lines<T: std::fmt::Display>(values: &[T]) -> Vec<String> {
    values.iter().map(|v| v.to_string()).collect()
}

fn run_pipeline(parallelism: usize, mode: RuntimeMode) -> Vec<String> {
    let env = StreamEnv::new();
    env.set_parallelism(parallelism).set_runtime_mode(mode);
    let counts = word_counts(&env.from_collection(text())).collect();
    env.execute("word count").unwrap();
    lines(&counts.values())
}

/// A fresh directory under the system's temp directory.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "strom-jobs-wordcount-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Builds the job from the registry with `args` and runs it.
fn run_job(args: &[String], configure: impl FnOnce(&StreamEnv)) -> Result<JobResult, String> {
    let registry = strom::JobRegistry::builtin();
    let spec = registry
        .find("word-count")
        .expect("word-count is a built-in job");
    let args = strom::JobArgs::parse(spec.name, spec.args, args).map_err(|e| e.to_string())?;
    let env = StreamEnv::new();
    configure(&env);
    (spec.build)(&env, &args).map_err(|e| format!("{e:#}"))?;
    env.execute(spec.name).map_err(|e| e.to_string())
}

#[test]
fn streaming_emits_every_updated_count_in_order() {
    assert_eq!(
        run_pipeline(1, RuntimeMode::Streaming),
        vec![
            "(to,1)",
            "(be,1)",
            "(or,1)",
            "(not,1)",
            "(to,2)",
            "(be,2)",
            "(that,1)",
            "(is,1)",
            "(the,1)",
            "(question,1)",
            "(to,3)",
            "(be,3)",
            "(a,1)",
            "(be,4)",
            "(ing,1)",
        ]
    );
}

#[test]
fn batch_emits_only_final_counts() {
    assert_eq!(
        sorted(run_pipeline(1, RuntimeMode::Batch)),
        vec![
            "(a,1)",
            "(be,4)",
            "(ing,1)",
            "(is,1)",
            "(not,1)",
            "(or,1)",
            "(question,1)",
            "(that,1)",
            "(the,1)",
            "(to,3)",
        ]
    );
}

#[test]
fn results_are_the_same_at_parallelism_1_2_and_4() {
    for mode in [RuntimeMode::Streaming, RuntimeMode::Batch] {
        let expected = sorted(run_pipeline(1, mode));
        for p in [2, 4] {
            assert_eq!(
                sorted(run_pipeline(p, mode)),
                expected,
                "{mode:?} at parallelism {p}"
            );
        }
    }
}

#[test]
fn the_job_reads_a_file_and_writes_part_files() {
    let dir = temp_dir("files");
    let input = dir.join("text.txt");
    std::fs::write(&input, TEXT.join("\n")).unwrap();
    for (mode, p) in [
        (RuntimeMode::Streaming, 1),
        (RuntimeMode::Streaming, 2),
        (RuntimeMode::Batch, 4),
    ] {
        let output = dir.join(format!("out-{mode:?}-{p}"));
        let args = [
            format!("input={}", input.display()),
            format!("output={}", output.display()),
        ];
        run_job(&args, |env| {
            env.set_parallelism(p).set_runtime_mode(mode);
        })
        .unwrap();
        assert_eq!(
            read_parts(&output),
            sorted(run_pipeline(1, mode)),
            "{mode:?} at parallelism {p}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn generated_input_cycles_through_the_soliloquy() {
    let dir = temp_dir("generated");
    let output = dir.join("out");
    // Two passes over the 35 lines.
    let args = [
        "events=70".to_string(),
        format!("output={}", output.display()),
    ];
    run_job(&args, |env| {
        env.set_parallelism(2).set_runtime_mode(RuntimeMode::Batch);
    })
    .unwrap();
    let counts = read_parts(&output);
    assert_eq!(HAMLET.len(), 35);
    assert_eq!(counts.len(), 170, "distinct words");
    for expected in [
        "(be,8)",
        "(to,30)",
        "(the,44)",
        "(of,30)",
        "(and,24)",
        "(question,2)",
        "(ophelia,2)",
    ] {
        assert!(
            counts.contains(&expected.to_string()),
            "{expected} in {counts:?}"
        );
    }
    let total: u64 = counts
        .iter()
        .map(|l| {
            l.trim_end_matches(')')
                .rsplit(',')
                .next()
                .unwrap()
                .parse::<u64>()
                .unwrap()
        })
        .sum();
    assert_eq!(total, 2 * 287, "every word of both passes counted once");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn unreadable_lines_are_dead_letters_and_the_job_goes_on() {
    let dir = temp_dir("dead-letters");
    let input = dir.join("text.txt");
    std::fs::write(&input, b"to be\n\xff\xfe not text\nor not\n").unwrap();
    let output = dir.join("out");
    let args = [
        format!("input={}", input.display()),
        format!("output={}", output.display()),
    ];
    let result = run_job(&args, |env| {
        env.set_runtime_mode(RuntimeMode::Batch);
    })
    .unwrap();
    assert_eq!(
        read_parts(&output),
        vec!["(be,1)", "(not,1)", "(or,1)", "(to,1)"]
    );
    assert_eq!(
        result
            .metrics
            .operator("Source: Lines")
            .unwrap()
            .totals()
            .dead_letters,
        1
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_arguments_are_reported_by_name() {
    let err = run_job(&["events=many".to_string()], |_| {}).unwrap_err();
    assert!(
        err.starts_with("--arg events=many: expected a whole number"),
        "{err}"
    );
    let err = run_job(&["events=0".to_string()], |env| {
        env.set_runtime_mode(RuntimeMode::Batch);
    })
    .unwrap_err();
    assert!(err.contains("batch needs bounded input"), "{err}");
    let err = run_job(&["input=/no/such/file".to_string()], |_| {}).unwrap_err();
    assert!(err.contains("/no/such/file does not exist"), "{err}");
}

#[test]
fn output_lines_look_like_flink_tuples() {
    assert_eq!(WordCount::new("be", 2).to_string(), "(be,2)");
}
