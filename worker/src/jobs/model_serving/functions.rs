//! The two ways of serving models from the book: keyed (records and models keyed by data
//! type meet in one instance, which keeps the model in keyed state) and broadcast (every
//! instance keeps every model in broadcast state and scores any record).
//!
//! Records that arrive before any model for their data type wait (up to
//! [`MAX_WAITING`] per data type and instance) and are scored by the first model; the
//! book skips them, which makes the output depend on which stream starts first.

use crate::functions::{
    BroadcastContext, BroadcastProcessFunction, Collector, Context, KeyedCoProcessFunction,
    KeyedContext,
};
use crate::jobs::model_serving::models::ServingModel;
use crate::jobs::model_serving::records::{ModelToServe, RejectedModel, ServingResult, WineRecord};
use crate::runtime::context::RuntimeContext;
use crate::runtime::output::OutputTag;
use crate::state::{ListStateDescriptor, MapStateDescriptor, ValueStateDescriptor};

/// Records waiting for a first model, at most, per data type and instance; more go to
/// [`unscored_tag`].
pub const MAX_WAITING: usize = 10_000;

/// Models that could not be loaded, with the reason (once per model).
pub fn rejected_models_tag() -> OutputTag<RejectedModel> {
    OutputTag::new("rejected-models")
}

/// Records that could not wait any longer for a first model.
pub fn unscored_tag() -> OutputTag<WineRecord> {
    OutputTag::new("unscored")
}

fn score(model: &ServingModel, record: &WineRecord) -> ServingResult {
    ServingResult {
        record_id: record.id,
        data_type: record.data_type.clone(),
        model_name: model.name.clone(),
        score: model.model.score(record),
    }
}

fn rejected(m: &ModelToServe, error: String) -> RejectedModel {
    tracing::warn!(model = %m.name, data_type = %m.data_type, %error, "model rejected; the current model stays");
    RejectedModel {
        name: m.name.clone(),
        data_type: m.data_type.clone(),
        error,
    }
}

/// The model scoring records of this key.
pub const CURRENT_MODEL: ValueStateDescriptor<ServingModel> =
    ValueStateDescriptor::new("current-model");
/// A model that arrived and replaces the current one at the next record.
pub const NEW_MODEL: ValueStateDescriptor<ServingModel> = ValueStateDescriptor::new("new-model");
/// Records that arrived before the key's first model.
pub const WAITING: ListStateDescriptor<WineRecord> = ListStateDescriptor::new("waiting-records");
/// How many records wait (list state cannot tell its length without a copy).
pub const WAITING_COUNT: ValueStateDescriptor<u64> = ValueStateDescriptor::new("waiting-count");

/// Keyed serving (the book's `DataProcessorKeyed`): input 1 records, input 2 models, both
/// keyed by data type. A new model is kept aside and switched in when the next record
/// arrives, so it replaces the old one between records, never during scoring.
#[derive(Clone, Default)]
pub struct KeyedModelServer;

impl KeyedCoProcessFunction<String, WineRecord, ModelToServe, ServingResult> for KeyedModelServer {
    fn process_element1(
        &mut self,
        record: WineRecord,
        ctx: &mut KeyedContext<'_, String>,
        out: &mut Collector<'_, ServingResult>,
    ) {
        let (current, new) = (ctx.value_state(&CURRENT_MODEL), ctx.value_state(&NEW_MODEL));
        if let Some(model) = new.value() {
            current.update(model);
            new.clear();
        }
        match current.value() {
            Some(model) => out.collect(score(&model, &record)),
            None => {
                let count = ctx.value_state(&WAITING_COUNT);
                let n = count.value().unwrap_or(0);
                if n < MAX_WAITING as u64 {
                    ctx.list_state(&WAITING).add(record);
                    count.update(n + 1);
                } else {
                    ctx.output(&unscored_tag(), record);
                }
            }
        }
    }

    fn process_element2(
        &mut self,
        m: ModelToServe,
        ctx: &mut KeyedContext<'_, String>,
        out: &mut Collector<'_, ServingResult>,
    ) {
        let model = match ServingModel::load(&m) {
            Ok(model) => model,
            Err(e) => {
                let r = rejected(&m, e);
                ctx.output(&rejected_models_tag(), r);
                return;
            }
        };
        tracing::info!(model = %model.name, data_type = %model.data_type, "new model");
        let current = ctx.value_state(&CURRENT_MODEL);
        if current.value().is_some() {
            ctx.value_state(&NEW_MODEL).update(model);
            return;
        }
        // The first model: nothing is being scored, so it serves at once, starting with
        // the records that waited for it.
        let waiting = ctx.list_state(&WAITING);
        for record in waiting.get() {
            out.collect(score(&model, &record));
        }
        waiting.clear();
        ctx.value_state(&WAITING_COUNT).clear();
        current.update(model);
    }
}

/// Models by data type, in broadcast state.
pub const MODELS: MapStateDescriptor<String, ServingModel> = MapStateDescriptor::new("models");

/// Broadcast serving: every instance holds the models of all data types and scores the
/// records it receives with the model of their type.
#[derive(Clone, Default)]
pub struct BroadcastModelServer {
    /// Records that arrived before a model of their type (not part of snapshots: after a
    /// restore they are read again from the source's position).
    waiting: Vec<WineRecord>,
    /// Only the first instance reports rejected models, so each is reported once.
    report: bool,
}

impl BroadcastProcessFunction<WineRecord, ModelToServe, ServingResult> for BroadcastModelServer {
    fn open(&mut self, ctx: &RuntimeContext<'_>) {
        self.report = ctx.subtask_index() == 0;
    }

    fn process_element(
        &mut self,
        record: WineRecord,
        ctx: &mut Context<'_>,
        out: &mut Collector<'_, ServingResult>,
    ) {
        let models = ctx.broadcast_state(&MODELS);
        match models.get(&record.data_type) {
            Some(model) => out.collect(score(model, &record)),
            None if self.waiting.len() < MAX_WAITING => self.waiting.push(record),
            None => ctx.output(&unscored_tag(), record),
        }
    }

    fn process_broadcast_element(
        &mut self,
        m: ModelToServe,
        ctx: &mut BroadcastContext<'_>,
        out: &mut Collector<'_, ServingResult>,
    ) {
        let model = match ServingModel::load(&m) {
            Ok(model) => model,
            Err(e) => {
                if self.report {
                    let r = rejected(&m, e);
                    ctx.output(&rejected_models_tag(), r);
                }
                return;
            }
        };
        let data_type = model.data_type.clone();
        if !self.waiting.is_empty() {
            let (ready, still): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiting)
                .into_iter()
                .partition(|r| r.data_type == data_type);
            self.waiting = still;
            for record in ready {
                out.collect(score(&model, &record));
            }
        }
        ctx.broadcast_state(&MODELS).put(data_type, model);
    }
}
