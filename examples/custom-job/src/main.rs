//! A binary with its own job, built on the `strom` crate: the same command line as
//! `strom` (`my-strom run page-views`, `my-strom jobs`), plus the built-in jobs.
//!
//! The job counts page views per page in 10-second event-time windows and sends views
//! that arrive more than 5 s late to a side output.

use std::process::ExitCode;
use std::time::Duration;
use strom::prelude::*;
use strom::{ArgSpec, JobArgs, JobRegistry, JobSpec};

// The allocator of Strom's own binaries (see `strom::MiMalloc`).
#[global_allocator]
static ALLOCATOR: strom::MiMalloc = strom::MiMalloc;

/// One page view.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct PageView {
    page: String,
    user: u64,
    at_ms: i64,
}

/// Views of a page in one window.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct PageCount {
    page: String,
    window_end: i64,
    views: u64,
}

impl std::fmt::Display for PageCount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} views (window ending {})",
            self.page, self.views, self.window_end
        )
    }
}

const ARGS: &[ArgSpec] = &[
    ArgSpec::new("views", "10000", "number of generated page views"),
    ArgSpec::new(
        "input",
        "",
        "JSON lines of {page, user, at_ms} instead of generated views",
    ),
];

/// The pipeline, separate from sources and sinks so it can be tested with collections.
fn page_counts(views: &DataStream<PageView>) -> DataStream<PageCount> {
    views
        .key_by(|v: &PageView| v.page.clone())
        .window(TumblingEventTimeWindows::of(Duration::from_secs(10)))
        .allowed_lateness(Duration::from_secs(5))
        .aggregate(AggregateFn {
            create: || (String::new(), 0u64),
            add: |acc: &mut (String, u64), v: PageView| {
                acc.0 = v.page;
                acc.1 += 1;
            },
            result: |acc: &(String, u64)| acc.clone(),
            merge: |a: &mut (String, u64), b: (String, u64)| a.1 += b.1,
        })
        .uid("page-counts")
        .name("count views per page")
        .process(WithWindowEnd)
}

/// Adds the window end (the record timestamp of window results) to each count.
#[derive(Clone)]
struct WithWindowEnd;

impl ProcessFunction<(String, u64), PageCount> for WithWindowEnd {
    fn process_element(
        &mut self,
        (page, views): (String, u64),
        ctx: &mut Context<'_>,
        out: &mut Collector<'_, PageCount>,
    ) {
        let window_end = ctx.timestamp().map_or(0, |t| t + 1);
        out.collect(PageCount {
            page,
            window_end,
            views,
        });
    }
}

fn build(env: &StreamEnv, args: &JobArgs) -> anyhow::Result<()> {
    let strategy = WatermarkStrategy::for_bounded_out_of_orderness(Duration::from_secs(2))
        .with_timestamp_assigner(|v: &PageView| v.at_ms);
    let views = match args.path("input") {
        Some(path) => env.from_source(
            FileSource::<PageView>::json_lines(path),
            strategy,
            "page views",
        ),
        None => {
            let pages = ["/", "/docs", "/pricing", "/blog"];
            let generated = GeneratorSource::new(move |i| PageView {
                page: pages[(i % 4) as usize].to_string(),
                user: i % 97,
                at_ms: 1_700_000_000_000 + (i as i64) * 7,
            })
            .count(args.u64("views")?);
            env.from_source(generated, strategy, "page views")
        }
    };
    page_counts(&views).print();
    Ok(())
}

fn main() -> ExitCode {
    let mut registry = JobRegistry::builtin();
    registry.register(JobSpec {
        name: "page-views",
        summary: "page views per page in 10 s windows (an example of a user job)",
        args: ARGS,
        build,
    });
    strom::main(registry)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_views_per_page_and_window() {
        let env = StreamEnv::new();
        let views = env.from_source(
            CollectionSource::new(vec![
                PageView {
                    page: "/".into(),
                    user: 1,
                    at_ms: 1_000,
                },
                PageView {
                    page: "/".into(),
                    user: 2,
                    at_ms: 9_000,
                },
                PageView {
                    page: "/docs".into(),
                    user: 1,
                    at_ms: 12_000,
                },
            ]),
            WatermarkStrategy::for_monotonous_timestamps()
                .with_timestamp_assigner(|v: &PageView| v.at_ms),
            "views",
        );
        let out = page_counts(&views).collect();
        env.execute("test").unwrap();
        let mut got = out.values();
        got.sort_by(|a, b| a.page.cmp(&b.page));
        assert_eq!(
            got,
            vec![
                PageCount {
                    page: "/".into(),
                    window_end: 10_000,
                    views: 2
                },
                PageCount {
                    page: "/docs".into(),
                    window_end: 20_000,
                    views: 1
                },
            ]
        );
    }
}
