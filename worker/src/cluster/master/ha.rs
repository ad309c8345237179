//! High availability of masters on Kubernetes, without ZooKeeper (`strom master
//! --leader-lease <name>`): every replica of a job's master is a candidate for a
//! `coordination.k8s.io/v1` Lease (`strom-lease`, client-go's semantics); the one that
//! holds it leads, the others follow.
//!
//! - A follower serves its REST API at once (`/healthz` answers, `/readyz` says 503
//!   `not_ready`, so the master Service sends workers and the operator to the leader
//!   only) but binds no control port, plans no job and takes no checkpoint.
//! - When it gets the lease it does what a master without a lease does from the start
//!   (run id and start choice included: a new leader of the same run resumes from the
//!   run's newest checkpoint).
//! - A leader that loses the lease (another took it, or it could not renew it within
//!   the renew deadline) exits at once with [`LostLeadership`] (exit code 1):
//!   Kubernetes restarts it, as a follower.
//! - On SIGTERM or SIGINT, and when its job ended and it exits, the leader hands the
//!   Lease back once every task of the master stopped, so a follower takes over at its
//!   next attempt instead of waiting for the lease to expire.
//! - With `--ha-configmap <name>`, the leader keeps a ConfigMap in the Lease's namespace
//!   up to date — `leader`, `restAddress`, `runId`, `latestCheckpoint`, `jobState` —,
//!   written on leadership gain, on each completed checkpoint and each change of the
//!   job's state. Only the first write of a leadership creates it when missing: one the
//!   operator deleted with its StreamJob stays deleted. Failures to write it are
//!   warnings, never fatal.
//!
//! The election and the ConfigMap writes run on a thread of their own, with their own
//! Tokio runtime and Kubernetes client, for one reason: the master's runtime can be
//! shut down (every task of it stopped) before the Lease is handed back, so no task of
//! this master acts after another master took over.

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams, PostParams};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use strom_lease::{ElectionConfig, LeaderElector, LeaseLock};
use tokio::sync::{oneshot, watch};

/// How a master takes part in leader election (`--leader-lease` and its flags).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HaOptions {
    /// The Lease's name (`--leader-lease`).
    pub lease: String,
    /// Its namespace (`--leader-lease-namespace`); none: the Kubernetes client's default
    /// (the kubeconfig's context, or the service account's namespace in a pod).
    pub namespace: Option<String>,
    /// This candidate, unique among the masters of the job (`--leader-identity`).
    pub identity: String,
    /// How long a lease holds without renewal (`--leader-lease-duration-ms`).
    pub lease_duration: Duration,
    /// How long a leader keeps trying to renew before it gives up
    /// (`--leader-renew-deadline-ms`).
    pub renew_deadline: Duration,
    /// Time between attempts (`--leader-retry-period-ms`).
    pub retry_period: Duration,
    /// The HA ConfigMap the leader keeps (`--ha-configmap`), in the Lease's namespace.
    pub configmap: Option<String>,
}

impl HaOptions {
    /// The election's timing, checked as client-go checks it; errors name the flags.
    fn election(&self) -> Result<ElectionConfig, String> {
        let config = ElectionConfig {
            lease_duration: self.lease_duration,
            renew_deadline: self.renew_deadline,
            retry_period: self.retry_period,
        };
        let ms = |d: Duration| d.as_millis();
        if config.retry_period.is_zero() {
            return Err("--leader-retry-period-ms must be at least 1".into());
        }
        if config.renew_deadline <= config.retry_period {
            return Err(format!(
                "--leader-renew-deadline-ms ({}) must be longer than --leader-retry-period-ms \
                 ({}): a leader needs more than one attempt to renew",
                ms(config.renew_deadline),
                ms(config.retry_period)
            ));
        }
        if config.lease_duration <= config.renew_deadline {
            return Err(format!(
                "--leader-lease-duration-ms ({}) must be longer than --leader-renew-deadline-ms \
                 ({}): a leader must give up before others may take the lease",
                ms(config.lease_duration),
                ms(config.renew_deadline)
            ));
        }
        config.validate().map_err(|e| e.to_string())?;
        Ok(config)
    }
}

