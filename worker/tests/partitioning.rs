//! Conformance: how records are spread over the subtasks of the next operator (Flink's
//! partitioners). Placement is observed with a rich map that learns its subtask index in
//! `open` and tags every record with it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use std::collections::BTreeMap;
use strom::keygroup::{key_group_of, operator_index_for_key_group};
use strom::prelude::*;

/// Which subtask of `p` a bounded generator of `n` records gives record `i` to.
fn generator_subtask(i: u64, n: u64, p: u64) -> usize {
    (0..p)
        .find(|s| s * n / p <= i && i < (s + 1) * n / p)
        .unwrap() as usize
}

fn counts(tags: &[(usize, u64)], p: usize) -> Vec<usize> {
    let mut c = vec![0; p];
    for (s, _) in tags {
        c[*s] += 1;
    }
    c
}

#[test]
fn forward_keeps_the_subtask_index() {
    let n = 40u64;
    for p in PARALLELISMS {
        for chained in [true, false] {
            let env = env(p);
            let fwd = env
                .add_source(GeneratorSource::new(|i| i).count(n), None, "gen")
                .forward()
                .map_rich(SubtaskTagger::default());
            let fwd = if chained { fwd } else { fwd.disable_chaining() };
            let out = fwd.collect();
            env.execute("forward").unwrap();
            let tags = out.values();
            assert_eq!(tags.len(), n as usize);
            for (s, i) in tags {
                assert_eq!(
                    s,
                    generator_subtask(i, n, p as u64),
                    "record {i}, p={p}, chained={chained}"
                );
            }
        }
    }
}

#[test]
fn explicit_forward_between_different_parallelisms_is_an_error() {
    let env = env(2);
    env.from_sequence(1, 10)
        .forward()
        .map(|x: u64| x)
        .set_parallelism(3)
        .name("wider")
        .collect();
    match env.execute("bad forward") {
        Err(JobError::InvalidGraph(msg)) => {
            assert!(msg.contains("forward partitioning from 'Source: Sequence Source' (parallelism 2) to 'wider' (parallelism 3)"), "{msg}")
        }
        other => panic!("expected an invalid graph, got {other:?}"),
    }
    // Without an explicit forward the edge is rebalanced (as in Flink).
    let env2 = common::env(2);
    let out = env2
        .from_sequence(1, 10)
        .map(|x: u64| x)
        .set_parallelism(3)
        .collect();
    env2.execute("implicit forward").unwrap();
    assert_eq!(out.sorted(), (1..=10).collect::<Vec<_>>());
}

#[test]
fn rebalance_is_round_robin() {
    for p in PARALLELISMS {
        for n in [10u64, 100] {
            let env = env(p);
            let out = env
                .from_collection((0..n).collect::<Vec<u64>>())
                .rebalance()
                .map_rich(SubtaskTagger::default())
                .collect();
            env.execute("rebalance").unwrap();
            let mut tags = out.values();
            tags.sort_by_key(|t| t.1);
            assert_eq!(
                tags.iter().map(|t| t.1).collect::<Vec<_>>(),
                (0..n).collect::<Vec<_>>()
            );
            // Each record goes to the next subtask after the previous record's.
            for w in tags.windows(2) {
                assert_eq!(
                    w[1].0,
                    (w[0].0 + 1) % p,
                    "records {} and {}, p={p}",
                    w[0].1,
                    w[1].1
                );
            }
            let mut c = counts(&tags, p);
            c.sort();
            let base = n as usize / p;
            let extra = n as usize % p;
            let expected: Vec<usize> = (0..p)
                .map(|i| if i >= p - extra { base + 1 } else { base })
                .collect();
            assert_eq!(c, expected, "n={n} p={p}");
        }
    }
}

#[test]
fn rescale_sends_to_a_local_subset() {
    let n = 80u64;
    for (up, down) in [(2usize, 4usize), (4, 2), (1, 4), (4, 4)] {
        let env = env(down);
        let out = env
            .add_source(GeneratorSource::new(|i| i).count(n), None, "gen")
            .set_parallelism(up)
            .rescale()
            .map_rich(SubtaskTagger::default())
            .collect();
        env.execute("rescale").unwrap();
        let tags = out.values();
        assert_eq!(
            sorted(tags.iter().map(|t| t.1).collect()),
            (0..n).collect::<Vec<_>>()
        );
        let mut by_target: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (d, i) in &tags {
            let u = generator_subtask(*i, n, up as u64);
            // Flink's RescalePartitioner: upstream u talks to a contiguous group of
            // downstream subtasks (or several upstreams share one downstream subtask).
            let allowed: Vec<usize> = if up <= down {
                ((u * down).div_ceil(up)..((u + 1) * down).div_ceil(up)).collect()
            } else {
                vec![u * down / up]
            };
            assert!(
                allowed.contains(d),
                "record {i} from upstream {u} went to {d}, allowed {allowed:?} ({up}->{down})"
            );
            by_target.entry(*d).or_default().push(u);
        }
        // Round-robin inside the group: an upstream spreads evenly over its targets.
        if up <= down {
            let per_target = n as usize / down;
            for (d, us) in &by_target {
                assert_eq!(us.len(), per_target, "target {d} ({up}->{down})");
            }
        }
        assert_eq!(
            by_target.len(),
            down,
            "every downstream subtask is used ({up}->{down})"
        );
    }
}

