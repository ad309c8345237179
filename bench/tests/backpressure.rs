//! Backpressure across processes: a `strom-bench cluster-master` and two
//! `cluster-worker`s run `slow-sink`, an endless source into a sink that takes 4,000
//! records a second. The records reach the sink at that rate (read from the master's
//! `/metrics`), the sources report most of their time as backpressured, and the workers'
//! memory stays flat while the source could produce millions a second: credits stop it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use http::Method;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use strom::cluster::client::RestClient;

const BENCH: &str = env!("CARGO_BIN_EXE_strom-bench");
const SINK_RATE: f64 = 4_000.0;

struct Processes(Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for p in &mut self.0 {
            let _ = p.kill();
            let _ = p.wait();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// Records the sink's subtasks have taken, per the master's metrics, if reported yet.
fn sunk(api: &RestClient) -> Option<u64> {
    let (_, body) = api.raw(Method::GET, "/metrics").ok()?;
    let text = String::from_utf8_lossy(&body).into_owned();
    let counts: Vec<u64> = text
        .lines()
        .filter(|l| l.starts_with("strom_records_in_total{") && l.contains("operator=\"Sink\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    (counts.len() == 2).then(|| counts.iter().sum())
}

#[test]
fn a_slow_sink_slows_its_producers_and_memory_stays_flat() {
    let (port, rest_port) = (free_port(), free_port());
    let mut processes = Processes(vec![
        Command::new(BENCH)
            .args(["cluster-master", "slow-sink", "--arg", "events=0"])
            .args(["--arg", &format!("sink-rate={SINK_RATE}")])
            .args([
                "--port",
                &port.to_string(),
                "--rest-port",
                &rest_port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    ]);
    for id in ["w1", "w2"] {
        processes.0.push(
            Command::new(BENCH)
                .args(["cluster-worker", "--port", &port.to_string(), "--id", id])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
    }
    let api = RestClient::new(&format!("http://127.0.0.1:{rest_port}")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while sunk(&api).is_none_or(|n| n == 0) {
        assert!(Instant::now() < deadline, "the sink never reported records");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Let the channels fill, then measure over a few seconds.
    std::thread::sleep(Duration::from_secs(1));
    let workers: Vec<u32> = processes.0[1..].iter().map(Child::id).collect();
    let (t0, n0) = (Instant::now(), sunk(&api).unwrap());
    let rss0: Vec<u64> = workers.iter().map(|&p| rss_kib(p)).collect();
    std::thread::sleep(Duration::from_secs(4));
    let (t1, n1) = (Instant::now(), sunk(&api).unwrap());
    let rss1: Vec<u64> = workers.iter().map(|&p| rss_kib(p)).collect();

    let rate = (n1 - n0) as f64 / (t1 - t0).as_secs_f64();
    assert!(
        (0.8 * SINK_RATE..=1.2 * SINK_RATE).contains(&rate),
        "the sink took {rate:.0} records/s; it takes {SINK_RATE}"
    );
    // The sources spent most of that time blocked, and /metrics says so.
    let (_, body) = api.raw(Method::GET, "/metrics").unwrap();
    let text = String::from_utf8_lossy(&body).into_owned();
    let blocked: f64 = text
        .lines()
        .filter(|l| {
            l.starts_with("strom_task_backpressured_seconds_total{")
                && l.contains("task=\"Source: Events\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(
        blocked > 4.0,
        "sources backpressured for {blocked} s in all:\n{text}"
    );
    for (before, after) in rss0.iter().zip(&rss1) {
        assert!(
            *after < before + 8 * 1024,
            "a worker's memory grew from {before} KiB to {after} KiB"
        );
    }
}
