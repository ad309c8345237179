//! Model serving, keyed and broadcast: exact scores of each model type, model swaps
//! mid-stream (records before a swap scored by the old model, after by the new one, made
//! deterministic by feeding both streams from the test and waiting on input counters),
//! rejected models that leave the current one serving, and end-to-end runs with files.

// Helpers outside #[test] functions unwrap too: a failure is the test's failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crossbeam_channel::Sender;
use std::path::{Path, PathBuf};
use std::time::Duration;
use strom::jobs::model_serving::{
    Model, ModelToServe, RejectedModel, ServingModel, ServingResult, WineRecord, linear_model,
    logistic_model, rejected_models_tag, serve_broadcast, serve_keyed, tree_model,
};
use strom::prelude::*;
use strom::runtime::metrics::JobMetrics;
use strom::{JobArgs, JobRegistry};

const WAIT: Duration = Duration::from_secs(10);

/// The first rows of the UCI red wine data (without quality).
const ROWS: [[f64; 11]; 6] = [
    [
        7.4, 0.7, 0.0, 1.9, 0.076, 11.0, 34.0, 0.9978, 3.51, 0.56, 9.4,
    ],
    [
        7.8, 0.88, 0.0, 2.6, 0.098, 25.0, 67.0, 0.9968, 3.2, 0.68, 9.8,
    ],
    [
        11.2, 0.28, 0.56, 1.9, 0.075, 17.0, 60.0, 0.998, 3.16, 0.58, 9.8,
    ],
    [
        7.3, 0.65, 0.0, 1.2, 0.065, 15.0, 21.0, 0.9946, 3.39, 0.47, 10.0,
    ],
    [
        7.5, 0.5, 0.36, 6.1, 0.071, 17.0, 102.0, 0.9978, 3.35, 0.8, 10.5,
    ],
    [
        8.5, 0.28, 0.56, 1.8, 0.092, 35.0, 103.0, 0.9969, 3.3, 0.75, 10.5,
    ],
];

fn record(i: usize) -> WineRecord {
    WineRecord::from_features(i as u64 + 1, ROWS[i])
}

fn load(m: &ModelToServe) -> ServingModel {
    ServingModel::load(m).unwrap()
}

#[test]
fn linear_regression_scores_exactly() {
    let m = load(&linear_model());
    let x = ROWS[0];
    let expected = 21.965
        + 0.02499 * x[0]
        + -1.0836 * x[1]
        + -0.1826 * x[2]
        + 0.01633 * x[3]
        + -1.874 * x[4]
        + 0.004361 * x[5]
        + -0.003265 * x[6]
        + -17.88 * x[7]
        + -0.4137 * x[8]
        + 0.9163 * x[9]
        + 0.2762 * x[10];
    assert_eq!(m.model.score(&record(0)), expected);
    // About the first wine's quality (5).
    assert!((expected - 5.03).abs() < 0.01, "{expected}");
}

#[test]
fn logistic_regression_scores_exactly() {
    // Short decimals, so the JSON numbers are exactly the ones below.
    let json = serde_json::json!({
        "type": "logistic-regression",
        "intercept": -2.5,
        "coefficients": [0.0, -2.0, 0.0, 0.0, 0.0, 0.0, -0.01, 0.0, 0.0, 1.5, 0.5]
    });
    let m = Model::from_json(&json).unwrap();
    let x = ROWS[2];
    let z = -2.5
        + 0.0 * x[0]
        + -2.0 * x[1]
        + 0.0 * x[2]
        + 0.0 * x[3]
        + 0.0 * x[4]
        + 0.0 * x[5]
        + -0.01 * x[6]
        + 0.0 * x[7]
        + 0.0 * x[8]
        + 1.5 * x[9]
        + 0.5 * x[10];
    assert_eq!(m.score(&record(2)), 1.0 / (1.0 + (-z).exp()));
    // z = -2.5 - 0.56 - 0.6 + 0.87 + 4.9 = 2.11.
    assert!((z - 2.11).abs() < 1e-12, "{z}");
    // The built-in logistic model: P(good) = sigmoid(3 * (OLS quality - 5.5)).
    let ols = load(&linear_model()).model.score(&record(2));
    let p = load(&logistic_model()).model.score(&record(2));
    assert!(
        (p - 1.0 / (1.0 + (-3.0 * (ols - 5.5)).exp())).abs() < 1e-9,
        "{p}"
    );
}

