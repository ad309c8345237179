//! A job split over two workers — each with its own data-plane server on loopback, as
//! two processes would have — gives exactly the output of the same job in one process.
//! Both workers build the job from the same code, as every process of a job does.

#![allow(clippy::expect_used)]

use crate::jobs::wordcount::{HAMLET, WordCount, word_counts};
use crate::net::exchange::{Exchange, connect};
use crate::prelude::*;
use crate::runtime::executor::{Deployment, Network, launch_deployment};
use std::time::Duration;

/// (key, window start, records in the window)
type WindowCount = (u64, i64, u64);

struct Outputs {
    words: CollectHandle<WordCount>,
    windows: CollectHandle<WindowCount>,
}

/// Word count from a one-instance source (a rebalance to both workers, then a keyed
/// exchange), and event-time windows from a parallel source (watermarks from both
/// workers meet at every window subtask).
fn job(env: &StreamEnv) -> Outputs {
    env.set_parallelism(2);
    let lines: Vec<String> = (0..20)
        .flat_map(|_| HAMLET.iter().map(|l| l.to_string()))
        .collect();
    let words = word_counts(&env.from_collection(lines)).collect();
    let events = env.from_source(
        GeneratorSource::new(|i| (i % 7, i as i64 * 3)).count(20_000),
        WatermarkStrategy::for_bounded_out_of_orderness(Duration::from_millis(50))
            .with_timestamp_assigner(|e: &(u64, i64)| e.1),
        "events",
    );
    let windows = events
        .key_by(|e: &(u64, i64)| e.0)
        .window(TumblingEventTimeWindows::of(Duration::from_secs(1)))
        .apply(
            |k: &u64, w: &TimeWindow, es: &[(u64, i64)], out: &mut Collector<'_, WindowCount>| {
                out.collect((*k, w.start, es.len() as u64))
            },
        )
        .collect();
    Outputs { words, windows }
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

#[test]
fn a_job_split_over_two_workers_gives_the_one_process_output() {
    let env = StreamEnv::new();
    let alone = job(&env);
    env.execute("alone").expect("runs in one process");
    let expected_words = sorted(alone.words.values());
    let expected_windows = sorted(alone.windows.values());
    assert!(expected_windows.len() > 100, "{}", expected_windows.len());

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let exchanges = [0, 1].map(|_| Exchange::new(Duration::from_secs(10)));
    let addresses = exchanges.each_ref().map(|exchange| {
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("a loopback port");
        let address = listener.local_addr().expect("bound");
        rt.spawn(exchange.serve(listener));
        address
    });
    let connections: Vec<tonic::transport::Channel> = addresses
        .iter()
        .map(|a| connect(rt.handle(), &a.to_string()).expect("a valid address"))
        .collect();

    // Subtask s of every operator runs on worker s % 2.
    let mut outputs = Vec::new();
    let mut handles = Vec::new();
    for (worker, exchange) in exchanges.into_iter().enumerate() {
        let env = StreamEnv::new();
        let out = job(&env);
        let (graph, plan, config) = env.plan_job().expect("plans");
        let deployment = Deployment {
            workers: plan
                .vertices
                .iter()
                .map(|v| (0..v.parallelism).map(|s| s % 2).collect())
                .collect(),
            this_worker: worker,
            network: Some(Network {
                job_id: "split".into(),
                attempt: 0,
                exchange,
                runtime: rt.handle().clone(),
                connections: connections.clone(),
            }),
        };
        handles.push(
            launch_deployment(&format!("worker {worker}"), graph, plan, config, deployment)
                .expect("starts"),
        );
        outputs.push(out);
    }
    for h in handles {
        h.join().expect("each worker's part finishes");
    }
    let words = sorted(outputs.iter().flat_map(|o| o.words.values()).collect());
    let windows = sorted(outputs.iter().flat_map(|o| o.windows.values()).collect());
    assert_eq!(words, expected_words);
    assert_eq!(windows, expected_windows);
    // Both workers did part of the work.
    assert!(
        outputs
            .iter()
            .all(|o| !o.words.is_empty() && !o.windows.is_empty())
    );
}
