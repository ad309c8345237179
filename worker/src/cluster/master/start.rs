//! Where the job of an application-mode master with a run id (`strom master <job>
//! --run-id <id>`) starts. In this order:
//!
//! 1. the run has a result (`results`): it ended already, and is not run again;
//! 2. the newest valid completed checkpoint this run took: the master restarted within
//!    its run, and goes on from where the run was (the operator's upgraded master keeps
//!    its `--from-checkpoint` flag, which must not win over its own checkpoints);
//! 3. `--from-checkpoint <dir>`: the run's first start after an upgrade;
//! 4. with `--from-latest-checkpoint`: the newest valid completed checkpoint of any run
//!    in the job's directory (a last-state upgrade);
//! 5. a fresh start, even when other runs left checkpoints in the directory (a
//!    stateless upgrade).
//!
//! The choice is [`choose_start`], which reads nothing itself: it is given the run's
//! result, the job's completed checkpoints with the run that took each, and a check of
//! whether a checkpoint is whole (made only for the checkpoints a rule looks at, newest
//! first, since checking one reads every file of it).

use super::results::JobResult;
use std::collections::BTreeMap;

/// What the choice is made from.
pub(crate) struct StartInput<'a> {
    pub run_id: &'a str,
    /// The run's result, if it ended already.
    pub result: Option<JobResult>,
    /// The job's completed checkpoints, newest first, each with the run that took it
    /// (none: taken without a run id, or its `_metadata` cannot be read).
    pub checkpoints: &'a [(u64, Option<String>)],
    /// `--from-checkpoint`.
    pub from_checkpoint: Option<&'a str>,
    /// `--from-latest-checkpoint`.
    pub from_latest: bool,
}

/// Where the job starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum StartPoint {
    /// The run ended already: the master shows this result and runs nothing.
    Ended(JobResult),
    /// Checkpoint `id` of the job's directory, taken by this run.
    OwnCheckpoint(u64),
    /// `--from-checkpoint`.
    Given(String),
    /// `--from-latest-checkpoint`: checkpoint `id` of the job's directory, taken by run
    /// `run`.
    Latest { id: u64, run: Option<String> },
    /// Nothing: `unused` checkpoints of the job's directory are left alone.
    Fresh {
        unused: usize,
        looked_for_latest: bool,
    },
}

impl StartPoint {
    /// Why the job starts here, for the log; `location` names checkpoint `id`.
    pub(crate) fn explain(&self, run_id: &str, location: impl Fn(u64) -> String) -> String {
        match self {
            StartPoint::Ended(r) => {
                let how = match &r.savepoint {
                    Some(savepoint) => format!("{:?}, stopped with savepoint {savepoint}", r.state),
                    None => format!("{:?}", r.state),
                };
                format!(
                    "run '{run_id}' ended already ({how}): not running the job again, only \
                     showing how it ended"
                )
            }
            StartPoint::OwnCheckpoint(id) => format!(
                "run '{run_id}' resumes from its own newest checkpoint, {} (the master \
                 restarted within its run)",
                location(*id)
            ),
            StartPoint::Given(from) => format!(
                "run '{run_id}' has no checkpoint of its own: starting from --from-checkpoint {from}"
            ),
            StartPoint::Latest { id, run } => format!(
                "run '{run_id}' has no checkpoint of its own and no --from-checkpoint: \
                 starting from the newest checkpoint of the job's directory, {} (taken by {}; \
                 --from-latest-checkpoint)",
                location(*id),
                run.as_deref()
                    .map_or("no run".to_string(), |r| format!("run '{r}'"))
            ),
            StartPoint::Fresh {
                unused,
                looked_for_latest,
            } => {
                let why = if *looked_for_latest {
                    "--from-latest-checkpoint found no valid checkpoint in the job's directory"
                } else {
                    "no --from-checkpoint and no --from-latest-checkpoint"
                };
                let left = if *unused > 0 && !*looked_for_latest {
                    format!(
                        "; the {unused} checkpoint(s) of other runs in the job's directory are \
                         not used"
                    )
                } else {
                    String::new()
                };
                format!(
                    "run '{run_id}' has no checkpoint of its own and {why}: starting fresh{left}"
                )
            }
        }
    }
}

