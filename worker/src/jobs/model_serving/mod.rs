//! Seed example: model serving, after Boris Lublinsky's "Serving Machine Learning Models"
//! (O'Reilly), both ways the book serves models with Flink: the jobs
//! `model-serving-keyed` and `model-serving-broadcast`.
//!
//! A stream of wine samples (the eleven features of the UCI wine-quality data) is scored
//! by models that arrive on a second stream and replace each other while the job runs:
//! - **keyed**: records and models are keyed by data type and meet in a keyed co-process
//!   function; the current model and the next one are keyed value state, and a new model
//!   is switched in when the next record arrives (between records, never during scoring);
//! - **broadcast**: models are broadcast to every instance and kept in broadcast state by
//!   data type, so records are scored wherever they are, at any parallelism.
//!
//! Models are JSON ([`ModelToServe`] with a [`Model`] inside): linear regression (the OLS
//! fit of red wine quality), logistic regression (P(quality ≥ 6)) and a small decision
//! tree. A model that does not load (wrong number of coefficients, unknown type, a broken
//! tree) goes to the rejected-models output with the reason; the current model stays.
//!
//! Generated input: wine samples around the red-wine feature means and standard
//! deviations, and a model stream that starts with the linear model and swaps in the
//! tree and then the logistic model every `model-interval`.
//!
//! On Kafka: `data-topic` and `models-topic` read samples and models in the files' forms
//! (what `strom produce wine-samples` and `strom produce models` write; records that do
//! not parse are dead letters), and `output-topic` takes the scores as JSON keyed by
//! record id, exactly once with `exactly-once=true`.

pub mod functions;
pub mod models;
pub mod records;

pub use functions::{BroadcastModelServer, KeyedModelServer, rejected_models_tag, unscored_tag};
pub use models::{Model, ServingModel, TreeNode, linear_model, logistic_model, tree_model};
pub use records::{FEATURES, ModelToServe, RejectedModel, ServingResult, WINE, WineRecord};

use crate::api::{DataStream, StreamEnv};
use crate::config::RuntimeMode;
use crate::connectors::{FileSource, GeneratorSource};
use crate::functions::{Collector, RichFlatMapFunction};
use crate::jobs::fraud::generator::splitmix64;
use crate::jobs::{ArgSpec, JobArgs, JobSpec, kafka_args};
use crate::source::{DeadLetter, dead_letter_tag};
use anyhow::bail;
use std::path::{Path, PathBuf};

/// Keyed serving: `data` and `models` keyed by data type, one keyed co-process function.
pub fn serve_keyed(
    data: &DataStream<WineRecord>,
    models: &DataStream<ModelToServe>,
) -> DataStream<ServingResult> {
    data.key_by(|r: &WineRecord| r.data_type.clone())
        .connect_keyed(&models.key_by(|m: &ModelToServe| m.data_type.clone()))
        .process(KeyedModelServer)
        .name("Model Serving (keyed)")
        .uid("model-serving-keyed")
}

/// Broadcast serving: `models` broadcast to every instance that scores `data`.
pub fn serve_broadcast(
    data: &DataStream<WineRecord>,
    models: &DataStream<ModelToServe>,
) -> DataStream<ServingResult> {
    data.connect_broadcast(&models.broadcast_stream())
        .process(BroadcastModelServer::default())
        .name("Model Serving (broadcast)")
        .uid("model-serving-broadcast")
}

// ---- Generated data ----

/// Red-wine feature means and standard deviations, in [`FEATURES`] order.
pub const FEATURE_MEANS: [f64; 11] = [
    8.32, 0.53, 0.27, 2.54, 0.087, 15.9, 46.5, 0.9967, 3.31, 0.66, 10.42,
];
pub const FEATURE_STD_DEVS: [f64; 11] = [
    1.74, 0.18, 0.19, 1.41, 0.047, 10.5, 32.9, 0.0019, 0.15, 0.17, 1.07,
];
/// Decimals of each feature in the dataset.
const DECIMALS: [i32; 11] = [1, 3, 2, 1, 3, 0, 0, 4, 2, 2, 1];

