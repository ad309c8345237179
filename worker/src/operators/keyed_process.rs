//! The keyed process operator (a `KeyedProcessFunction` with keyed state and timers), and
//! the record and timer loops every keyed function operator shares.

use crate::error::{Position, TaskResult};
use crate::functions::{Collector, KeyedContext, KeyedProcessFunction};
use crate::graph::BuildContext;
use crate::operators::{OpBase, forward_control};
use crate::record::{Batch, Data, Key, NO_TIMESTAMP, TimeDomain};
use crate::runtime::consumer::Consumer;
use crate::runtime::context::{OperatorInfo, guard};
use crate::state::StateBackend;
use crate::state::backend::KeyedBackend;
use crate::state::backend::StateStore;
use crate::state::broadcast::BroadcastStates;
use crate::state::heap::KeyContext;
use crate::state::operator::OperatorStateStore;
use crate::state::rocks::RocksInstance;
use crate::state::timers::Timers;
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::Arc;

/// Extracts a record's key.
pub(crate) type KeySelector<T, K> = Arc<dyn Fn(&T) -> K + Send + Sync>;

/// A keyed backend and timers for an operator instance, with the state and timers of
/// its key groups when the job starts from a checkpoint.
pub(crate) fn keyed_parts<K: Key, N: Data + std::hash::Hash + Eq>(
    ctx: &BuildContext<'_>,
) -> TaskResult<(KeyedBackend<K>, Timers<K, N>)> {
    let key = Rc::new(KeyContext::new(ctx.key_groups, ctx.info.max_parallelism));
    let restored = ctx.config.restore.as_deref();
    let mut rocks_taken = false;
    let store = match &ctx.config.state_backend {
        StateBackend::Heap => StateStore::Heap,
        StateBackend::RocksDb(config) => {
            let name = format!("{}-{}", ctx.info.uid, ctx.info.subtask);
            // The same key groups from an incremental checkpoint: the instance starts
            // from its files as they are.
            let instance = match restored.and_then(|r| {
                r.rocks_files(&ctx.info.uid, ctx.key_groups)
                    .map(|files| (r, files))
            }) {
                Some((restored, files)) => {
                    rocks_taken = true;
                    RocksInstance::open_with(config, &name, files.tables.clone(), |dir| {
                        restored.download_rocks(files, dir)
                    })
                }
                None => RocksInstance::open(config, &name),
            };
            StateStore::RocksDb(
                instance
                    .map_err(|e| ctx.info.error(format!("opening its RocksDB instance: {e}")))?,
            )
        }
    };
    let backend = KeyedBackend::with_store(key, ctx.services.clock.clone(), store);
    let mut timers = Timers::new(ctx.services.wakeup.clone());
    if let Some(restored) = restored {
        let mut restore = || -> Result<(), String> {
            // State a key group at a time (it may be larger than memory, in RocksDB);
            // timers all together, so those due at the same time fire in their order.
            let mut timer_groups = Vec::new();
            restored.for_each_keyed_group(
                &ctx.info.uid,
                ctx.key_groups,
                rocks_taken,
                |mut g| {
                    backend.restore(std::slice::from_ref(&g))?;
                    if !g.event_timers.is_empty() || !g.processing_timers.is_empty() {
                        g.tables.clear();
                        timer_groups.push(g);
                    }
                    Ok(())
                },
            )?;
            timers.restore(&timer_groups)
        };
        restore().map_err(|e| ctx.info.error(format!("restoring its keyed state: {e}")))?;
    }
    Ok((backend, timers))
}

/// The broadcast states of an operator instance, with what a checkpoint it starts from
/// holds of them.
pub(crate) fn broadcast_states(ctx: &BuildContext<'_>) -> TaskResult<BroadcastStates> {
    let mut states = BroadcastStates::default();
    if let Some(restored) = &ctx.config.restore {
        let restored = restored
            .broadcast(&ctx.info.uid, ctx.info.subtask)
            .map_err(|e| {
                ctx.info
                    .error(format!("restoring its broadcast state: {e}"))
            })?;
        states.restore(restored);
    }
    Ok(states)
}

/// The operator state of an operator instance, with its share of what a checkpoint it
/// starts from holds.
pub(crate) fn operator_state(ctx: &BuildContext<'_>) -> TaskResult<OperatorStateStore> {
    let store = OperatorStateStore::default();
    if let Some(restored) = &ctx.config.restore {
        let lists = restored
            .operator_lists(&ctx.info.uid, ctx.info.subtask, ctx.info.parallelism)
            .map_err(|e| ctx.info.error(format!("restoring its operator state: {e}")))?;
        store.restore(lists);
    }
    Ok(store)
}

/// Makes `key` current, or fails naming the operator.
#[inline]
pub(crate) fn set_key<K: Key>(
    backend: &KeyedBackend<K>,
    info: &OperatorInfo,
    key: K,
) -> TaskResult {
    backend.set_current_key(key).map_err(|m| info.error(m))
}

