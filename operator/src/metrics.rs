//! The operator's own Prometheus metrics (`/metrics`): reconciles, their failures by
//! kind, the time they took, and whether this replica leads.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

#[derive(Clone, Default)]
pub struct Metrics {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    reconciles: AtomicU64,
    reconcile_micros: AtomicU64,
    failures: Mutex<BTreeMap<&'static str, u64>>,
    leader: AtomicBool,
}

/// Adds the reconcile's time when dropped.
pub struct ReconcileTimer {
    metrics: Metrics,
    started: Instant,
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        let micros = self.started.elapsed().as_micros() as u64;
        self.metrics
            .inner
            .reconcile_micros
            .fetch_add(micros, Ordering::Relaxed);
    }
}

impl Metrics {
    pub fn reconcile_started(&self) -> ReconcileTimer {
        self.inner.reconciles.fetch_add(1, Ordering::Relaxed);
        ReconcileTimer {
            metrics: self.clone(),
            started: Instant::now(),
        }
    }

    pub fn reconcile_failed(&self, kind: &'static str) {
        if let Ok(mut failures) = self.inner.failures.lock() {
            *failures.entry(kind).or_default() += 1;
        }
    }

    pub fn set_leader(&self, leader: bool) {
        self.inner.leader.store(leader, Ordering::Relaxed);
    }

    pub fn is_leader(&self) -> bool {
        self.inner.leader.load(Ordering::Relaxed)
    }

    /// Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let reconciles = self.inner.reconciles.load(Ordering::Relaxed);
        let seconds = self.inner.reconcile_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(
            out,
            "# HELP strom_operator_reconciles_total StreamJob reconciles started."
        );
        let _ = writeln!(out, "# TYPE strom_operator_reconciles_total counter");
        let _ = writeln!(out, "strom_operator_reconciles_total {reconciles}");
        let _ = writeln!(
            out,
            "# HELP strom_operator_reconcile_seconds_total Time spent reconciling."
        );
        let _ = writeln!(out, "# TYPE strom_operator_reconcile_seconds_total counter");
        let _ = writeln!(out, "strom_operator_reconcile_seconds_total {seconds}");
        let _ = writeln!(
            out,
            "# HELP strom_operator_reconcile_errors_total Failed reconciles by kind."
        );
        let _ = writeln!(out, "# TYPE strom_operator_reconcile_errors_total counter");
        if let Ok(failures) = self.inner.failures.lock() {
            for (kind, n) in failures.iter() {
                let _ = writeln!(
                    out,
                    "strom_operator_reconcile_errors_total{{error=\"{kind}\"}} {n}"
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP strom_operator_leader 1 when this replica leads (reconciles)."
        );
        let _ = writeln!(out, "# TYPE strom_operator_leader gauge");
        let _ = writeln!(out, "strom_operator_leader {}", u8::from(self.is_leader()));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_format_counts_reconciles_failures_and_leadership() {
        let m = Metrics::default();
        drop(m.reconcile_started());
        m.reconcile_failed("conflict");
        m.reconcile_failed("conflict");
        m.set_leader(true);
        let text = m.render();
        assert!(text.contains("strom_operator_reconciles_total 1\n"));
        assert!(text.contains("strom_operator_reconcile_errors_total{error=\"conflict\"} 2\n"));
        assert!(text.contains("strom_operator_leader 1\n"));
    }
}