const SEED: u64 = 0x3A1E_5E2F_0D11_2017;

/// Generated wine sample `i` (its id is `i + 1`): each feature is its mean plus its
/// standard deviation times an approximately normal draw (a scaled sum of four uniform
/// ones), not below zero, rounded as in the dataset.
pub fn generated_wine(i: u64) -> WineRecord {
    let mut f = [0.0; 11];
    for (j, slot) in f.iter_mut().enumerate() {
        let base = SEED ^ i.wrapping_mul(64).wrapping_add(j as u64 * 4);
        let sum: f64 = (0..4)
            .map(|k| (splitmix64(base + k) >> 11) as f64 / (1u64 << 53) as f64)
            .sum();
        let z = (sum - 2.0) * 3f64.sqrt();
        let v = (FEATURE_MEANS[j] + FEATURE_STD_DEVS[j] * z).max(0.0);
        let scale = 10f64.powi(DECIMALS[j]);
        *slot = (v * scale).round() / scale;
    }
    WineRecord::from_features(i + 1, f)
}

/// Generated model `i`: the linear model, then the tree, then the logistic model.
pub fn generated_model(i: u64) -> ModelToServe {
    match i % 3 {
        0 => linear_model(),
        1 => tree_model(),
        _ => logistic_model(),
    }
}

/// Numbers records read from files by their position (1-based), unless they carry an id.
#[derive(Clone, Default)]
struct NumberRecords {
    seen: u64,
}

impl RichFlatMapFunction<Option<WineRecord>, WineRecord> for NumberRecords {
    fn flat_map(&mut self, value: Option<WineRecord>, out: &mut Collector<'_, WineRecord>) {
        if let Some(mut r) = value {
            self.seen += 1;
            if r.id == 0 {
                r.id = self.seen;
            }
            out.collect(r);
        }
    }
}

// ---- The jobs ----

