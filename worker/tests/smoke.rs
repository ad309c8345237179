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
