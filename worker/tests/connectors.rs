//! Conformance: the local connectors. Sources: collection, generator (split over parallel
//! readers, rate-limited), sequence, file (lines, JSON lines, directories, following a
//! directory, dead letters), socket, channel. Sinks: file (text, JSON lines), print,
//! collect.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use std::io::Write;
use std::time::{Duration, Instant};
use strom::prelude::*;

#[test]
fn collection_source_keeps_order_and_timestamps() {
    let env = StreamEnv::new();
    let plain = env.from_collection(vec![3, 1, 2]).collect();
    let timed = env
        .from_timed_collection(vec![(30, "c".to_string()), (10, "a".to_string())])
        .collect();
    env.execute("collections").unwrap();
    assert_eq!(plain.records(), vec![(3, None), (1, None), (2, None)]);
    assert_eq!(
        timed.records(),
        vec![("c".to_string(), Some(30)), ("a".to_string(), Some(10))]
    );
    assert_eq!(timed.len(), 2);
    assert!(!timed.is_empty());
}

#[test]
fn bounded_generator_gives_every_index_once_whatever_the_parallelism() {
    for p in PARALLELISMS {
        let env = env(p);
        let out = env
            .add_source(
                GeneratorSource::new(|i| i * 3)
                    .count(1_001)
                    .with_timestamps(|i| i as i64 * 10),
                None,
                "gen",
            )
            .collect();
        let seq = env.from_sequence(5, 104).collect();
        let empty = env.from_sequence(10, 9).collect();
        env.execute("generator").unwrap();
        let records = sorted(out.records());
        assert_eq!(
            records,
            (0..1_001u64)
                .map(|i| (i * 3, Some(i as i64 * 10)))
                .collect::<Vec<_>>(),
            "p={p}"
        );
        assert_eq!(seq.sorted(), (5..=104).collect::<Vec<u64>>(), "p={p}");
        assert!(empty.is_empty());
    }
}

#[test]
fn generator_rate_is_respected() {
    for p in [1, 2] {
        let env = env(p);
        let out = env
            .add_source(
                GeneratorSource::new(|i| i).count(200).rate(1_000.0),
                None,
                "paced",
            )
            .collect();
        let started = Instant::now();
        env.execute("paced").unwrap();
        let took = started.elapsed();
        assert_eq!(out.len(), 200);
        // 200 records at 1000/s: about 200 ms (the first ones go at once).
        assert!(took >= Duration::from_millis(150), "took {took:?}, p={p}");
        assert!(took < Duration::from_secs(3), "took {took:?}, p={p}");
    }
}

#[test]
fn file_source_reads_lines_and_json_lines() {
    #[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Reading {
        sensor: String,
        value: i64,
    }
    let dir = TempDir::new("lines");
    let text = dir.join("in.txt");
    std::fs::write(
        &text,
        "first line\r\nsecond line\n\nthird line without newline",
    )
    .unwrap();
    let json = dir.join("in.jsonl");
    std::fs::write(
        &json,
        "{\"sensor\":\"a\",\"value\":1}\n{\"sensor\":\"b\",\"value\":2}\n",
    )
    .unwrap();
    let env = StreamEnv::new();
    let lines = env.read_text_file(&text).collect();
    let readings = env.read_json_lines::<Reading>(&json).collect();
    env.execute("files").unwrap();
    // Line endings are removed; empty lines are skipped.
    assert_eq!(
        lines.values(),
        vec!["first line", "second line", "third line without newline"]
    );
    assert_eq!(
        readings.values(),
        vec![
            Reading {
                sensor: "a".into(),
                value: 1
            },
            Reading {
                sensor: "b".into(),
                value: 2
            }
        ]
    );
}

#[test]
fn file_source_splits_a_directory_over_readers() {
    let dir = TempDir::new("split");
    let mut expected = Vec::new();
    for f in 0..5 {
        let lines: Vec<String> = (0..(f + 1) * 3)
            .map(|l| format!("file{f}-line{l}"))
            .collect();
        expected.extend(lines.iter().cloned());
        std::fs::write(dir.join(&format!("part{f}.txt")), lines.join("\n")).unwrap();
    }
    // Hidden and in-progress files are skipped, nested directories read.
    std::fs::write(dir.join(".hidden"), "nope\n").unwrap();
    std::fs::write(dir.join("_in-progress"), "nope\n").unwrap();
    std::fs::create_dir(dir.join("nested")).unwrap();
    std::fs::write(dir.join("nested/more.txt"), "nested-line\n").unwrap();
    expected.push("nested-line".into());
    expected.sort();
    for p in PARALLELISMS {
        let env = env(p);
        let out = env.read_text_file(dir.path()).collect();
        let result = env.execute("directory").unwrap();
        let lines = out.values();
        assert_eq!(sorted(lines.clone()), expected, "p={p}");
        assert_eq!(
            totals(&result.metrics, "Source: File Source").parallelism,
            p
        );
        // Every line of a file comes from one reader, in order.
        let by_file = per_key(
            lines
                .iter()
                .map(|l| (l.split('-').next().unwrap().to_string(), l.clone())),
        );
        for (file, lines) in by_file {
            let mut ordered = lines.clone();
            ordered.sort_by_key(|l| l.rsplit("line").next().and_then(|n| n.parse::<u32>().ok()));
            assert_eq!(lines, ordered, "{file}, p={p}");
        }
    }
}

