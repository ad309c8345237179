//! The master's state in Prometheus text format (`/metrics`): operator counters and task
//! times of the jobs that have not ended, as the workers' heartbeats last reported them.

use super::State;
use super::job_run::JobRun;
use strom_proto::control::OperatorMetrics;

impl State {
    /// The jobs whose counters are live (an ended job's last heartbeat may not be final).
    fn live_jobs(&self) -> impl Iterator<Item = &JobRun> {
        self.jobs.iter().filter(|j| !j.ended())
    }

    /// Prometheus lines of the operators' counters, by job, operator and subtask.
    pub(crate) fn operator_metrics_text(&self) -> String {
        let mut out = String::new();
        type Counter = fn(&OperatorMetrics) -> u64;
        let series: [(&str, &str, Counter); 5] = [
            (
                "strom_records_in_total",
                "Records an operator received.",
                |m| m.records_in,
            ),
            (
                "strom_records_out_total",
                "Records an operator emitted.",
                |m| m.records_out,
            ),
            (
                "strom_records_side_total",
                "Records sent to side outputs.",
                |m| m.records_side,
            ),
            (
                "strom_records_late_total",
                "Records after the allowed lateness.",
                |m| m.records_late,
            ),
            (
                "strom_dead_letters_total",
                "Unreadable input records.",
                |m| m.dead_letters,
            ),
        ];
        out.push_str(&self.task_times_text());
        for (name, help, value) in series {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} counter\n"));
            for job in self.live_jobs() {
                let mut keys: Vec<&(u32, u32)> = job.operator_metrics.keys().collect();
                keys.sort();
                for key in keys {
                    let operator = job
                        .plan
                        .operator_names
                        .get(key.0 as usize)
                        .map_or("?", String::as_str);
                    out.push_str(&format!(
                        "{name}{{job=\"{}\",operator=\"{}\",subtask=\"{}\"}} {}\n",
                        label(&job.id),
                        label(operator),
                        key.1,
                        value(&job.operator_metrics[key])
                    ));
                }
            }
        }
        out
    }

    /// Prometheus lines of the tasks' busy and backpressured time and watermark lag.
    fn task_times_text(&self) -> String {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let mut busy = String::from(
            "# HELP strom_task_busy_seconds_total Time a task spent working.\n\
             # TYPE strom_task_busy_seconds_total counter\n",
        );
        let mut blocked = String::from(
            "# HELP strom_task_backpressured_seconds_total Time a task waited for room \
             downstream.\n# TYPE strom_task_backpressured_seconds_total counter\n",
        );
        let mut lag = String::from(
            "# HELP strom_task_watermark_lag_seconds Wall-clock time minus the task's input \
             watermark.\n# TYPE strom_task_watermark_lag_seconds gauge\n",
        );
        for job in self.live_jobs() {
            let mut keys: Vec<&(u32, u32)> = job.task_times.keys().collect();
            keys.sort();
            for key in keys {
                let (busy_ms, blocked_ms, watermark) = job.task_times[key];
                let vertex = job
                    .plan
                    .vertex_names
                    .get(key.0 as usize)
                    .map_or("?", String::as_str);
                let labels = format!(
                    "job=\"{}\",task=\"{}\",subtask=\"{}\"",
                    label(&job.id),
                    label(vertex),
                    key.1
                );
                busy.push_str(&format!(
                    "strom_task_busy_seconds_total{{{labels}}} {:.3}\n",
                    busy_ms as f64 / 1000.0
                ));
                blocked.push_str(&format!(
                    "strom_task_backpressured_seconds_total{{{labels}}} {:.3}\n",
                    blocked_ms as f64 / 1000.0
                ));
                // A watermark at the end of time (input ended) has no lag to speak of.
                if let Some(w) = watermark.filter(|&w| w < i64::MAX) {
                    lag.push_str(&format!(
                        "strom_task_watermark_lag_seconds{{{labels}}} {:.3}\n",
                        (now_ms - w) as f64 / 1000.0
                    ));
                }
            }
        }
        busy + &blocked + &lag
    }
}

/// A Prometheus label value: backslash, quote and newline escaped.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::label;

    #[test]
    fn prometheus_label_values_are_escaped() {
        assert_eq!(label("Source: Events"), "Source: Events");
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
