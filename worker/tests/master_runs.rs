//! Runs of an application-mode master (`strom master <job> --run-id <id>`) as a
//! Kubernetes operator drives them, with real processes on loopback: a run stopped with
//! a savepoint stays stopped when its master restarts; the next run starts from that
//! savepoint and, restarted, from its own newest checkpoint (the committed output of
//! both runs is exactly an undisturbed run's); a last-state run picks the newest
//! checkpoint of any run, a stateless one starts fresh beside them; a cancelled run is
//! recorded, and a master started again with its run id exits with it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::cluster::{
    LINES, STROM, completed, eventually, job, logged_master as master, run_alone, running_job_id,
    sigterm, wait_for_exit, worker,
};
use common::{Processes, TempDir, free_port, read_parts};
use http::Method;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use strom::cluster::client::RestClient;

/// What `strom savepoint inspect --output json` says of the checkpoint in `dir`.
fn inspect(dir: &str) -> serde_json::Value {
    let out = Command::new(STROM)
        .args(["savepoint", "inspect", dir, "--output", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The result a run recorded: JSON in a sealed file (an 8-byte header, a CRC-32 after).
fn recorded_result(dir: &Path, run: &str) -> serde_json::Value {
    let path = dir.join(format!("checkpoints/word-count/results/{run}.json"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&bytes[..5], b"STROM");
    serde_json::from_slice(&bytes[8..bytes.len() - 4]).unwrap()
}

/// The completed checkpoints under `dir/checkpoints/word-count`, by id.
fn completed_checkpoints(dir: &Path) -> Vec<u64> {
    let mut ids: Vec<u64> = std::fs::read_dir(dir.join("checkpoints/word-count"))
        .unwrap()
        .filter_map(|e| {
            let e = e.unwrap();
            let id = e.file_name().to_str()?.strip_prefix("chk-")?.parse().ok()?;
            e.path().join("_metadata").exists().then_some(id)
        })
        .collect();
    ids.sort_unstable();
    ids
}

/// Every file under `dir` with its contents, sorted: what a master changed there.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect();
    files.sort();
    files
}

/// The word counts in `output` (written after a restore) go on from where the
/// checkpoint had them, not from 1, and reach the counts of all `LINES` lines.
fn assert_counts_go_on_from_a_checkpoint(output: &Path) {
    use strom::jobs::wordcount::{generated_line, tokenize};
    let mut totals: std::collections::BTreeMap<String, u64> = Default::default();
    for i in 0..LINES {
        for w in tokenize(&generated_line(i)) {
            *totals.entry(w).or_default() += 1;
        }
    }
    let mut seen: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
    for line in read_parts(output) {
        let (word, count) = line
            .trim_start_matches('(')
            .trim_end_matches(')')
            .rsplit_once(',')
            .unwrap();
        let count: u64 = count.parse().unwrap();
        let e = seen.entry(word.to_string()).or_insert((u64::MAX, 0));
        e.0 = e.0.min(count);
        e.1 = e.1.max(count);
    }
    for (word, total) in &totals {
        let (first, last) = seen[word];
        assert_eq!(last, *total, "{word}");
        if word == "the" {
            assert!(first > 1, "'the' counted from scratch");
        }
    }
}

#[test]
fn runs_start_where_their_run_id_says_and_a_stopped_run_never_runs_again() {
    let tmp = TempDir::new("master-runs");
    let dir = tmp.path();
    let expected = run_alone(&job(dir, "alone", &[]), &dir.join("alone"));
    let (port, rest_port) = (free_port(), free_port());
    let api = RestClient::new(&format!("http://127.0.0.1:{rest_port}")).unwrap();
    let savepoints = dir.join("savepoints").display().to_string();
    // Exactly-once output into `out`, paced so that each run is stopped or killed mid-way.
    let exactly_once = |run: &str, extra: &[&str]| -> Vec<String> {
        let mut args = job(
            dir,
            "out",
            &[
                "--arg",
                "exactly-once=true",
                "--arg",
                "rate=2000",
                "--checkpoint-interval-ms",
                "300",
                "--run-id",
                run,
            ],
        );
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };

    // Run r1, stopped with a savepoint: its master stays up and says how the job ended.
    let r1 = exactly_once("r1", &["--after-job-end", "serve"]);
    let log = dir.join("r1.log");
    let mut processes = Processes(vec![
        master(port, rest_port, &r1, &log),
        worker(port, "w1"),
        worker(port, "w2"),
    ]);
    let id = running_job_id(&api, 30);
    eventually(30, "r1 completed no checkpoints", || {
        (completed(&api, &id) >= 2).then_some(())
    });
    let body = serde_json::json!({ "target_directory": savepoints });
    let stop = api
        .call_with(Method::POST, &format!("/v1/jobs/{id}/stop"), Some(&body))
        .unwrap();
    let trigger = format!(
        "/v1/jobs/{id}/savepoints/{}",
        stop["request_id"].as_str().unwrap()
    );
    let savepoint = eventually(30, "the stop's savepoint did not complete", || {
        let status = api.call(Method::GET, &trigger).ok()?;
        assert_ne!(status["status"], "FAILED", "{status}");
        status["location"].as_str().map(String::from)
    });
    let view = eventually(30, "r1 did not end", || {
        let view = api.call(Method::GET, &format!("/v1/jobs/{id}")).ok()?;
        (view["state"] != "Cancelling" && view["state"] != "Running").then_some(view)
    });
    assert_eq!(view["state"], "Finished", "{view}");
    assert_eq!(view["savepoint"], savepoint.as_str(), "{view}");
    assert_eq!(view["run_id"], "r1", "{view}");
    assert!(
        view["last_checkpoint"]
            .as_str()
            .unwrap()
            .contains("word-count/chk-"),
        "{view}"
    );
    // Well past the grace an exiting master gives its REST API: still up, still saying so.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        processes.0[0].try_wait().unwrap().is_none(),
        "the master exited:\n{}",
        std::fs::read_to_string(&log).unwrap()
    );
    let jobs = api.call(Method::GET, "/v1/jobs").unwrap();
    assert_eq!(jobs["jobs"][0]["state"], "Finished", "{jobs}");
    assert_eq!(
        api.call(Method::GET, &trigger).unwrap()["location"],
        savepoint.as_str()
    );
    let result = recorded_result(dir, "r1");
    assert_eq!(result["state"], "Finished", "{result}");
    assert_eq!(result["savepoint"], savepoint.as_str(), "{result}");
    assert_eq!(result["job_id"], id.as_str(), "{result}");
    assert_eq!(inspect(&savepoint)["run_id"], "r1");
    let stopped_output = snapshot(&dir.join("out"));

    // Its master killed and started again with run id r1: the job does not run again.
    processes.0[0].kill().unwrap();
    let _ = processes.0[0].wait();
    let log = dir.join("r1-again.log");
    processes.0[0] = master(port, rest_port, &r1, &log);
    let again = eventually(30, "the restarted master did not answer", || {
        api.call(Method::GET, &format!("/v1/jobs/{id}")).ok()
    });
    assert_eq!(again["state"], "Finished", "{again}");
    assert_eq!(again["savepoint"], savepoint.as_str(), "{again}");
    assert_eq!(again["run_id"], "r1", "{again}");
    assert_eq!(
        api.call(Method::GET, &trigger).unwrap()["location"],
        savepoint.as_str()
    );
    eventually(30, "the workers did not attach again", || {
        let overview = api.call(Method::GET, "/v1/overview").ok()?;
        (overview["workers"] == 2).then_some(())
    });
    std::thread::sleep(Duration::from_millis(1000));
    let overview = api.call(Method::GET, "/v1/overview").unwrap();
    assert_eq!(overview["subtasks"], 0, "{overview}");
    assert_eq!(overview["jobs_finished"], 1, "{overview}");
    assert!(
        snapshot(&dir.join("out")) == stopped_output,
        "the stopped run wrote output again"
    );
    // SIGTERM ends a serving master, with success.
    sigterm(&processes.0[0]);
    let (status, text) = wait_for_exit(&mut processes.0[0], &log, Duration::from_secs(10));
    assert!(status.success(), "{text}");
    assert!(text.contains("run 'r1' ended already"), "{text}");

    // Run r2 starts from r1's savepoint, and is killed once it completed checkpoints.
    let r2 = exactly_once("r2", &["--from-checkpoint", &savepoint]);
    let log = dir.join("r2.log");
    processes.0[0] = master(port, rest_port, &r2, &log);
    let id = running_job_id(&api, 30);
    eventually(30, "r2 completed no checkpoints", || {
        (completed(&api, &id) >= 2).then_some(())
    });
    processes.0[0].kill().unwrap();
    let _ = processes.0[0].wait();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains(&format!("starting from --from-checkpoint {savepoint}")),
        "{text}"
    );
    let newest = *completed_checkpoints(dir).last().unwrap();
    let newest_dir = dir.join(format!("checkpoints/word-count/chk-{newest}"));
    assert_eq!(inspect(newest_dir.to_str().unwrap())["run_id"], "r2");

    // Run r3, a last-state upgrade without checkpoints of its own: r2's newest.
    let r3 = job(
        dir,
        "out3",
        &[
            "--run-id",
            "r3",
            "--from-latest-checkpoint",
            "--allow-non-restored-state",
        ],
    );
    let log = dir.join("r3.log");
    processes.0[0] = master(port, rest_port, &r3, &log);
    let (status, text) = wait_for_exit(&mut processes.0[0], &log, Duration::from_secs(60));
    assert!(status.success(), "{text}");
    assert!(
        text.contains(&format!(
            "starting from the newest checkpoint of the job's directory, {}",
            newest_dir.display()
        )) && text.contains("taken by run 'r2'"),
        "{text}"
    );
    assert_counts_go_on_from_a_checkpoint(&dir.join("out3"));
    assert_eq!(recorded_result(dir, "r3")["state"], "Finished");

    // Run r4, a stateless upgrade: fresh, although checkpoints are there.
    let r4 = job(dir, "out4", &["--run-id", "r4"]);
    let log = dir.join("r4.log");
    processes.0[0] = master(port, rest_port, &r4, &log);
    let (status, text) = wait_for_exit(&mut processes.0[0], &log, Duration::from_secs(60));
    assert!(status.success(), "{text}");
    assert!(text.contains("run 'r4' has no checkpoint of its own and no --from-checkpoint and no --from-latest-checkpoint: starting fresh"), "{text}");
    assert_eq!(read_parts(&dir.join("out4")), expected);
    assert_eq!(*completed_checkpoints(dir).last().unwrap(), newest);

    // r2's master back with the same options: from r2's newest checkpoint, not from the
    // savepoint, to the end. What r1 and r2 committed is exactly an undisturbed run.
    let log = dir.join("r2-again.log");
    processes.0[0] = master(port, rest_port, &r2, &log);
    let (status, text) = wait_for_exit(&mut processes.0[0], &log, Duration::from_secs(90));
    assert!(status.success(), "{text}");
    assert!(
        text.contains(&format!(
            "run 'r2' resumes from its own newest checkpoint, {}",
            newest_dir.display()
        )),
        "{text}"
    );
    assert_eq!(read_parts(&dir.join("out")), expected);
    let result = recorded_result(dir, "r2");
    assert_eq!(result["state"], "Finished", "{result}");
    assert_eq!(result["savepoint"], serde_json::Value::Null, "{result}");
}

#[test]
fn a_cancelled_run_is_recorded_and_a_master_started_again_with_its_run_id_exits_with_it() {
    let tmp = TempDir::new("master-runs-cancelled");
    let dir = tmp.path();
    let (port, rest_port) = (free_port(), free_port());
    let api = RestClient::new(&format!("http://127.0.0.1:{rest_port}")).unwrap();
    // Endless, and its checkpoints go when it is cancelled; its result stays.
    let args = job(
        dir,
        "out",
        &[
            "--arg",
            "events=0",
            "--arg",
            "rate=500",
            "--checkpoint-interval-ms",
            "100",
            "--checkpoint-retention",
            "delete-on-cancellation",
            "--run-id",
            "c1",
        ],
    );
    let log = dir.join("c1.log");
    let mut processes = Processes(vec![
        master(port, rest_port, &args, &log),
        worker(port, "w1"),
        worker(port, "w2"),
    ]);
    let id = running_job_id(&api, 30);
    eventually(30, "no checkpoint completed", || {
        (completed(&api, &id) >= 1).then_some(())
    });
    api.call(Method::PATCH, &format!("/v1/jobs/{id}")).unwrap();
    let (status, text) = wait_for_exit(&mut processes.0[0], &log, Duration::from_secs(30));
    assert!(status.success(), "{text}");
    assert!(text.contains("the job was cancelled"), "{text}");
    let result = recorded_result(dir, "c1");
    assert_eq!(result["state"], "Cancelled", "{result}");
    assert_eq!(result["run_id"], "c1", "{result}");
    assert_eq!(result["job_id"], id.as_str(), "{result}");
    // The checkpoints went (delete-on-cancellation), the result stayed.
    assert!(
        completed_checkpoints(dir).is_empty(),
        "{:?}",
        completed_checkpoints(dir)
    );
    assert!(!dir.join("checkpoints/word-count/latest").exists());
    assert!(dir.join("checkpoints/word-count/results/c1.json").exists());
    let output = snapshot(&dir.join("out"));

    // Started again with run id c1 (in exit mode): it says so and exits as the run did.
    let log = dir.join("c1-again.log");
    processes.0[0] = master(port, rest_port, &args, &log);
    let (status, text) = wait_for_exit(&mut processes.0[0], &log, Duration::from_secs(30));
    assert!(status.success(), "{text}");
    assert!(
        text.contains("run 'c1' ended already (Cancelled)")
            && text.contains("the job was cancelled"),
        "{text}"
    );
    assert!(snapshot(&dir.join("out")) == output, "the run wrote again");

    // Mistakes with the new flags are errors that say what to do.
    let out = Command::new(STROM)
        .args(["master", "--from-latest-checkpoint", "word-count"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--run-id"), "{err}");
    for (args, says) in [
        (vec!["master", "--run-id", "r1"], "give the job"),
        (
            vec!["master", "word-count", "--run-id", "a/b"],
            "--run-id 'a/b'",
        ),
    ] {
        let out = Command::new(STROM).args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }
}