#[test]
fn decision_tree_scores_exactly() {
    let m = load(&tree_model());
    // alcohol 9.4 <= 10.25, sulphates 0.56 <= 0.575: the first leaf.
    assert_eq!(m.model.score(&record(0)), 5.05);
    // alcohol 9.8 <= 10.25, sulphates 0.68 > 0.575.
    assert_eq!(m.model.score(&record(1)), 5.45);
    // alcohol 10.5 > 10.25, volatile acidity 0.5 > 0.425.
    assert_eq!(m.model.score(&record(4)), 5.65);
    // alcohol 10.5 > 10.25, volatile acidity 0.28 <= 0.425, alcohol <= 11.55.
    assert_eq!(m.model.score(&record(5)), 6.1);
}

#[test]
fn bad_models_are_refused_with_the_reason() {
    let err = |v: serde_json::Value| Model::from_json(&v).unwrap_err();
    assert_eq!(
        err(
            serde_json::json!({"type": "linear-regression", "intercept": 1.0, "coefficients": [1.0, 2.0]})
        ),
        "a linear-regression model needs 11 coefficients, one per feature (fixed_acidity, volatile_acidity, \
         citric_acid, residual_sugar, chlorides, free_sulfur_dioxide, total_sulfur_dioxide, density, ph, sulphates, \
         alcohol), got 2"
    );
    assert_eq!(
        err(serde_json::json!({"type": "neural-network"})),
        "unknown model type 'neural-network'; accepted: linear-regression, logistic-regression, decision-tree"
    );
    assert_eq!(
        err(
            serde_json::json!({"type": "decision-tree", "nodes": [{"feature": "alcohol", "threshold": 10.0, "left": 0, "right": 1}, {"value": 5.0}]})
        ),
        "decision-tree node 0: child 0 must be a later node (between 1 and 1)"
    );
    assert_eq!(
        err(
            serde_json::json!({"type": "decision-tree", "nodes": [{"feature": "colour", "threshold": 1.0, "left": 1, "right": 2}, {"value": 5.0}, {"value": 6.0}]})
        ),
        "decision-tree node 0: unknown feature 'colour'; accepted: fixed_acidity, volatile_acidity, citric_acid, \
         residual_sugar, chlorides, free_sulfur_dioxide, total_sulfur_dioxide, density, ph, sulphates, alcohol"
    );
    assert!(err(serde_json::json!({"intercept": 1.0})).starts_with("the model has no \"type\""));
    let json = r#"{"id":7,"fixed_acidity":7.4,"volatile_acidity":0.7,"citric_acid":0.0,"residual_sugar":1.9,"chlorides":0.076,"free_sulfur_dioxide":11,"total_sulfur_dioxide":34,"density":0.9978,"ph":3.51,"sulphates":0.56,"alcohol":9.4}"#;
    let r = WineRecord::parse_line(json).unwrap().unwrap();
    assert_eq!(r, WineRecord { id: 7, ..record(0) });
}

#[derive(Clone, Copy, Debug)]
enum Way {
    Keyed,
    Broadcast,
}

impl Way {
    fn uid(self) -> &'static str {
        match self {
            Way::Keyed => "model-serving-keyed",
            Way::Broadcast => "model-serving-broadcast",
        }
    }
}

struct Harness {
    data: Option<Sender<Feed<WineRecord>>>,
    models: Option<Sender<Feed<ModelToServe>>>,
    handle: Option<JobHandle>,
    scores: CollectHandle<ServingResult>,
    rejected: CollectHandle<RejectedModel>,
    way: Way,
    fanout: u64,
    records: u64,
    models_sent: u64,
}

fn inputs(m: &JobMetrics, op: &str, input: usize) -> u64 {
    m.operator(op)
        .unwrap()
        .subtasks
        .iter()
        .map(|s| s.records_in_of(input))
        .sum()
}