#[test]
fn shuffle_delivers_every_record_once_and_spreads_them() {
    let n = 2_000u64;
    for p in PARALLELISMS {
        let env = env(p);
        let out = env
            .from_collection((0..n).collect::<Vec<u64>>())
            .shuffle()
            .map_rich(SubtaskTagger::default())
            .collect();
        env.execute("shuffle").unwrap();
        let tags = out.values();
        assert_eq!(
            sorted(tags.iter().map(|t| t.1).collect()),
            (0..n).collect::<Vec<_>>(),
            "p={p}"
        );
        for (s, c) in counts(&tags, p).into_iter().enumerate() {
            // Uniform would be n/p; a fair random choice stays well within half of it.
            assert!(
                c * 2 * p > n as usize,
                "subtask {s} got only {c} of {n}, p={p}"
            );
        }
    }
}

#[test]
fn broadcast_gives_every_record_to_every_subtask() {
    for p in PARALLELISMS {
        let env = env(p);
        let out = env
            .from_collection((0..10u64).collect::<Vec<_>>())
            .broadcast()
            .map_rich(SubtaskTagger::default())
            .collect();
        env.execute("broadcast").unwrap();
        let expected: Vec<(usize, u64)> =
            (0..p).flat_map(|s| (0..10).map(move |i| (s, i))).collect();
        assert_eq!(out.sorted(), expected, "p={p}");
    }
}

#[test]
fn global_sends_everything_to_the_first_subtask() {
    for p in PARALLELISMS {
        let env = env(p);
        let out = env
            .from_sequence(0, 49)
            .global()
            .map_rich(SubtaskTagger::default())
            .collect();
        env.execute("global").unwrap();
        assert_eq!(
            out.sorted(),
            (0..50).map(|i| (0, i)).collect::<Vec<_>>(),
            "p={p}"
        );
    }
}

#[test]
fn custom_partitioner_chooses_the_channel() {
    for p in PARALLELISMS {
        let env = env(p);
        let out = env
            .from_collection(
                (0..30u64)
                    .map(|i| (format!("k{}", i % 7), i))
                    .collect::<Vec<_>>(),
            )
            .partition_custom(
                |k: &u64, n: usize| (*k as usize * 3) % n,
                |r: &(String, u64)| r.1 % 7,
            )
            .map_rich(SubtaskTagger::default())
            .collect();
        env.execute("custom").unwrap();
        let tags = out.values();
        assert_eq!(tags.len(), 30);
        for (s, (_, i)) in tags {
            assert_eq!(s, ((i % 7) as usize * 3) % p, "record {i}, p={p}");
        }
    }
}

#[test]
fn custom_partitioner_out_of_range_fails_the_job() {
    for p in PARALLELISMS {
        let env = env(p);
        env.from_collection(vec![1u64, 2, 3])
            .partition_custom(|_: &u64, n: usize| n, |v: &u64| *v)
            .map(|x: u64| x)
            .collect();
        let err = env.execute("bad partitioner").unwrap_err().to_string();
        assert!(
            err.contains(&format!(
                "the custom partitioner returned channel {p}, but there are only {p}"
            )),
            "p={p}: {err}"
        );
    }
}

#[derive(Clone, Default)]
struct WhereIsMyKey {
    subtask: usize,
}

impl KeyedProcessFunction<String, String, (usize, String)> for WhereIsMyKey {
    fn open(&mut self, ctx: &RuntimeContext<'_>) {
        self.subtask = ctx.subtask_index();
    }
    fn process_element(
        &mut self,
        v: String,
        ctx: &mut KeyedContext<'_, String>,
        out: &mut Collector<'_, (usize, String)>,
    ) {
        assert_eq!(ctx.current_key(), v);
        out.collect((self.subtask, v));
    }
}

#[test]
fn hash_partitioning_follows_key_groups() {
    let keys: Vec<String> = (0..200).map(|i| format!("key-{i}")).collect();
    for p in PARALLELISMS {
        // The job-wide max parallelism, and one set on the keyed operator only.
        for (job_max, op_max) in [
            (128usize, None),
            (16, None),
            (128, Some(16usize)),
            (128, Some(7)),
        ] {
            let env = env(p);
            env.set_max_parallelism(job_max);
            let keyed = env
                .from_collection(keys.clone())
                .key_by(|k: &String| k.clone());
            let tagged = keyed.map_rich(SubtaskTagger::default()).collect();
            let processed = keyed.process(WhereIsMyKey::default());
            let processed = match op_max {
                Some(m) => processed.set_max_parallelism(m),
                None => processed,
            };
            let placed = processed.collect();
            env.execute("hash").unwrap();
            let max_p = op_max.unwrap_or(job_max);
            for (s, k) in tagged.values() {
                assert_eq!(
                    s,
                    operator_index_for_key_group(job_max, p, key_group_of(&k, job_max)),
                    "map of {k}, p={p}"
                );
            }
            let placed = placed.values();
            assert_eq!(placed.len(), keys.len());
            for (s, k) in placed {
                assert_eq!(
                    s,
                    operator_index_for_key_group(max_p, p, key_group_of(&k, max_p)),
                    "keyed process of {k}, p={p}, max parallelism {max_p}"
                );
            }
        }
    }
}
