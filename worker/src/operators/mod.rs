//! The built-in operators: what each API call turns into at run time.
//!
//! Every operator consumes batches and emits into an [`Output`]; user code runs inside the
//! panic guard so that a panic fails the job naming the operator and the input position.

pub(crate) mod aggregate;
pub(crate) mod basic;
pub(crate) mod broadcast;
pub(crate) mod co_process;
pub mod interval_join;
pub(crate) mod keyed_process;
pub(crate) mod sink;
pub(crate) mod timestamps;

use crate::error::{Position, TaskResult};
use crate::record::MIN_WATERMARK;
use crate::runtime::context::{OperatorInfo, RuntimeContext, TaskServices, guard};
use crate::runtime::output::Output;

/// What every operator instance carries.
pub(crate) struct OpBase<O> {
    pub info: OperatorInfo,
    pub services: TaskServices,
    pub out: Output<O>,
    /// Records received so far, per input (the position reported when user code panics).
    pub seen: [u64; 2],
    pub watermark: i64,
}

impl<O> OpBase<O> {
    pub(crate) fn new(info: OperatorInfo, services: TaskServices, out: Output<O>) -> Self {
        OpBase {
            info,
            services,
            out,
            seen: [0; 2],
            watermark: MIN_WATERMARK,
        }
    }

    pub(crate) fn runtime_context(&self) -> RuntimeContext<'_> {
        RuntimeContext {
            info: &self.info,
            services: &self.services,
        }
    }

    /// Runs user setup code (`open`) under the panic guard.
    pub(crate) fn open_with(&self, f: impl FnOnce(&RuntimeContext<'_>)) -> TaskResult {
        let ctx = self.runtime_context();
        guard!(self.info, Position::Lifecycle("opening the operator"), {
            f(&ctx);
            Ok(())
        })
    }

    /// Runs user teardown code (`close`); a panic there is logged, not fatal.
    pub(crate) fn close_with(&mut self, f: impl FnOnce()) {
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err() {
            tracing::warn!(operator = %self.info.name, "user code panicked while closing");
        }
        self.out.close();
    }
}

/// Implements the control methods of `Consumer` (`end: end_input`) or of
/// `TwoInputOperator` (`end: finish`) for an operator with a `base: OpBase<_>` field: the
/// watermark and processing time move its timers (`timers: yes`, through its
/// `fn fire(&mut self, TimeDomain, i64) -> TaskResult`) and are forwarded; `close` closes
/// the user function in the named field (or `none`).
macro_rules! forward_control {
    (end: $end:ident, timers: $timers:ident, close: $close:ident) => {
        $crate::operators::forward_control!(end: $end, timers: $timers, close: $close, barrier: custom);
        fn process_barrier(
            &mut self,
            barrier: $crate::runtime::barrier::Barrier,
            snapshots: &mut Vec<$crate::runtime::barrier::OperatorSnapshot>,
        ) -> $crate::error::TaskResult {
            $crate::operators::forward_control!(@snapshot $timers, self, barrier, snapshots);
            self.base.out.emit_barrier(barrier, snapshots)
        }
    };
    // An operator with operator state (list state of a process function) and no keyed
    // state.
    (end: $end:ident, timers: no, close: $close:ident, barrier: operator_state) => {
        $crate::operators::forward_control!(end: $end, timers: no, close: $close, barrier: custom);
        fn process_barrier(
            &mut self,
            barrier: $crate::runtime::barrier::Barrier,
            snapshots: &mut Vec<$crate::runtime::barrier::OperatorSnapshot>,
        ) -> $crate::error::TaskResult {
            let info = &self.base.info;
            $crate::runtime::barrier::push_operator_state(
                info,
                None,
                &self.operator_state,
                snapshots,
            )
            .map_err(|e| info.error(e))?;
            self.base.out.emit_barrier(barrier, snapshots)
        }
    };
    // The operator writes its own `process_barrier` (one with more state than keyed state
    // and timers).
    (end: $end:ident, timers: $timers:ident, close: $close:ident, barrier: custom) => {
        fn process_watermark(&mut self, watermark: i64) -> $crate::error::TaskResult {
            self.base.watermark = watermark;
            $crate::operators::forward_control!(@fire $timers, self, EventTime, watermark);
            self.base.out.emit_watermark(watermark)
        }
        fn process_status(
            &mut self,
            status: $crate::record::WatermarkStatus,
        ) -> $crate::error::TaskResult {
            self.base.out.emit_status(status)
        }
        fn on_processing_time(&mut self, now: i64) -> $crate::error::TaskResult {
            $crate::operators::forward_control!(@fire $timers, self, ProcessingTime, now);
            self.base.out.on_processing_time(now)
        }
        fn $end(&mut self) -> $crate::error::TaskResult {
            self.base.out.end_input()
        }
        fn flush(&mut self) -> $crate::error::TaskResult {
            self.base.out.flush_downstream()
        }
        fn notify_checkpoint_complete(&mut self, checkpoint: u64) -> $crate::error::TaskResult {
            self.base.out.notify_checkpoint_complete(checkpoint)
        }
        fn close(&mut self) {
            $crate::operators::forward_control!(@close $close, self);
        }
    };
    // Operators with timers are the keyed ones: their state and timers go into the
    // snapshot.
    (@snapshot yes, $self:ident, $barrier:ident, $snapshots:ident) => {
        let snapshot = $crate::runtime::barrier::snapshot_keyed(
            &$self.base.info,
            $barrier.id,
            &$self.backend,
            Some(&$self.timers),
        )
        .map_err(|e| $self.base.info.error(e))?;
        $snapshots.push(snapshot);
    };
    (@snapshot no, $self:ident, $barrier:ident, $snapshots:ident) => {};
    (@fire yes, $self:ident, $domain:ident, $time:expr) => {
        $self.fire($crate::record::TimeDomain::$domain, $time)?;
    };
    (@fire no, $self:ident, $domain:ident, $time:expr) => {};
    (@close none, $self:ident) => {
        $self.base.out.close();
    };
    (@close $field:ident, $self:ident) => {
        let f = &mut $self.$field;
        $self.base.close_with(|| f.close());
    };
}
pub(crate) use forward_control;
