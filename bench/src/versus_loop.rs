//! The engine-overhead table: each pipeline as a Strom job and as a hand-written loop,
//! alternating, in fresh processes.

use crate::child::{Tuning, Work, measure_in_child};
use strom_bench::cases::Case;
use strom_bench::measure::{load_average, median};

pub struct Options {
    pub events: u64,
    pub runs: usize,
    pub parallelism: Vec<usize>,
    pub cases: Vec<Case>,
    pub output: Option<std::path::PathBuf>,
    pub tuning: Tuning,
}

pub fn run(o: Options) -> anyhow::Result<()> {
    let mut table = String::new();
    table.push_str(&format!(
        "{} events per run, median of {} runs, load average before: {}\n\n",
        o.events,
        o.runs,
        load_average()
    ));
    table.push_str("| case | p | Strom events/s | loop events/s | Strom / loop | Strom peak RSS | loop peak RSS |\n");
    table.push_str("|---|---:|---:|---:|---:|---:|---:|\n");
    for &case in &o.cases {
        for &p in &o.parallelism {
            let (mut strom_rates, mut loop_rates, mut strom_rss, mut loop_rss) =
                (vec![], vec![], vec![], vec![]);
            // Alternate the engines so drift in machine load hits both alike.
            for _ in 0..o.runs {
                let work = Work::Pipeline(case);
                let s = measure_in_child(work, "strom", p, o.events, None, o.tuning)?;
                strom_rates.push(s.events_per_second());
                strom_rss.push(s.peak_rss_kib as f64);
                let l = measure_in_child(work, "loop", p, o.events, None, o.tuning)?;
                loop_rates.push(l.events_per_second());
                loop_rss.push(l.peak_rss_kib as f64);
            }
            let (s, l) = (median(strom_rates), median(loop_rates));
            let row = format!(
                "| {} | {p} | {:.1}M | {:.1}M | {:.0}% | {:.1} MB | {:.1} MB |\n",
                case.name(),
                s / 1e6,
                l / 1e6,
                100.0 * s / l,
                median(strom_rss) / 1024.0,
                median(loop_rss) / 1024.0
            );
            eprint!("{row}");
            table.push_str(&row);
        }
    }
    table.push('\n');
    for case in Case::ALL {
        table.push_str(&format!("- `{}`: {}\n", case.name(), case.describe()));
    }
    strom_bench::measure::publish_table(&table, o.output.as_deref())
}