impl Harness {
    fn start(way: Way, p: usize) -> Harness {
        let env = StreamEnv::new();
        env.set_parallelism(p);
        let (data_in, data_src) = ChannelSource::<WineRecord>::new();
        let (models_in, models_src) = ChannelSource::<ModelToServe>::new();
        let data = env.add_source(data_src, None, "Wine");
        let models = env.add_source(models_src, None, "Models");
        let scores = match way {
            Way::Keyed => serve_keyed(&data, &models),
            Way::Broadcast => serve_broadcast(&data, &models),
        };
        let rejected = scores.side_output(&rejected_models_tag()).collect();
        let scores = scores.collect();
        Harness {
            data: Some(data_in),
            models: Some(models_in),
            handle: Some(env.execute_async("model serving test").unwrap()),
            scores,
            rejected,
            way,
            // Keyed: a model reaches the one instance of its key; broadcast: all of them.
            fanout: match way {
                Way::Keyed => 1,
                Way::Broadcast => p as u64,
            },
            records: 0,
            models_sent: 0,
        }
    }

    fn wait(&self) {
        let (uid, records, models) = (self.way.uid(), self.records, self.models_sent * self.fanout);
        let ok = self.handle.as_ref().unwrap().wait_for(WAIT, |m| {
            inputs(m, uid, 0) == records && inputs(m, uid, 1) == models
        });
        assert!(ok, "{uid}: inputs not processed in time");
    }

    fn record(&mut self, r: WineRecord) {
        self.data.as_ref().unwrap().send(Feed::Record(r)).unwrap();
        self.records += 1;
        self.wait();
    }

    fn model(&mut self, m: ModelToServe) {
        self.models.as_ref().unwrap().send(Feed::Record(m)).unwrap();
        self.models_sent += 1;
        self.wait();
    }

    fn finish(mut self) -> (Vec<ServingResult>, Vec<RejectedModel>) {
        self.data.take();
        self.models.take();
        self.handle.take().unwrap().join().unwrap();
        let mut scores = self.scores.values();
        scores.sort_by_key(|s| s.record_id);
        (scores, self.rejected.values())
    }
}

fn scored(i: usize, model: &ModelToServe) -> ServingResult {
    let r = record(i);
    ServingResult {
        record_id: r.id,
        data_type: r.data_type.clone(),
        model_name: model.name.clone(),
        score: load(model).model.score(&r),
    }
}

fn swaps(way: Way, p: usize) -> Vec<ServingResult> {
    let (linear, tree, logistic) = (linear_model(), tree_model(), logistic_model());
    let mut short = linear_model();
    short.name = "wine-linear-v2".into();
    short.model["coefficients"] = serde_json::json!([1.0, 2.0, 3.0]);
    let unknown = ModelToServe {
        name: "wine-nn".into(),
        description: String::new(),
        data_type: "wine".into(),
        model: serde_json::json!({"type": "neural-network"}),
    };
    let mut h = Harness::start(way, p);
    // Records before any model wait for the first one.
    h.record(record(0));
    h.record(record(1));
    h.model(linear.clone());
    h.record(record(2));
    h.model(tree.clone());
    h.record(record(3));
    // Bad models are refused; the tree keeps serving.
    h.model(short);
    h.model(unknown);
    h.record(record(4));
    h.model(logistic.clone());
    h.record(record(5));
    let (scores, rejected) = h.finish();
    assert_eq!(
        scores,
        vec![
            scored(0, &linear),
            scored(1, &linear),
            scored(2, &linear),
            scored(3, &tree),
            scored(4, &tree),
            scored(5, &logistic),
        ],
        "{way:?} at parallelism {p}"
    );
    let reasons: Vec<(&str, &str)> = rejected
        .iter()
        .map(|r| (r.name.as_str(), r.error.as_str()))
        .collect();
    assert_eq!(reasons.len(), 2, "{way:?} at parallelism {p}: {reasons:?}");
    assert_eq!(reasons[0].0, "wine-linear-v2");
    assert!(
        reasons[0]
            .1
            .starts_with("a linear-regression model needs 11 coefficients"),
        "{}",
        reasons[0].1
    );
    assert_eq!(
        reasons[1],
        (
            "wine-nn",
            "unknown model type 'neural-network'; accepted: linear-regression, logistic-regression, decision-tree"
        )
    );
    scores
}

