use strom::prelude::*;

#[test]
fn map_filter_flat_map_keyed_sum_at_several_parallelisms() {
    for p in [1, 2, 4] {
        let env = StreamEnv::new();
        env.set_parallelism(p);
        let out = env
            .from_collection(vec![
                "to be or not to be".to_string(),
                "that is the question".to_string(),
            ])
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
        let input = [
            ("a", 1_000i64, 1i64),
            ("a", 1_500, 2),
            ("b", 1_200, 5),
            ("a", 2_100, 3),
            ("b", 9_000, 1),
            ("a", 9_500, 4),
        ];
        let src = env.from_source(
            CollectionSource::new(
                input
                    .iter()
                    .map(|(k, t, v)| (k.to_string(), *t, *v))
                    .collect::<Vec<_>>(),
            ),
            WatermarkStrategy::for_monotonous_timestamps()
                .with_timestamp_assigner(|r: &(String, i64, i64)| r.1),
            "input",
        );
        let tumbling = src
            .key_by(|r: &(String, i64, i64)| r.0.clone())
            .window(TumblingEventTimeWindows::of(Duration::from_secs(1)))
            .sum(|r: &mut (String, i64, i64)| &mut r.2)
            .collect();
        let sessions = src
            .key_by(|r: &(String, i64, i64)| r.0.clone())
            .window(EventTimeSessionWindows::with_gap(Duration::from_millis(
                700,
            )))
            .apply(
                |k: &String,
                 w: &TimeWindow,
                 e: &[(String, i64, i64)],
                 out: &mut Collector<'_, (String, i64, i64, usize)>| {
                    out.collect((k.clone(), w.start, w.end, e.len()))
                },
            )
            .collect();
        let counts = src
            .key_by(|r: &(String, i64, i64)| r.0.clone())
            .count_window(2)
            .sum(|r: &mut (String, i64, i64)| &mut r.2)
            .collect();
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
        assert_eq!(
            counts.sorted(),
            vec![
                ("a".into(), 1_000, 3),
                ("a".into(), 2_100, 7),
                ("b".into(), 1_200, 6)
            ],
            "p={p}"
        );
    }
}

#[test]
fn simulated_processing_time_drives_timers_and_windows() {
    use std::time::Duration;
    #[derive(Clone)]
    struct Alert;
    impl KeyedProcessFunction<String, (String, i64), String> for Alert {
        fn process_element(
            &mut self,
            v: (String, i64),
            ctx: &mut KeyedContext<'_, String>,
            _: &mut Collector<'_, String>,
        ) {
            let now = ctx.current_processing_time();
            ctx.timer_service()
                .register_processing_time_timer(now + 1_000);
            let _ = v;
        }
        fn on_timer(
            &mut self,
            t: i64,
            ctx: &mut KeyedContext<'_, String>,
            out: &mut Collector<'_, String>,
        ) {
            out.collect(format!("{} fired at {t}", ctx.current_key()));
        }
    }
    let env = StreamEnv::new();
    env.set_processing_time(ProcessingTimeMode::Simulated)
        .set_parallelism(2);
    let src = env.from_timed_collection(vec![
        (1_000, ("a".to_string(), 1)),
        (1_500, ("b".to_string(), 1)),
        (2_100, ("a".to_string(), 1)),
        (5_000, ("c".to_string(), 1)),
    ]);
    let timers = src
        .key_by(|v: &(String, i64)| v.0.clone())
        .process(Alert)
        .collect();
    let windows = src
        .key_by(|v: &(String, i64)| v.0.clone())
        .window(TumblingProcessingTimeWindows::of(Duration::from_secs(2)))
        .sum(|v: &mut (String, i64)| &mut v.1)
        .collect();
    env.execute("simulated").unwrap();
    assert_eq!(
        timers.sorted(),
        vec![
            "a fired at 2000".to_string(),
            "a fired at 3100".into(),
            "b fired at 2500".into()
        ]
    );
    assert_eq!(
        windows.sorted(),
        vec![
            ("a".to_string(), 1),
            ("a".to_string(), 1),
            ("b".to_string(), 1)
        ]
    );
}

#[test]
fn json_lines_with_a_bad_line_go_to_dead_letters_and_the_job_goes_on() {
    #[derive(Clone, serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Tx {
        id: u64,
        amount: f64,
    }
    let dir = std::env::temp_dir().join(format!("strom-smoke-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("tx.jsonl");
    std::fs::write(
        &file,
        "{\"id\":1,\"amount\":2.5}\nnot json\n{\"id\":3,\"amount\":1.0}\n",
    )
    .unwrap();
    let env = StreamEnv::new();
    let txs = env.read_json_lines::<Tx>(&file);
    let good = txs.collect();
    let bad = txs.side_output(&dead_letter_tag()).collect();
    let result = env.execute("json").unwrap();
    assert_eq!(
        good.values(),
        vec![Tx { id: 1, amount: 2.5 }, Tx { id: 3, amount: 1.0 }]
    );
    let letters = bad.values();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].position, format!("{}:2", file.display()));
    assert!(
        letters[0].error.starts_with("not a JSON Tx"),
        "{}",
        letters[0].error
    );
    assert_eq!(letters[0].payload, "not json");
    assert_eq!(
        result
            .metrics
            .operator("Source: File Source")
            .unwrap()
            .totals()
            .dead_letters,
        1
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_panic_in_user_code_fails_the_job_naming_operator_and_record() {
    let env = StreamEnv::new();
    env.from_collection((1..=10).collect::<Vec<i32>>())
        .map(|x: i32| if x == 7 { panic!("seven is bad") } else { x })
        .name("picky")
        .collect();
    let err = env.execute("panics").unwrap_err();
    assert_eq!(
        err.to_string(),
        "job failed: operator 'picky' (subtask 1/1) panicked while processing input record #7: seven is bad"
    );
}