/// Where the job starts (see the module docs). `valid` says whether checkpoint `id` is
/// whole (an error: storage could not be read, and the master should not guess).
pub(crate) async fn choose_start(
    input: StartInput<'_>,
    mut valid: impl AsyncFnMut(u64) -> Result<bool, String>,
) -> Result<StartPoint, String> {
    if let Some(result) = input.result {
        return Ok(StartPoint::Ended(result));
    }
    let mut checked: BTreeMap<u64, bool> = BTreeMap::new();
    for (id, run) in input.checkpoints {
        if run.as_deref() != Some(input.run_id) {
            continue;
        }
        let whole = valid(*id).await?;
        checked.insert(*id, whole);
        if whole {
            return Ok(StartPoint::OwnCheckpoint(*id));
        }
    }
    if let Some(from) = input.from_checkpoint {
        return Ok(StartPoint::Given(from.to_string()));
    }
    if input.from_latest {
        for (id, run) in input.checkpoints {
            let whole = match checked.get(id) {
                Some(whole) => *whole,
                None => valid(*id).await?,
            };
            if whole {
                return Ok(StartPoint::Latest {
                    id: *id,
                    run: run.clone(),
                });
            }
        }
    }
    Ok(StartPoint::Fresh {
        unused: input.checkpoints.len(),
        looked_for_latest: input.from_latest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::master::JobStatus;
    use crate::cluster::master::results::RESULT_FORMAT;
    use std::cell::RefCell;

    /// Checkpoints 9 (r2), 8 (r2), 7 (r1), 5 (no run): newest first.
    fn checkpoints() -> Vec<(u64, Option<String>)> {
        vec![
            (9, Some("r2".into())),
            (8, Some("r2".into())),
            (7, Some("r1".into())),
            (5, None),
        ]
    }

    struct Case<'a> {
        run_id: &'a str,
        result: Option<JobResult>,
        from_checkpoint: Option<&'a str>,
        from_latest: bool,
        damaged: &'a [u64],
    }

    impl Default for Case<'_> {
        fn default() -> Self {
            Case {
                run_id: "r2",
                result: None,
                from_checkpoint: None,
                from_latest: false,
                damaged: &[],
            }
        }
    }

    /// The choice for `case`, and the checkpoints it checked, in order.
    fn choose(case: Case<'_>) -> (StartPoint, Vec<u64>) {
        let all = checkpoints();
        let checked = RefCell::new(Vec::new());
        let input = StartInput {
            run_id: case.run_id,
            result: case.result,
            checkpoints: &all,
            from_checkpoint: case.from_checkpoint,
            from_latest: case.from_latest,
        };
        let damaged = case.damaged;
        let start = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
            .block_on(choose_start(input, async |id| {
                checked.borrow_mut().push(id);
                Ok(!damaged.contains(&id))
            }))
            .expect("chooses");
        (start, checked.into_inner())
    }

    fn ended() -> JobResult {
        JobResult {
            format: RESULT_FORMAT,
            run_id: "r2".into(),
            job_id: "word-count-1".into(),
            job: "word-count".into(),
            state: JobStatus::Finished,
            savepoint: Some("file:///sp/savepoint-word-count-10".into()),
            savepoint_request: Some(1),
            failure: None,
            last_checkpoint: None,
            restarts: 0,
            start_time_ms: 0,
            end_time_ms: 1,
        }
    }

    #[test]
    fn an_ended_run_is_not_run_again_whatever_else_is_given() {
        let (start, checked) = choose(Case {
            result: Some(ended()),
            from_checkpoint: Some("file:///sp"),
            from_latest: true,
            ..Case::default()
        });
        assert_eq!(start, StartPoint::Ended(ended()));
        assert!(checked.is_empty(), "nothing is read: {checked:?}");
    }

    #[test]
    fn a_run_resumes_from_its_own_newest_whole_checkpoint_before_its_from_checkpoint() {
        let (start, checked) = choose(Case {
            from_checkpoint: Some("file:///sp"),
            ..Case::default()
        });
        assert_eq!(start, StartPoint::OwnCheckpoint(9));
        assert_eq!(checked, [9]);
        // A damaged newest one: the one before it, of the same run.
        let (start, checked) = choose(Case {
            from_checkpoint: Some("file:///sp"),
            damaged: &[9],
            ..Case::default()
        });
        assert_eq!(start, StartPoint::OwnCheckpoint(8));
        assert_eq!(checked, [9, 8]);
        // Run r1's own is older than r2's: still r1's.
        let (start, _) = choose(Case {
            run_id: "r1",
            from_latest: true,
            ..Case::default()
        });
        assert_eq!(start, StartPoint::OwnCheckpoint(7));
    }

    #[test]
    fn a_new_run_starts_from_its_from_checkpoint_and_never_from_other_runs_checkpoints() {
        let (start, checked) = choose(Case {
            run_id: "r3",
            from_checkpoint: Some("file:///sp/savepoint-word-count-10"),
            from_latest: true,
            ..Case::default()
        });
        assert_eq!(
            start,
            StartPoint::Given("file:///sp/savepoint-word-count-10".into())
        );
        assert!(checked.is_empty(), "{checked:?}");
        // Its own checkpoints all damaged: the savepoint it was given.
        let (start, _) = choose(Case {
            from_checkpoint: Some("file:///sp"),
            damaged: &[9, 8],
            ..Case::default()
        });
        assert_eq!(start, StartPoint::Given("file:///sp".into()));
    }

    #[test]
    fn from_latest_takes_the_newest_whole_checkpoint_of_any_run() {
        let (start, checked) = choose(Case {
            run_id: "r3",
            from_latest: true,
            ..Case::default()
        });
        assert_eq!(
            start,
            StartPoint::Latest {
                id: 9,
                run: Some("r2".into())
            }
        );
        assert_eq!(checked, [9]);
        let (start, checked) = choose(Case {
            run_id: "r3",
            from_latest: true,
            damaged: &[9, 8, 7],
            ..Case::default()
        });
        assert_eq!(start, StartPoint::Latest { id: 5, run: None });
        assert_eq!(checked, [9, 8, 7, 5]);
        // Each checkpoint is checked once, even when two rules look at it.
        let (start, checked) = choose(Case {
            from_latest: true,
            damaged: &[9, 8],
            ..Case::default()
        });
        assert_eq!(
            start,
            StartPoint::Latest {
                id: 7,
                run: Some("r1".into())
            }
        );
        assert_eq!(checked, [9, 8, 7]);
    }

    #[test]
    fn a_run_without_anything_to_start_from_starts_fresh_beside_other_runs_checkpoints() {
        let (start, checked) = choose(Case {
            run_id: "r4",
            ..Case::default()
        });
        assert_eq!(
            start,
            StartPoint::Fresh {
                unused: 4,
                looked_for_latest: false
            }
        );
        assert!(checked.is_empty(), "{checked:?}");
        let (start, _) = choose(Case {
            run_id: "r4",
            from_latest: true,
            damaged: &[9, 8, 7, 5],
            ..Case::default()
        });
        let why = start.explain("r4", |id| format!("chk-{id}"));
        assert!(
            why.contains("found no valid checkpoint") && why.contains("starting fresh"),
            "{why}"
        );
    }

    #[test]
    fn the_log_line_names_the_rule_and_the_checkpoint() {
        let at = |id: u64| format!("file:///c/word-count/chk-{id}");
        let own = StartPoint::OwnCheckpoint(9).explain("r2", at);
        assert!(
            own.contains("own newest checkpoint, file:///c/word-count/chk-9"),
            "{own}"
        );
        let latest = StartPoint::Latest {
            id: 9,
            run: Some("r2".into()),
        }
        .explain("r3", at);
        assert!(
            latest.contains("chk-9") && latest.contains("run 'r2'"),
            "{latest}"
        );
        let ended = StartPoint::Ended(ended()).explain("r2", at);
        assert!(
            ended.contains("ended already") && ended.contains("savepoint-word-count-10"),
            "{ended}"
        );
        let fresh = StartPoint::Fresh {
            unused: 2,
            looked_for_latest: false,
        }
        .explain("r4", at);
        assert!(
            fresh.contains("starting fresh") && fresh.contains("2 checkpoint(s)"),
            "{fresh}"
        );
    }
}