#[test]
fn file_source_sends_unparsable_lines_to_dead_letters() {
    let dir = TempDir::new("dead");
    let file = dir.join("numbers.txt");
    std::fs::write(&file, "1\n2\nthree\n4\n\n5x\n").unwrap();
    for p in PARALLELISMS {
        let env = env(p);
        let numbers = env.add_source(
            FileSource::parsed(&file, |l| {
                l.parse::<i64>().map_err(|e| format!("not a number: {e}"))
            }),
            None,
            "numbers",
        );
        let good = numbers.collect();
        let bad = numbers.side_output(&dead_letter_tag()).collect();
        let result = env.execute("dead letters").unwrap();
        assert_eq!(good.sorted(), vec![1, 2, 4], "p={p}");
        let letters = bad.values();
        let positions: Vec<String> = sorted(letters.iter().map(|d| d.position.clone()).collect());
        assert_eq!(
            positions,
            vec![
                format!("{}:3", file.display()),
                format!("{}:6", file.display())
            ],
            "p={p}"
        );
        let three = letters.iter().find(|d| d.payload == "three").unwrap();
        assert_eq!(three.origin, "Source: numbers");
        assert!(three.error.starts_with("not a number"), "{}", three.error);
        assert_eq!(
            totals(&result.metrics, "Source: numbers").dead_letters,
            2,
            "p={p}"
        );
    }
}

#[test]
fn file_source_errors_name_the_path() {
    let env = StreamEnv::new();
    env.read_text_file("/definitely/not/here").collect();
    let err = env.execute("missing").unwrap_err().to_string();
    assert!(
        err.contains("input path /definitely/not/here does not exist"),
        "{err}"
    );
}

#[test]
fn following_a_directory_picks_up_new_files() {
    let dir = TempDir::new("follow");
    let staging = TempDir::new("staging");
    std::fs::write(dir.join("old.txt"), "old-1\nold-2\n").unwrap();
    for p in [1, 2] {
        let env = env(p);
        let out = env
            .add_source(
                FileSource::lines(dir.path()).monitor_continuously(Duration::from_millis(10)),
                None,
                "follow",
            )
            .collect();
        let job = env.execute_async("follow").unwrap();
        assert!(
            eventually(Duration::from_secs(5), || out.len() == 2),
            "p={p}"
        );
        // Written elsewhere, then moved in: readers never see half a file.
        let name = format!("new-{p}.txt");
        std::fs::write(staging.join(&name), "new-1\nnew-2\nnew-3\n").unwrap();
        std::fs::rename(staging.join(&name), dir.join(&name)).unwrap();
        assert!(
            eventually(Duration::from_secs(5), || out.len() == 5),
            "p={p}: {:?}",
            out.values()
        );
        job.cancel();
        assert!(job.join().unwrap().cancelled);
        let mut expected = vec!["new-1", "new-2", "new-3", "old-1", "old-2"];
        expected.sort();
        assert_eq!(out.sorted(), expected, "p={p}");
        std::fs::remove_file(dir.join(&name)).unwrap();
    }
}

#[test]
fn socket_source_reads_lines_until_the_peer_closes() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.write_all(b"hello world\r\nsecond").unwrap();
        conn.flush().unwrap();
        std::thread::sleep(Duration::from_millis(20));
        conn.write_all(b" half\nlast line without newline").unwrap();
    });
    let env = env(2);
    let words = env
        .socket_text_stream("127.0.0.1", port)
        .flat_map(|l: String| l.split(' ').map(str::to_string).collect::<Vec<_>>())
        .collect();
    env.execute("socket").unwrap();
    server.join().unwrap();
    assert_eq!(
        words.sorted(),
        vec![
            "half", "hello", "last", "line", "newline", "second", "without", "world"
        ]
    );
}

#[test]
fn socket_source_keeps_line_order() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        for i in 0..500 {
            writeln!(conn, "line {i}").unwrap();
        }
    });
    let env = StreamEnv::new();
    let lines = env.socket_text_stream("127.0.0.1", port).collect();
    env.execute("socket order").unwrap();
    server.join().unwrap();
    assert_eq!(
        lines.values(),
        (0..500).map(|i| format!("line {i}")).collect::<Vec<_>>()
    );
}