const ARGS: &[ArgSpec] = &[
    ArgSpec::new(
        "data",
        "",
        "wine samples: the UCI CSV (';'-separated, with header) or JSON lines, a file or directory; empty = generated",
    ),
    ArgSpec::new(
        "data-topic",
        "",
        "Kafka topics (comma-separated) of wine samples, JSON objects as in data (what `strom produce wine-samples` writes) or CSV rows, instead of data",
    ),
    ArgSpec::new(
        "models",
        "",
        "JSON lines of models to serve ({\"name\":..,\"data_type\":\"wine\",\"model\":{\"type\":\"linear-regression\",..}}), applied in order; empty = generated (linear, tree, logistic)",
    ),
    ArgSpec::new(
        "models-topic",
        "",
        "Kafka topics of models, JSON as in models (what `strom produce models` writes), applied as they arrive, instead of models; one partition keeps their order",
    ),
    ArgSpec::new("model-interval", "1s", "time between generated models"),
    ArgSpec::new(
        "events",
        "300",
        "number of generated wine samples; 0 or unbounded = never stop",
    ),
    ArgSpec::new(
        "rate",
        "100",
        "generated samples per second; empty or 0 = as fast as possible",
    ),
    ArgSpec::new(
        "output",
        "",
        "directory for the results (scores/, rejected-models/, unscored/, dead-letters/ with part-* files); empty = print",
    ),
    ArgSpec::new(
        "output-topic",
        "",
        "Kafka topic for the scores (key: the record id, value: the score as JSON) instead of scores/ or stdout; rejected models, unscored records and dead letters still follow output",
    ),
    kafka_args::BROKER_ARGS[0],
    kafka_args::BROKER_ARGS[1],
    kafka_args::BROKER_ARGS[2],
    kafka_args::BROKER_ARGS[3],
    kafka_args::EXACTLY_ONCE,
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Way {
    Keyed,
    Broadcast,
}

fn dead_letters<T: crate::record::Data>(stream: &DataStream<T>, name: &str, output: Option<&Path>) {
    let letters = stream
        .side_output(&dead_letter_tag())
        .map(|d: DeadLetter| {
            format!(
                "dead letter at {}: {} (line: {:?})",
                d.position, d.error, d.payload
            )
        })
        .name(&format!("Dead Letters of {name}"));
    match output {
        Some(dir) => letters
            .write_as_text(dir.join("dead-letters").join(name))
            .name(&format!("Dead Letters of {name} to Files")),
        None => letters
            .print_to_err()
            .name(&format!("Print Dead Letters of {name}")),
    };
}

fn build(env: &StreamEnv, args: &JobArgs, way: Way) -> anyhow::Result<()> {
    let output: Option<PathBuf> = args.path("output");
    let out = output.as_deref();
    let data = wine_samples(env, args, out)?;
    let models = models(env, args, out)?;
    let scores = match way {
        Way::Keyed => serve_keyed(&data, &models),
        Way::Broadcast => serve_broadcast(&data, &models),
    };
    let rejected = scores.side_output(&rejected_models_tag());
    let unscored = scores
        .side_output(&unscored_tag())
        .map(|r: WineRecord| {
            format!(
                "unscored: no model for {} arrived in time for #{}",
                r.data_type, r.id
            )
        })
        .name("Unscored");
    let scores_to_kafka = scores_to_topic(env, args, &scores)?;
    match out {
        Some(dir) => {
            if !scores_to_kafka {
                scores
                    .write_as_text(dir.join("scores"))
                    .name("Scores to Files");
            }
            rejected
                .write_as_text(dir.join("rejected-models"))
                .name("Rejected Models to Files");
            unscored
                .write_as_text(dir.join("unscored"))
                .name("Unscored to Files");
        }
        None => {
            if !scores_to_kafka {
                scores.print().name("Print Scores");
            }
            rejected.print_to_err().name("Print Rejected Models");
            unscored.print_to_err().name("Print Unscored");
        }
    }
    Ok(())
}

/// The wine samples: from the `data` file, the `data-topic` topics, or generated.
fn wine_samples(
    env: &StreamEnv,
    args: &JobArgs,
    out: Option<&Path>,
) -> anyhow::Result<DataStream<WineRecord>> {
    kafka_args::one_input(args, "data", "data-topic")?;
    let group = format!("strom-{}-data", args.job());
    // Files are read at parallelism 1: records without an id are numbered in file order.
    let rows = if let Some(source) =
        kafka_args::source(args, "data-topic", &group, WineRecord::parse_line)?
    {
        env.add_source(source, None, "Wine Samples")
    } else if let Some(path) = args.path("data") {
        env.add_source(
            FileSource::parsed(path, WineRecord::parse_line),
            None,
            "Wine Samples",
        )
        .set_parallelism(1)
    } else {
        return generated_wine_samples(env, args);
    };
    dead_letters(&rows, "data", out);
    Ok(rows
        .flat_map_rich(NumberRecords::default())
        .name("Number Samples")
        .uid("number-samples")
        .set_parallelism(1))
}

fn generated_wine_samples(
    env: &StreamEnv,
    args: &JobArgs,
) -> anyhow::Result<DataStream<WineRecord>> {
    let events = args.count("events")?;
    if events.is_none() && env.config().runtime_mode == RuntimeMode::Batch {
        bail!(
            "--runtime-mode batch needs bounded input: give --arg events=<n> (n > 0) or --arg data=<file>"
        );
    }
    Ok(env.add_source(
        GeneratorSource::new(generated_wine)
            .maybe_count(events)
            .maybe_rate(args.rate("rate")?),
        None,
        "Generated Wine Samples",
    ))
}

/// The models, in order (one reader): from the `models` file, the `models-topic` topics,
/// or generated.
fn models(
    env: &StreamEnv,
    args: &JobArgs,
    out: Option<&Path>,
) -> anyhow::Result<DataStream<ModelToServe>> {
    kafka_args::one_input(args, "models", "models-topic")?;
    let group = format!("strom-{}-models", args.job());
    let models = if let Some(source) = kafka_args::source(
        args,
        "models-topic",
        &group,
        kafka_args::json::<ModelToServe>("model"),
    )? {
        env.add_source(source, None, "Models")
    } else if let Some(path) = args.path("models") {
        env.add_source(FileSource::<ModelToServe>::json_lines(path), None, "Models")
    } else {
        let interval = args.duration("model-interval")?;
        let generator = GeneratorSource::new(generated_model).count(3);
        let generator = if interval.is_zero() {
            generator
        } else {
            generator.rate(1.0 / interval.as_secs_f64())
        };
        return Ok(env
            .add_source(generator, None, "Generated Models")
            .set_parallelism(1));
    };
    let models = models.set_parallelism(1);
    dead_letters(&models, "models", out);
    Ok(models)
}

/// Sends the scores to `output-topic` when given (keyed by record id, as JSON); whether
/// it did.
fn scores_to_topic(
    env: &StreamEnv,
    args: &JobArgs,
    scores: &DataStream<ServingResult>,
) -> anyhow::Result<bool> {
    let Some(sink) = kafka_args::output_sink(env, args)? else {
        return Ok(false);
    };
    scores
        .map(|s: ServingResult| kafka_args::keyed_json(s.record_id.to_string(), &s))
        .name("Scores as JSON")
        .sink_to(sink)
        .name("Scores to Kafka")
        .uid(&format!("{}-kafka-output", args.job()));
    Ok(true)
}

fn build_keyed(env: &StreamEnv, args: &JobArgs) -> anyhow::Result<()> {
    build(env, args, Way::Keyed)
}

fn build_broadcast(env: &StreamEnv, args: &JobArgs) -> anyhow::Result<()> {
    build(env, args, Way::Broadcast)
}

/// The jobs of this module.
pub fn jobs() -> Vec<JobSpec> {
    vec![
        JobSpec {
            name: "model-serving-keyed",
            summary: "Model serving (Lublinsky), keyed: wine quality scored by models swapped in keyed state",
            args: ARGS,
            build: build_keyed,
        },
        JobSpec {
            name: "model-serving-broadcast",
            summary: "Model serving (Lublinsky), broadcast: wine quality scored by models held in broadcast state",
            args: ARGS,
            build: build_broadcast,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_samples_are_deterministic_and_near_the_means() {
        assert_eq!(generated_wine(5), generated_wine(5));
        let n = 2_000;
        let mean_alcohol: f64 = (0..n).map(|i| generated_wine(i).alcohol).sum::<f64>() / n as f64;
        assert!((mean_alcohol - 10.42).abs() < 0.1, "{mean_alcohol}");
        assert!((0..n).all(|i| generated_wine(i).features().iter().all(|v| *v >= 0.0)));
    }

    #[test]
    fn built_in_models_load() {
        for m in [linear_model(), logistic_model(), tree_model()] {
            assert!(ServingModel::load(&m).is_ok(), "{}", m.name);
        }
    }

    #[test]
    fn csv_rows_and_header() {
        let header = r#""fixed acidity";"volatile acidity";"citric acid";"residual sugar";"chlorides";"free sulfur dioxide";"total sulfur dioxide";"density";"pH";"sulphates";"alcohol";"quality""#;
        assert_eq!(WineRecord::parse_line(header), Ok(None));
        let r = WineRecord::parse_line("7.4;0.7;0;1.9;0.076;11;34;0.9978;3.51;0.56;9.4;5")
            .unwrap()
            .unwrap();
        assert_eq!(r.alcohol, 9.4);
        assert_eq!(r.data_type, WINE);
        assert_eq!(
            WineRecord::parse_line("7.4;0.7;x;1.9;0.076;11;34;0.9978;3.51;0.56;9.4;5").unwrap_err(),
            "column 3 (citric_acid) 'x' is not a number"
        );
    }
}