#[test]
fn keyed_serving_swaps_models_between_records_at_parallelism_1_2_4() {
    let one = swaps(Way::Keyed, 1);
    for p in [2, 4] {
        assert_eq!(swaps(Way::Keyed, p), one);
    }
}

#[test]
fn broadcast_serving_swaps_models_between_records_at_parallelism_1_2_4() {
    let one = swaps(Way::Broadcast, 1);
    for p in [2, 4] {
        assert_eq!(swaps(Way::Broadcast, p), one);
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "strom-jobs-model-serving-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn read_lines(dir: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries {
            lines.extend(
                std::fs::read_to_string(e.unwrap().path())
                    .unwrap()
                    .lines()
                    .map(str::to_string),
            );
        }
    }
    lines
}

fn run_registered(job: &str, args: &[(&str, &str)], p: usize) -> JobResult {
    let registry = JobRegistry::builtin();
    let spec = registry
        .find(job)
        .unwrap_or_else(|| panic!("{job} is registered"));
    let args = JobArgs::from_pairs(spec.name, spec.args, args).unwrap();
    let env = StreamEnv::new();
    env.set_parallelism(p);
    (spec.build)(&env, &args).unwrap();
    env.execute(spec.name).unwrap()
}

#[test]
fn end_to_end_with_files_both_ways() {
    let dir = temp_dir("files");
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/data/model-serving");
    let csv = data.join("winequality-red-sample.csv");
    let linear = load(&linear_model());
    // The sample's ten good rows, in file order.
    let text = std::fs::read_to_string(&csv).unwrap();
    let rows: Vec<WineRecord> = text
        .lines()
        .filter_map(|l| WineRecord::parse_line(l).ok().flatten())
        .collect();
    assert_eq!(rows.len(), 10);
    let mut expected: Vec<String> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| {
            format!(
                "wine #{}: {:.4} by wine-linear",
                i + 1,
                linear.model.score(r)
            )
        })
        .collect();
    expected.sort();
    assert_eq!(expected[0], "wine #10: 5.6591 by wine-linear");
    for job in ["model-serving-keyed", "model-serving-broadcast"] {
        for p in [1, 2] {
            let out = dir.join(format!("{job}-{p}"));
            let result = run_registered(
                job,
                &[
                    ("data", csv.to_str().unwrap()),
                    ("models", data.join("models.jsonl").to_str().unwrap()),
                    ("output", out.to_str().unwrap()),
                ],
                p,
            );
            let mut scores = read_lines(&out.join("scores"));
            scores.sort();
            assert_eq!(scores, expected, "{job} at parallelism {p}");
            let rejected = read_lines(&out.join("rejected-models"));
            assert_eq!(rejected.len(), 2, "{job}: {rejected:?}");
            assert!(
                rejected
                    .iter()
                    .any(|r| r.contains("'wine-linear-v2'") && r.contains("got 10")),
                "{rejected:?}"
            );
            let dead_data = read_lines(&out.join("dead-letters/data"));
            assert_eq!(dead_data.len(), 1, "{dead_data:?}");
            assert!(
                dead_data[0].contains("column 3 (citric_acid) 'zero' is not a number"),
                "{}",
                dead_data[0]
            );
            assert_eq!(read_lines(&out.join("dead-letters/models")).len(), 1);
            let source = result
                .metrics
                .operator("Source: Wine Samples")
                .unwrap()
                .totals();
            assert_eq!(source.dead_letters, 1);
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_default_runs_on_generated_data_score_with_all_three_models() {
    for job in ["model-serving-keyed", "model-serving-broadcast"] {
        let dir = temp_dir(job);
        // Faster than the default: 150 samples at 300/s, a new model every 150 ms.
        run_registered(
            job,
            &[
                ("events", "150"),
                ("rate", "300"),
                ("model-interval", "150ms"),
                ("output", dir.to_str().unwrap()),
            ],
            2,
        );
        let scores = read_lines(&dir.join("scores"));
        assert_eq!(scores.len(), 150, "{job}");
        for name in ["wine-linear", "wine-tree", "wine-logistic"] {
            assert!(
                scores.iter().any(|s| s.ends_with(&format!("by {name}"))),
                "{job}: {name} never served"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
