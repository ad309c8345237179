//! What the operator saw of a StreamJob's run before deciding: the job as its master
//! reports it, and the answer to the savepoint request the status records.

use k8s_openapi::jiff::Timestamp;

/// The master of the deployed run, through its REST API.
#[derive(Clone, Debug, PartialEq)]
pub enum MasterState {
    /// No answer: no master pod ready yet, or it crashed. The text says what failed.
    Unreachable(String),
    /// The master answers but has no job yet.
    NoJob,
    Job(ObservedJob),
}

/// A job as `GET /v1/jobs/{id}` shows it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ObservedJob {
    pub id: String,
    pub state: JobState,
    /// Every subtask is RUNNING (not just deployed).
    pub all_running: bool,
    pub run_id: Option<String>,
    /// The savepoint a stop-with-savepoint ended it with.
    pub savepoint: Option<String>,
    pub last_checkpoint: Option<String>,
    pub failure: Option<String>,
    /// RFC 3339.
    pub start_time: Option<String>,
}

/// A job's state, as the master names it (DESIGN.md §4).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum JobState {
    #[default]
    Created,
    Running,
    Restarting,
    Cancelling,
    Cancelled,
    Failed,
    Finished,
    Other(String),
}

impl JobState {
    pub fn parse(text: &str) -> Self {
        match text {
            "Created" => Self::Created,
            "Running" => Self::Running,
            "Restarting" => Self::Restarting,
            "Cancelling" => Self::Cancelling,
            "Cancelled" => Self::Cancelled,
            "Failed" => Self::Failed,
            "Finished" => Self::Finished,
            other => Self::Other(other.to_string()),
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Self::Created => "Created",
            Self::Running => "Running",
            Self::Restarting => "Restarting",
            Self::Cancelling => "Cancelling",
            Self::Cancelled => "Cancelled",
            Self::Failed => "Failed",
            Self::Finished => "Finished",
            Self::Other(s) => s,
        }
    }

    /// The job will not run again in this run.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Self::Cancelled | Self::Failed | Self::Finished)
    }
}

/// The master's answer about a savepoint request (`GET /v1/jobs/{id}/savepoints/{req}`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestState {
    InProgress,
    Completed {
        location: String,
    },
    Failed {
        failure: String,
    },
    /// The master does not know it (it restarted since) or could not be asked.
    Unknown,
}

/// Everything `decide` looks at besides the StreamJob itself.
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    pub master: MasterState,
    /// The request in `status.upgrade.requestId`, else `status.savepoints.trigger`.
    pub request: Option<RequestState>,
    /// Pods of the deployed run that cannot run (pull errors, crash loops).
    pub pods: Vec<PodTrouble>,
    /// Master pods of the StreamJob, of any run, that still exist. Deletion removes the
    /// HA ConfigMap only once there are none: a master that gained the lease during the
    /// teardown would write it again.
    pub master_pods: usize,
    pub now: Timestamp,
}

/// A pod of the deployed run whose container cannot run, as its status says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodTrouble {
    pub pod: String,
    /// The container's waiting reason (`CrashLoopBackOff`, `ErrImagePull`, …).
    pub reason: String,
    pub restarts: i32,
    /// What the kubelet or the last exit says (exit code, message).
    pub detail: Option<String>,
}

impl PodTrouble {
    /// The trouble of a pod from its status, if it has any worth a user's attention: an
    /// image that cannot be pulled or a container the kubelet cannot create at once, a
    /// crash loop once it has restarted twice (one restart happens to healthy jobs too,
    /// e.g. a worker whose master went away).
    pub fn of(pod: &k8s_openapi::api::core::v1::Pod) -> Option<PodTrouble> {
        let name = pod.metadata.name.clone()?;
        let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
        statuses.iter().find_map(|c| {
            let waiting = c.state.as_ref()?.waiting.as_ref()?;
            let reason = waiting.reason.clone()?;
            let serious = match reason.as_str() {
                "CrashLoopBackOff" => c.restart_count >= 2,
                "ErrImagePull"
                | "ImagePullBackOff"
                | "InvalidImageName"
                | "CreateContainerConfigError"
                | "CreateContainerError"
                | "RunContainerError" => true,
                _ => false,
            };
            if !serious {
                return None;
            }
            let exit = c
                .last_state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .map(|t| match t.message.as_deref() {
                    Some(m) if !m.is_empty() => format!("last exit code {}: {m}", t.exit_code),
                    _ => format!("last exit code {}", t.exit_code),
                });
            Some(PodTrouble {
                pod: name.clone(),
                reason,
                restarts: c.restart_count,
                detail: waiting.message.clone().filter(|m| !m.is_empty()).or(exit),
            })
        })
    }

    /// `Degraded`'s reason for troubles like this one.
    pub fn condition_reason(&self) -> &'static str {
        match self.reason.as_str() {
            "CrashLoopBackOff" => "PodsCrashLooping",
            r if r.contains("Image") => "ImagePullFailed",
            _ => "PodsFailing",
        }
    }
}

impl std::fmt::Display for PodTrouble {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pod {}: {}", self.pod, self.reason)?;
        if self.restarts > 0 {
            write!(f, " after {} restarts", self.restarts)?;
        }
        if let Some(detail) = &self.detail {
            write!(f, " ({detail})")?;
        }
        Ok(())
    }
}

impl Observed {
    /// The job, if the master reports one of run `run_id`.
    pub fn job_of(&self, run_id: &str) -> Option<&ObservedJob> {
        match &self.master {
            MasterState::Job(job) if job.run_id.as_deref() == Some(run_id) => Some(job),
            _ => None,
        }
    }

    /// Run `run_id` runs: its job is RUNNING with every subtask running.
    pub fn runs(&self, run_id: &str) -> bool {
        self.job_of(run_id)
            .is_some_and(|j| j.state == JobState::Running && j.all_running)
    }
}
