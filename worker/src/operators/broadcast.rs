//! The broadcast state pattern: a data stream connected with a broadcast stream whose
//! records update broadcast state held by every instance (input 1: data, input 2:
//! broadcast).

use crate::error::{Position, TaskResult};
use crate::functions::{
    BroadcastContext, BroadcastProcessFunction, Collector, KeyedBroadcastContext,
    KeyedBroadcastProcessFunction,
};
use crate::operators::co_process::process_plain;
use crate::operators::keyed_process::{KeySelector, KeyedParts, fire_timers, process_keyed};
use crate::operators::{OpBase, forward_control};
use crate::record::{Batch, Data, Key, TimeDomain};
use crate::runtime::barrier::{
    Barrier, OperatorSnapshot, push_operator_state, snapshot_keyed, with_broadcast,
};
use crate::runtime::context::guard;
use crate::runtime::task::TwoInputOperator;
use crate::state::backend::KeyedBackend;
use crate::state::broadcast::BroadcastStates;
use crate::state::operator::OperatorStateStore;
use crate::state::timers::Timers;
use std::marker::PhantomData;

pub(crate) struct BroadcastProcessOp<I, B, O, F> {
    pub base: OpBase<O>,
    pub f: F,
    pub states: BroadcastStates,
    pub operator_state: OperatorStateStore,
    pub _in: PhantomData<fn(I, B)>,
}

impl<I: Data, B: Data, O: Data, F: BroadcastProcessFunction<I, B, O>> TwoInputOperator<I, B>
    for BroadcastProcessOp<I, B, O, F>
{
    fn process_batch1(&mut self, batch: &mut Batch<I>) -> TaskResult {
        let f = &mut self.f;
        process_plain(
            &mut self.base,
            0,
            2,
            batch,
            &self.operator_state,
            Some(&mut self.states),
            |v, c, o| f.process_element(v, c, o),
        )
    }

    fn process_batch2(&mut self, batch: &mut Batch<B>) -> TaskResult {
        self.base.info.metrics.add_in(1, batch.len());
        let b = &mut self.base;
        let f = &mut self.f;
        let states = &mut self.states;
        guard!(
            b.info,
            Position::InputRecord {
                input: 2,
                record: b.seen[1]
            },
            {
                let clock = b.services.clock.clone();
                for r in batch.drain(..) {
                    b.seen[1] += 1;
                    let mut ctx = BroadcastContext {
                        timestamp: r.timestamp,
                        watermark: b.watermark,
                        clock: &clock,
                        sides: &mut b.out.sides,
                        broadcast: states,
                    };
                    let mut out = Collector::new(&mut b.out.buf, r.timestamp);
                    f.process_broadcast_element(r.value, &mut ctx, &mut out);
                }
                Ok(())
            }
        )?;
        self.base.out.flush()
    }

    fn process_barrier(
        &mut self,
        barrier: Barrier,
        snapshots: &mut Vec<OperatorSnapshot>,
    ) -> TaskResult {
        let info = &self.base.info;
        with_broadcast(info, None, &self.states)
            .and_then(|s| push_operator_state(info, Some(s), &self.operator_state, snapshots))
            .map_err(|e| info.error(e))?;
        self.base.out.emit_barrier(barrier, snapshots)
    }

    forward_control!(end: finish, timers: no, close: f, barrier: custom);
}

pub(crate) struct KeyedBroadcastProcessOp<K, I, B, O, F> {
    pub base: OpBase<O>,
    pub f: F,
    pub key_selector: KeySelector<I, K>,
    pub backend: KeyedBackend<K>,
    pub timers: Timers<K, ()>,
    pub states: BroadcastStates,
    pub _in: PhantomData<fn(I, B)>,
}

impl<K: Key, I: Data, B: Data, O: Data, F: KeyedBroadcastProcessFunction<K, I, B, O>>
    KeyedBroadcastProcessOp<K, I, B, O, F>
{
    fn parts(&mut self) -> (&mut OpBase<O>, &mut F, KeyedParts<'_, K>) {
        (
            &mut self.base,
            &mut self.f,
            KeyedParts {
                backend: &self.backend,
                timers: &mut self.timers,
                broadcast: Some(&mut self.states),
            },
        )
    }

    fn fire(&mut self, domain: TimeDomain, time: i64) -> TaskResult {
        let (base, f, parts) = self.parts();
        fire_timers(base, domain, time, parts, |t, c, o| f.on_timer(t, c, o))
    }
}

impl<K: Key, I: Data, B: Data, O: Data, F: KeyedBroadcastProcessFunction<K, I, B, O>>
    TwoInputOperator<I, B> for KeyedBroadcastProcessOp<K, I, B, O, F>
{
    fn process_batch1(&mut self, batch: &mut Batch<I>) -> TaskResult {
        let sel = self.key_selector.clone();
        let (base, f, parts) = self.parts();
        process_keyed(base, 0, 2, batch, &sel, parts, |v, c, o| {
            f.process_element(v, c, o)
        })
    }

    fn process_batch2(&mut self, batch: &mut Batch<B>) -> TaskResult {
        self.base.info.metrics.add_in(1, batch.len());
        let b = &mut self.base;
        let f = &mut self.f;
        let states = &mut self.states;
        let backend = &self.backend;
        guard!(
            b.info,
            Position::InputRecord {
                input: 2,
                record: b.seen[1]
            },
            {
                let clock = b.services.clock.clone();
                for r in batch.drain(..) {
                    b.seen[1] += 1;
                    let mut ctx = KeyedBroadcastContext {
                        timestamp: r.timestamp,
                        watermark: b.watermark,
                        clock: &clock,
                        sides: &mut b.out.sides,
                        broadcast: states,
                        backend,
                    };
                    let mut out = Collector::new(&mut b.out.buf, r.timestamp);
                    f.process_broadcast_element(r.value, &mut ctx, &mut out);
                }
                Ok(())
            }
        )?;
        self.base.out.flush()
    }

    fn process_barrier(
        &mut self,
        barrier: Barrier,
        snapshots: &mut Vec<OperatorSnapshot>,
    ) -> TaskResult {
        let info = &self.base.info;
        let snapshot = snapshot_keyed(info, barrier.id, &self.backend, Some(&self.timers))
            .and_then(|keyed| with_broadcast(info, Some(keyed), &self.states))
            .map_err(|e| info.error(e))?;
        snapshots.push(snapshot);
        self.base.out.emit_barrier(barrier, snapshots)
    }

    forward_control!(end: finish, timers: yes, close: f, barrier: custom);
}
