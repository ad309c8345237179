use strom::prelude::*;

#[test]
fn map_filter_flat_map_keyed_sum_at_several_parallelisms() {
    for p in [1, 2, 4] {
        let env = StreamEnv::new();
        env.set_parallelism(p);
        let out = env
            .from_collection(vec!["to be or not to be".to_string(), "that is the question".to_string()])
            .flat_map(|line: String| line.split(' ').map(str::to_string).collect::<Vec<_>>())
            .filter(|w: &String| w.len() > 1)
            .map(|w: String| (w, 1u64))
            .key_by(|(w, _): &(String, u64)| w.clone())
            .sum(|t: &mut (String, u64)| &mut t.1)
            .collect();
        env.execute("wc").unwrap();
        let mut v = out.values();
        v.sort();
        assert_eq!(
            v,
            vec![
                ("be".into(), 1),
                ("be".into(), 2),
                ("is".into(), 1),
                ("not".into(), 1),
                ("or".into(), 1),
                ("question".into(), 1),
                ("that".into(), 1),
                ("the".into(), 1),
                ("to".into(), 1),
                ("to".into(), 2)
            ],
            "parallelism {p}"
        );
    }
}

#[test]
fn tumbling_and_session_windows() {
    use std::time::Duration;
    for p in [1, 2, 4] {
        let env = StreamEnv::new();
        env.set_parallelism(p);
        let input = vec![("a", 1_000i64, 1i64), ("a", 1_500, 2), ("b", 1_200, 5), ("a", 2_100, 3), ("b", 9_000, 1), ("a", 9_500, 4)];
        let src = env.from_source(
            CollectionSource::new(input.iter().map(|(k, t, v)| (k.to_string(), *t, *v)).collect::<Vec<_>>()),
            WatermarkStrategy::for_monotonous_timestamps().with_timestamp_assigner(|r: &(String, i64, i64)| r.1),
            "input",
        );
        let tumbling = src
            .key_by(|r: &(String, i64, i64)| r.0.clone())
            .window(TumblingEventTimeWindows::of(Duration::from_secs(1)))
            .sum(|r: &mut (String, i64, i64)| &mut r.2)
            .collect();
        let sessions = src
            .key_by(|r: &(String, i64, i64)| r.0.clone())
            .window(EventTimeSessionWindows::with_gap(Duration::from_millis(700)))
            .apply(|k: &String, w: &TimeWindow, e: &[(String, i64, i64)], out: &mut Collector<'_, (String, i64, i64, usize)>| {
                out.collect((k.clone(), w.start, w.end, e.len()))
            })
            .collect();
        let counts = src.key_by(|r: &(String, i64, i64)| r.0.clone()).count_window(2).sum(|r: &mut (String, i64, i64)| &mut r.2).collect();
        env.execute("windows").unwrap();
        let mut t = tumbling.records();
        t.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            t,
            vec![
                (("a".into(), 1_000, 3), Some(1_999)),
                (("a".into(), 2_100, 3), Some(2_999)),
                (("a".into(), 9_500, 4), Some(9_999)),
                (("b".into(), 1_200, 5), Some(1_999)),
                (("b".into(), 9_000, 1), Some(9_999)),
            ],
            "p={p}"
        );
        assert_eq!(
            sessions.sorted(),
            vec![
                ("a".into(), 1_000, 2_800, 3),
                ("a".into(), 9_500, 10_200, 1),
                ("b".into(), 1_200, 1_900, 1),
                ("b".into(), 9_000, 9_700, 1),
            ],
            "p={p}"
        );
        assert_eq!(counts.sorted(), vec![("a".into(), 1_000, 3), ("a".into(), 2_100, 7), ("b".into(), 1_200, 6)], "p={p}");
    }
}