#[test]
fn socket_source_that_cannot_connect_fails_the_job() {
    // A port that was free a moment ago.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let env = StreamEnv::new();
    env.socket_text_stream("127.0.0.1", port).collect();
    let err = env.execute("no server").unwrap_err().to_string();
    assert!(
        err.contains(&format!("cannot connect to 127.0.0.1:{port}")),
        "{err}"
    );
}

fn read_parts(dir: &std::path::Path) -> (Vec<String>, Vec<String>) {
    let mut names = Vec::new();
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        names.push(path.file_name().unwrap().to_string_lossy().to_string());
        lines.extend(
            std::fs::read_to_string(&path)
                .unwrap()
                .lines()
                .map(str::to_string),
        );
    }
    (sorted(names), sorted(lines))
}

#[test]
fn file_sinks_write_part_files() {
    #[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
    struct Out {
        word: String,
        n: u32,
    }
    for p in PARALLELISMS {
        let text_dir = TempDir::new("text-out");
        let json_dir = TempDir::new("json-out");
        let rolled_dir = TempDir::new("rolled-out");
        let env = env(p);
        let words = env
            .from_collection(vec![
                "alpha".to_string(),
                "beta".into(),
                "gamma".into(),
                "delta".into(),
            ])
            .rebalance();
        words.write_as_text(text_dir.path());
        words
            .map(|w: String| Out {
                n: w.len() as u32,
                word: w,
            })
            .write_as_json_lines(json_dir.path());
        words
            .sink_to(FileSink::text(rolled_dir.path()).max_part_size(12))
            .set_parallelism(1);
        env.execute("file sinks").unwrap();

        let (names, lines) = read_parts(text_dir.path());
        assert!(names.iter().all(|n| n.starts_with("part-")), "{names:?}");
        assert!(names.len() <= p, "{names:?}");
        assert_eq!(lines, vec!["alpha", "beta", "delta", "gamma"], "p={p}");

        let (_, json) = read_parts(json_dir.path());
        assert_eq!(
            json,
            vec![
                r#"{"word":"alpha","n":5}"#,
                r#"{"word":"beta","n":4}"#,
                r#"{"word":"delta","n":5}"#,
                r#"{"word":"gamma","n":5}"#,
            ],
            "p={p}"
        );

        // Parts roll over once they would grow past 12 bytes: two words (11-12 bytes) each.
        let (names, lines) = read_parts(rolled_dir.path());
        assert_eq!(names, vec!["part-0-0", "part-0-1"], "p={p}");
        assert_eq!(lines, vec!["alpha", "beta", "delta", "gamma"], "p={p}");
    }
}

#[test]
fn print_sinks_run() {
    for p in [1, 2] {
        let env = env(p);
        let s = env.from_collection(vec![1, 2, 3]);
        s.print();
        s.print_with_prefix("numbers");
        s.print_debug();
        s.print_to_err();
        let result = env.execute("print").unwrap();
        let printed: u64 = result
            .metrics
            .operators
            .iter()
            .filter(|o| o.name.starts_with("Print to Std."))
            .map(|o| o.totals().records_in)
            .sum();
        assert_eq!(printed, 12, "p={p}");
    }
}

#[test]
fn channel_source_emits_what_is_fed() {
    let env = sim_env(1);
    let (tx, source) = ChannelSource::new();
    #[derive(Clone)]
    struct Report;
    impl ProcessFunction<String, (String, Option<i64>, i64, i64)> for Report {
        fn process_element(
            &mut self,
            v: String,
            ctx: &mut Context<'_>,
            out: &mut Collector<'_, (String, Option<i64>, i64, i64)>,
        ) {
            out.collect((
                v,
                ctx.timestamp(),
                ctx.current_watermark(),
                ctx.current_processing_time(),
            ));
        }
    }
    let out = env
        .add_source(source, None, "fed")
        .process(Report)
        .collect();
    tx.send(Feed::Record("plain".to_string())).unwrap();
    tx.send(Feed::Timed("timed".to_string(), 500)).unwrap();
    tx.send(Feed::Watermark(400)).unwrap();
    tx.send(Feed::ProcessingTime(9_000)).unwrap();
    tx.send(Feed::Record("later".to_string())).unwrap();
    drop(tx);
    env.execute("channel").unwrap();
    assert_eq!(
        out.values(),
        vec![
            ("plain".to_string(), None, i64::MIN, 0),
            // With the replayed clock, a timed record moves the source's clock.
            ("timed".to_string(), Some(500), i64::MIN, 500),
            ("later".to_string(), None, 400, 9_000),
        ]
    );
}