/// The master lost its leader lease and stopped acting: another master leads (or will
/// once the lease expires). `strom master` exits with code 1 for it, so that Kubernetes
/// starts it again, as a follower.
#[derive(Debug, thiserror::Error)]
#[error(
    "lost the leader lease '{lease}': another master took it, or this one could not renew it \
     within --leader-renew-deadline-ms; stopped at once so that only the leader acts (started \
     again, this master follows)"
)]
pub struct LostLeadership {
    pub lease: String,
}

/// What the leader publishes in the HA ConfigMap besides who it is and where its REST
/// API is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct HaRecord {
    pub run_id: Option<String>,
    pub latest_checkpoint: Option<String>,
    pub job_state: Option<String>,
}

/// A running election (and ConfigMap keeper) on its own thread.
pub(crate) struct Ha {
    lease: String,
    identity: String,
    leader: watch::Receiver<bool>,
    record: Arc<watch::Sender<HaRecord>>,
    /// The record last written to the ConfigMap (none: nothing yet, or no ConfigMap).
    written: watch::Receiver<Option<HaRecord>>,
    keeps_configmap: bool,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// How long a stopping leader waits for its last record to reach the ConfigMap, and for
/// the Lease to be handed back.
const STOP_WAIT: Duration = Duration::from_secs(5);

impl Ha {
    /// Connects to Kubernetes and starts the election; `rest_address` is published as
    /// `restAddress`. Fails when no Kubernetes client can be made or the flags are wrong.
    pub(crate) fn start(options: HaOptions, rest_address: String) -> anyhow::Result<Ha> {
        let election = options.election().map_err(anyhow::Error::msg)?;
        if options.identity.is_empty() {
            anyhow::bail!(
                "--leader-identity is empty: give each master of the job its own identity \
                 (the operator sets POD_NAME)"
            );
        }
        let (leader_tx, leader) = watch::channel(false);
        let record = Arc::new(watch::channel(HaRecord::default()).0);
        let (written_tx, written) = watch::channel(None);
        let (stop, stopped) = oneshot::channel::<()>();
        let (started_tx, started) = std::sync::mpsc::channel::<Result<(), String>>();
        let records = record.subscribe();
        let keeps_configmap = options.configmap.is_some();
        let lease = options.lease.clone();
        let identity = options.identity.clone();
        let thread = std::thread::Builder::new()
            .name("strom-leader-election".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = started_tx.send(Err(format!(
                            "--leader-lease: cannot start the election's runtime: {e}"
                        )));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let client = match kube::Client::try_default().await {
                        Ok(c) => c,
                        Err(e) => {
                            let _ = started_tx.send(Err(format!(
                                "--leader-lease {}: no Kubernetes client ({e}); run the master \
                                 in a pod with a service account allowed to use the Lease, or \
                                 set KUBECONFIG to a kubeconfig file, or leave out \
                                 --leader-lease (and STROM_LEADER_LEASE) for a single master",
                                options.lease
                            )));
                            return;
                        }
                    };
                    let namespace = options
                        .namespace
                        .clone()
                        .filter(|n| !n.is_empty())
                        .unwrap_or_else(|| client.default_namespace().to_string());
                    let lock = LeaseLock {
                        api: Api::<Lease>::namespaced(client.clone(), &namespace),
                        name: options.lease.clone(),
                        identity: options.identity.clone(),
                    };
                    let elector = match LeaderElector::new(lock, election) {
                        Ok(e) => e,
                        Err(e) => {
                            let _ = started_tx.send(Err(format!("--leader-lease: {e}")));
                            return;
                        }
                    };
                    tracing::info!(lease = %options.lease, %namespace, identity = %options.identity, "following: waiting for the leader lease");
                    let _ = started_tx.send(Ok(()));
                    if let Some(name) = options.configmap.clone() {
                        let keeper = ConfigMapKeeper {
                            api: Api::namespaced(client, &namespace),
                            name,
                            identity: options.identity.clone(),
                            rest_address,
                        };
                        tokio::spawn(keeper.run(leader_tx.subscribe(), records, written_tx));
                    }
                    elector
                        .run(leader_tx, async move {
                            let _ = stopped.await;
                        })
                        .await;
                });
            })
            .map_err(|e| anyhow::anyhow!("--leader-lease: cannot start the election: {e}"))?;
        match started.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let _ = thread.join();
                anyhow::bail!(e);
            }
            Err(_) => {
                let _ = thread.join();
                anyhow::bail!("--leader-lease: the election stopped before it started");
            }
        }
        Ok(Ha {
            lease,
            identity,
            leader,
            record,
            written,
            keeps_configmap,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    pub(crate) fn lease(&self) -> &str {
        &self.lease
    }

    pub(crate) fn identity(&self) -> &str {
        &self.identity
    }

    /// "Does this master lead", as it changes.
    pub(crate) fn leader(&self) -> watch::Receiver<bool> {
        self.leader.clone()
    }

    /// Where the master puts what the HA ConfigMap should say.
    pub(crate) fn records(&self) -> Arc<watch::Sender<HaRecord>> {
        self.record.clone()
    }

    /// Stops the election: waits (a while) for the last record to reach the ConfigMap,
    /// then hands the Lease back if this master holds it. Call it once the master's
    /// tasks stopped.
    pub(crate) fn stop(mut self) {
        if self.keeps_configmap && *self.leader.borrow() {
            let deadline = Instant::now() + STOP_WAIT;
            while Instant::now() < deadline
                && *self.leader.borrow()
                && self.written.borrow().as_ref() != Some(&*self.record.borrow())
            {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            // The release is one request; a hung API server must not hold the exit up.
            let deadline = Instant::now() + STOP_WAIT;
            while !thread.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if thread.is_finished() {
                let _ = thread.join();
            } else {
                tracing::warn!(lease = %self.lease, "could not hand the leader lease back in time; the other masters take over once it expires");
            }
        }
    }
}

/// Keeps the HA ConfigMap: writes what the leader publishes, while it leads.
struct ConfigMapKeeper {
    api: Api<ConfigMap>,
    name: String,
    identity: String,
    rest_address: String,
}

/// Pause before writing again after a failed write.
const RETRY: Duration = Duration::from_secs(1);

/// The HA ConfigMap's data for `record` of leader `identity`. Keys without a value are
/// left out (and removed from the ConfigMap).
fn configmap_data(
    identity: &str,
    rest_address: &str,
    record: &HaRecord,
) -> BTreeMap<String, Option<String>> {
    BTreeMap::from([
        ("leader".to_string(), Some(identity.to_string())),
        ("restAddress".to_string(), Some(rest_address.to_string())),
        ("runId".to_string(), record.run_id.clone()),
        (
            "latestCheckpoint".to_string(),
            record.latest_checkpoint.clone(),
        ),
        ("jobState".to_string(), record.job_state.clone()),
    ])
}

impl ConfigMapKeeper {
    /// Writes `record`: a merge patch of the data (so labels or keys others put there
    /// stay), or, when `may_create`, a new ConfigMap when there is none. Only the first
    /// write of a leadership creates it: one that is gone after that was deleted on
    /// purpose (the operator deletes it with the StreamJob, while this master may still
    /// be on its way out) and must not come back.
    async fn write(&self, record: &HaRecord, may_create: bool) -> Result<(), kube::Error> {
        let data = configmap_data(&self.identity, &self.rest_address, record);
        let patch = serde_json::json!({ "data": data });
        match self
            .api
            .patch(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 && !may_create => {
                tracing::info!(configmap = %self.name, "the HA ConfigMap was deleted (its StreamJob is going away); not writing it again");
                Ok(())
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {
                let config = ConfigMap {
                    metadata: kube::api::ObjectMeta {
                        name: Some(self.name.clone()),
                        ..Default::default()
                    },
                    data: Some(
                        data.into_iter()
                            .filter_map(|(k, v)| Some((k, v?)))
                            .collect(),
                    ),
                    ..Default::default()
                };
                match self.api.create(&PostParams::default(), &config).await {
                    Ok(_) => Ok(()),
                    // Created in between (by another writer): the next round patches it.
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    async fn run(
        self,
        mut leader: watch::Receiver<bool>,
        mut records: watch::Receiver<HaRecord>,
        written: watch::Sender<Option<HaRecord>>,
    ) {
        let mut retry_at: Option<tokio::time::Instant> = None;
        let mut was_leading = false;
        // Whether the next write may create the ConfigMap: the first of each leadership.
        let mut may_create = true;
        loop {
            let leading = *leader.borrow_and_update();
            if leading && !was_leading {
                may_create = true;
            }
            was_leading = leading;
            let record = records.borrow_and_update().clone();
            let stale = written.borrow().as_ref() != Some(&record);
            if leading && stale && retry_at.is_none_or(|at| at <= tokio::time::Instant::now()) {
                match self.write(&record, may_create).await {
                    Ok(()) => {
                        may_create = false;
                        tracing::debug!(configmap = %self.name, ?record, "HA ConfigMap written");
                        retry_at = None;
                        written.send_replace(Some(record));
                        // Another change may have come in while writing.
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(configmap = %self.name, error = %e, "could not write the HA ConfigMap; trying again shortly (the job is not affected)");
                        retry_at = Some(tokio::time::Instant::now() + RETRY);
                    }
                }
            }
            let retry = async {
                match retry_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                changed = leader.changed() => if changed.is_err() { return },
                changed = records.changed() => if changed.is_err() { return },
                () = retry => {}
            }
        }
    }
}

/// This machine's host name, the default `--leader-identity` (in a pod: the pod's name).
pub fn host_name() -> Option<String> {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(lease_ms: u64, renew_ms: u64, retry_ms: u64) -> HaOptions {
        HaOptions {
            lease: "job-master".into(),
            namespace: None,
            identity: "m-1".into(),
            lease_duration: Duration::from_millis(lease_ms),
            renew_deadline: Duration::from_millis(renew_ms),
            retry_period: Duration::from_millis(retry_ms),
            configmap: None,
        }
    }

    #[test]
    fn timing_mistakes_name_the_flags() {
        assert!(options(15_000, 10_000, 2_000).election().is_ok());
        let e = options(15_000, 10_000, 0).election().expect_err("zero");
        assert!(e.contains("--leader-retry-period-ms"), "{e}");
        let e = options(15_000, 2_000, 2_000).election().expect_err("equal");
        assert!(
            e.contains("--leader-renew-deadline-ms") && e.contains("--leader-retry-period-ms"),
            "{e}"
        );
        let e = options(10_000, 10_000, 2_000)
            .election()
            .expect_err("equal");
        assert!(e.contains("--leader-lease-duration-ms"), "{e}");
    }

    #[test]
    fn the_configmap_names_the_leader_and_leaves_out_what_is_not_known() {
        let record = HaRecord {
            run_id: Some("r1".into()),
            latest_checkpoint: None,
            job_state: Some("Running".into()),
        };
        let data = configmap_data("m-1", "10.0.0.7:8081", &record);
        assert_eq!(data["leader"].as_deref(), Some("m-1"));
        assert_eq!(data["restAddress"].as_deref(), Some("10.0.0.7:8081"));
        assert_eq!(data["runId"].as_deref(), Some("r1"));
        assert_eq!(data["latestCheckpoint"], None);
        assert_eq!(data["jobState"].as_deref(), Some("Running"));
    }
}