/// The keyed state, timers and broadcast state a keyed function sees.
pub(crate) struct KeyedParts<'a, K> {
    pub backend: &'a KeyedBackend<K>,
    pub timers: &'a mut Timers<K, ()>,
    pub broadcast: Option<&'a mut BroadcastStates>,
}

/// Feeds every record of `batch` (input `input` of `inputs`) to `call` with its key set.
pub(crate) fn process_keyed<K: Key, I, O>(
    base: &mut OpBase<O>,
    input: u8,
    inputs: u8,
    batch: &mut Batch<I>,
    selector: &KeySelector<I, K>,
    parts: KeyedParts<'_, K>,
    mut call: impl FnMut(I, &mut KeyedContext<'_, K>, &mut Collector<'_, O>),
) -> TaskResult {
    let idx = usize::from(input);
    base.info.metrics.add_in(idx, batch.len());
    let KeyedParts {
        backend,
        timers,
        mut broadcast,
    } = parts;
    let b = &mut *base;
    guard!(b.info, Position::of_input(inputs, input, b.seen[idx]), {
        let clock = b.services.clock.clone();
        for r in batch.drain(..) {
            b.seen[idx] += 1;
            set_key(backend, &b.info, selector(&r.value))?;
            let mut ctx = KeyedContext {
                timestamp: r.timestamp,
                watermark: b.watermark,
                clock: &clock,
                sides: &mut b.out.sides,
                backend,
                timers: &mut *timers,
                time_domain: None,
                broadcast: broadcast.as_deref_mut(),
            };
            let mut out = Collector::new(&mut b.out.buf, r.timestamp);
            call(r.value, &mut ctx, &mut out);
        }
        Ok(())
    })?;
    base.out.flush()
}

/// Fires the timers of `domain` due at `time`, each with its key set.
pub(crate) fn fire_timers<K: Key, O>(
    base: &mut OpBase<O>,
    domain: TimeDomain,
    time: i64,
    parts: KeyedParts<'_, K>,
    mut on_timer: impl FnMut(i64, &mut KeyedContext<'_, K>, &mut Collector<'_, O>),
) -> TaskResult {
    let KeyedParts {
        backend,
        timers,
        mut broadcast,
    } = parts;
    loop {
        let due = match domain {
            TimeDomain::EventTime => timers.event.pop_due(time),
            TimeDomain::ProcessingTime => timers.processing.pop_due(time),
        };
        let Some((t, key, ())) = due else { break };
        set_key(backend, &base.info, key)?;
        let b = &mut *base;
        guard!(
            b.info,
            Position::Timer {
                domain,
                timestamp: t
            },
            {
                let clock = b.services.clock.clone();
                // Event-time results carry the timer's time; processing-time ones none (Flink).
                let ts = if domain == TimeDomain::EventTime {
                    t
                } else {
                    NO_TIMESTAMP
                };
                let mut ctx = KeyedContext {
                    timestamp: ts,
                    watermark: b.watermark,
                    clock: &clock,
                    sides: &mut b.out.sides,
                    backend,
                    timers: &mut *timers,
                    time_domain: Some(domain),
                    broadcast: broadcast.as_deref_mut(),
                };
                let mut out = Collector::new(&mut b.out.buf, ts);
                on_timer(t, &mut ctx, &mut out);
                Ok(())
            }
        )?;
    }
    if domain == TimeDomain::ProcessingTime {
        timers.request_wakeup();
    }
    base.out.flush()
}

pub(crate) struct KeyedProcessOp<K, I, O, F> {
    pub base: OpBase<O>,
    pub f: F,
    pub key_selector: KeySelector<I, K>,
    pub backend: KeyedBackend<K>,
    pub timers: Timers<K, ()>,
    pub _in: PhantomData<fn(I)>,
}

impl<K: Key, I: Data, O: Data, F: KeyedProcessFunction<K, I, O>> KeyedProcessOp<K, I, O, F> {
    fn fire(&mut self, domain: TimeDomain, time: i64) -> TaskResult {
        let (base, f, parts) = self.parts();
        fire_timers(base, domain, time, parts, |t, c, o| f.on_timer(t, c, o))
    }

    fn parts(&mut self) -> (&mut OpBase<O>, &mut F, KeyedParts<'_, K>) {
        (
            &mut self.base,
            &mut self.f,
            KeyedParts {
                backend: &self.backend,
                timers: &mut self.timers,
                broadcast: None,
            },
        )
    }
}

impl<K: Key, I: Data, O: Data, F: KeyedProcessFunction<K, I, O>> Consumer<I>
    for KeyedProcessOp<K, I, O, F>
{
    fn process_batch(&mut self, batch: &mut Batch<I>) -> TaskResult {
        let selector = self.key_selector.clone();
        let (base, f, parts) = self.parts();
        process_keyed(base, 0, 1, batch, &selector, parts, |v, c, o| {
            f.process_element(v, c, o)
        })
    }

    forward_control!(end: end_input, timers: yes, close: f);
}
