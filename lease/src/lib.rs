//! Leader election with `coordination.k8s.io/v1` Leases, with client-go's leaderelection
//! semantics (no ZooKeeper): the operator's replicas and a job's standby masters use it
//! so exactly one of them acts.
//!
//! - [`LeaderElector::try_acquire_or_renew`] is one attempt: create the Lease when
//!   missing, take it when it is free or expired (`renewTime + leaseDurationSeconds <
//!   now`), renew it when held by this identity, otherwise report the holder. Writes
//!   carry the Lease's resourceVersion, so of concurrent attempts exactly one wins; a
//!   409 Conflict means someone else won, which is not an error.
//! - [`LeaderElector::spawn`] runs attempts every `retry_period` in the background and
//!   publishes "am I the leader" on a `watch` channel. A leader that cannot renew within
//!   `renew_deadline` reports `false` and must stop acting as leader: the deadline is
//!   shorter than the lease duration, so it stops before anyone else can take over.
//! - [`LeaderElector::release`] hands the Lease back on graceful shutdown (clears
//!   `holderIdentity`), so a follower takes over at its next attempt instead of waiting
//!   for the lease to expire.
//!
//! Expiry is judged on `renewTime` against the local clock (the brief's rule), unlike
//! client-go, which times the lease from when it last saw the record change: clocks of
//! the candidates must agree to within `lease_duration - renew_deadline`.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use std::future::Future;
use std::time::Duration;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Errors of leader election (a lost race is not one).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("invalid election config: {0}")]
    Config(String),
    #[error("no answer from the API server within {0:?}")]
    Timeout(Duration),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The Lease that decides, and who this candidate is.
#[derive(Clone)]
pub struct LeaseLock {
    /// Leases in the namespace of the election.
    pub api: Api<Lease>,
    /// The Lease's name.
    pub name: String,
    /// This candidate (unique among candidates, e.g. the pod name).
    pub identity: String,
}

/// Timing, as client-go's `LeaderElectionConfig`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ElectionConfig {
    /// How long a lease holds without renewal: followers wait this long after the last
    /// renewal before taking over.
    pub lease_duration: Duration,
    /// How long a leader keeps trying to renew before it gives up leadership.
    pub renew_deadline: Duration,
    /// Time between attempts.
    pub retry_period: Duration,
}

impl Default for ElectionConfig {
    fn default() -> Self {
        ElectionConfig {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

impl ElectionConfig {
    /// client-go's checks: `lease_duration > renew_deadline > retry_period > 0`.
    pub fn validate(&self) -> Result<()> {
        if self.retry_period.is_zero() {
            return Err(Error::Config("retry_period must be positive".into()));
        }
        if self.renew_deadline <= self.retry_period {
            return Err(Error::Config(
                "renew_deadline must be longer than retry_period".into(),
            ));
        }
        if self.lease_duration <= self.renew_deadline {
            return Err(Error::Config(
                "lease_duration must be longer than renew_deadline".into(),
            ));
        }
        Ok(())
    }
}

/// The outcome of one attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaderStatus {
    /// This candidate holds the lease; `acquired` when it just took it (created it, or
    /// took it over), not when it renewed it.
    Leader { acquired: bool },
    /// This attempt did not win: the holder the Lease names (`None`: free or unknown).
    /// After a lost race that can be this candidate itself (its renewal lost against
    /// another write), which is not leadership confirmed.
    Follower { holder: Option<String> },
}

impl LeaderStatus {
    pub fn is_leader(&self) -> bool {
        matches!(self, LeaderStatus::Leader { .. })
    }
}

/// What an attempt does with the Lease it found (the pure part of the election).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// There is no Lease: create it, held by us.
    Create,
    /// We hold it: renew it.
    Renew,
    /// It is free (no holder) or expired: take it over.
    Takeover,
    /// Someone else holds it and it has not expired.
    Follow { holder: String },
}

/// Whether a lease has expired at `now`: its last renewal (or acquisition) plus its
/// duration (`default_duration` when it has none) is in the past.
pub fn expired(spec: &LeaseSpec, now: Timestamp, default_duration: Duration) -> bool {
    let Some(renewed) = spec
        .renew_time
        .as_ref()
        .or(spec.acquire_time.as_ref())
        .map(|t| t.0)
    else {
        return true;
    };
    let duration_us = spec
        .lease_duration_seconds
        .map(|s| i64::from(s) * 1_000_000)
        .unwrap_or_else(|| i64::try_from(default_duration.as_micros()).unwrap_or(i64::MAX));
    renewed.as_microsecond().saturating_add(duration_us) < now.as_microsecond()
}

/// What to do with the Lease `spec` (`None`: there is none) as `identity` at `now`.
pub fn decide(
    spec: Option<&LeaseSpec>,
    identity: &str,
    now: Timestamp,
    default_duration: Duration,
) -> Decision {
    let Some(spec) = spec else {
        return Decision::Create;
    };
    match spec.holder_identity.as_deref().filter(|h| !h.is_empty()) {
        Some(holder) if holder == identity => Decision::Renew,
        Some(holder) if !expired(spec, now, default_duration) => Decision::Follow {
            holder: holder.to_string(),
        },
        _ => Decision::Takeover,
    }
}

/// The spec to write for `decision` (not `Follow`): renewals keep the acquisition time
/// and transitions, takeovers count a transition.
pub fn next_spec(
    current: Option<&LeaseSpec>,
    decision: &Decision,
    identity: &str,
    now: Timestamp,
    lease_duration: Duration,
) -> LeaseSpec {
    // Whole seconds, rounded up: a shorter lease would let others in before the holder's
    // renew deadline.
    let seconds =
        i32::try_from(lease_duration.as_micros().div_ceil(1_000_000).max(1)).unwrap_or(i32::MAX);
    let transitions = current.and_then(|c| c.lease_transitions).unwrap_or(0);
    let (acquire_time, lease_transitions) = match decision {
        Decision::Renew => (
            current
                .and_then(|c| c.acquire_time.clone())
                .unwrap_or(MicroTime(now)),
            transitions,
        ),
        Decision::Create => (MicroTime(now), 0),
        Decision::Takeover | Decision::Follow { .. } => (MicroTime(now), transitions + 1),
    };
    LeaseSpec {
        holder_identity: Some(identity.to_string()),
        lease_duration_seconds: Some(seconds),
        acquire_time: Some(acquire_time),
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(lease_transitions),
        ..current.cloned().unwrap_or_default()
    }
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

/// Attempts, release, and the background loop for one candidate.
#[derive(Clone)]
pub struct LeaderElector {
    lock: LeaseLock,
    config: ElectionConfig,
}

impl LeaderElector {
    pub fn new(lock: LeaseLock, config: ElectionConfig) -> Result<Self> {
        config.validate()?;
        Ok(LeaderElector { lock, config })
    }

    pub fn identity(&self) -> &str {
        &self.lock.identity
    }

    pub fn config(&self) -> &ElectionConfig {
        &self.config
    }

    /// The holder the Lease names now (`None`: free, or no Lease).
    pub async fn holder(&self) -> Result<Option<String>> {
        let lease = self.lock.api.get_opt(&self.lock.name).await?;
        Ok(lease
            .and_then(|l| l.spec)
            .and_then(|s| s.holder_identity)
            .filter(|h| !h.is_empty()))
    }

    /// One attempt to become or stay the leader.
    pub async fn try_acquire_or_renew(&self) -> Result<LeaderStatus> {
        let LeaseLock {
            api,
            name,
            identity,
        } = &self.lock;
        let now = Timestamp::now();
        let current = api.get_opt(name).await?;
        let spec = current.as_ref().and_then(|l| l.spec.as_ref());
        // A Lease without a spec is a free one.
        let empty = LeaseSpec::default();
        let decision = decide(
            spec.or(current.as_ref().map(|_| &empty)),
            identity,
            now,
            self.config.lease_duration,
        );
        if let Decision::Follow { holder } = decision {
            return Ok(LeaderStatus::Follower {
                holder: Some(holder),
            });
        }
        let new_spec = next_spec(spec, &decision, identity, now, self.config.lease_duration);
        let result = match current {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(new_spec),
                };
                api.create(&PostParams::default(), &lease).await
            }
            Some(mut lease) => {
                // The resourceVersion read above makes this write lose against any
                // write in between.
                lease.spec = Some(new_spec);
                api.replace(name, &PostParams::default(), &lease).await
            }
        };
        match result {
            Ok(_) => {
                if decision != Decision::Renew {
                    tracing::info!(lease = %name, %identity, "acquired the lease");
                }
                Ok(LeaderStatus::Leader {
                    acquired: decision != Decision::Renew,
                })
            }
            Err(e) if is_conflict(&e) => Ok(LeaderStatus::Follower {
                holder: self.holder().await.ok().flatten(),
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// Hands the Lease back if this candidate holds it, so another takes over at once.
    /// Returns whether it did.
    pub async fn release(&self) -> Result<bool> {
        let LeaseLock {
            api,
            name,
            identity,
        } = &self.lock;
        let Some(mut lease) = api.get_opt(name).await? else {
            return Ok(false);
        };
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(false);
        };
        if spec.holder_identity.as_deref() != Some(identity.as_str()) {
            return Ok(false);
        }
        // As client-go: no holder, a 1s lease, renewed now.
        let now = MicroTime(Timestamp::now());
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(now.clone());
        spec.acquire_time = Some(now);
        match api.replace(name, &PostParams::default(), &lease).await {
            Ok(_) => {
                tracing::info!(lease = %name, %identity, "released the lease");
                Ok(true)
            }
            Err(e) if is_conflict(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// The election loop: an attempt every `retry_period`, `leader` set to whether this
    /// candidate leads, `false` when a leader could not renew within `renew_deadline`.
    /// Ends when `shutdown` completes, releasing the Lease if held.
    pub async fn run(&self, leader: watch::Sender<bool>, shutdown: impl Future<Output = ()>) {
        let mut shutdown = std::pin::pin!(shutdown);
        // When leadership was last confirmed (a successful acquire or renew).
        let mut confirmed: Option<Instant> = None;
        let mut first = true;
        loop {
            if !first {
                tokio::select! {
                    _ = &mut shutdown => break,
                    _ = tokio::time::sleep(self.config.retry_period) => {}
                }
            }
            first = false;
            // A leader's attempt may take only what is left of its deadline.
            let budget = match confirmed {
                Some(at) => self.config.renew_deadline.saturating_sub(at.elapsed()),
                None => self.config.renew_deadline,
            };
            let attempt = tokio::select! {
                _ = &mut shutdown => break,
                r = tokio::time::timeout(budget, self.try_acquire_or_renew()) => {
                    r.unwrap_or(Err(Error::Timeout(budget)))
                }
            };
            match attempt {
                Ok(LeaderStatus::Leader { .. }) => {
                    confirmed = Some(Instant::now());
                    leader.send_if_modified(|l| !std::mem::replace(l, true));
                }
                // Our renewal lost a race, but the Lease still names us: like a failed
                // attempt, leadership holds until the deadline.
                Ok(LeaderStatus::Follower { holder })
                    if confirmed.is_some() && holder.as_deref() == Some(self.identity()) =>
                {
                    if confirmed.is_some_and(|at| at.elapsed() >= self.config.renew_deadline) {
                        confirmed = None;
                        leader.send_if_modified(|l| std::mem::replace(l, false));
                    }
                }
                Ok(LeaderStatus::Follower { holder }) => {
                    if confirmed.take().is_some() {
                        tracing::warn!(lease = %self.lock.name, identity = %self.lock.identity, ?holder, "lost the lease");
                    }
                    leader.send_if_modified(|l| std::mem::replace(l, false));
                }
                Err(e) => {
                    tracing::warn!(lease = %self.lock.name, identity = %self.lock.identity, error = %e, "leader election attempt failed");
                    if confirmed.is_some_and(|at| at.elapsed() >= self.config.renew_deadline) {
                        tracing::warn!(lease = %self.lock.name, identity = %self.lock.identity, "could not renew the lease in time: no longer the leader");
                        confirmed = None;
                        leader.send_if_modified(|l| std::mem::replace(l, false));
                    }
                }
            }
        }
        let was_leader = *leader.borrow();
        leader.send_if_modified(|l| std::mem::replace(l, false));
        if was_leader && let Err(e) = self.release().await {
            tracing::warn!(lease = %self.lock.name, error = %e, "could not release the lease");
        }
    }

    /// Runs [`Self::run`] in a background task.
    pub fn spawn(self) -> LeaderHandle {
        let (tx, rx) = watch::channel(false);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            self.run(tx, async move {
                let _ = stopped.await;
            })
            .await;
        });
        LeaderHandle {
            leader: rx,
            stop: Some(stop),
            task: Some(task),
        }
    }
}

/// A running election. Dropping it stops the election without releasing the Lease
/// (like a crash: others take over when it expires); [`LeaderHandle::shutdown`]
/// releases it.
pub struct LeaderHandle {
    leader: watch::Receiver<bool>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl LeaderHandle {
    /// Whether this candidate leads now.
    pub fn is_leader(&self) -> bool {
        *self.leader.borrow()
    }

    /// "Am I the leader", as it changes.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.leader.clone()
    }

    /// Waits until this candidate leads.
    pub async fn wait_for_leadership(&mut self) {
        let _ = self.leader.wait_for(|l| *l).await;
    }

    /// Stops the election and releases the Lease if held.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for LeaderHandle {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + seconds).unwrap()
    }

    fn held(holder: &str, renewed: i64, duration: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            renew_time: Some(MicroTime(at(renewed))),
            acquire_time: Some(MicroTime(at(renewed))),
            lease_duration_seconds: Some(duration),
            lease_transitions: Some(3),
            ..LeaseSpec::default()
        }
    }

    const D: Duration = Duration::from_secs(15);

    #[test]
    fn a_missing_lease_is_created() {
        assert_eq!(decide(None, "a", at(0), D), Decision::Create);
    }

    #[test]
    fn the_holder_renews_even_when_expired() {
        assert_eq!(
            decide(Some(&held("a", 0, 15)), "a", at(100), D),
            Decision::Renew
        );
    }

    #[test]
    fn others_follow_until_the_lease_expires() {
        let spec = held("a", 0, 15);
        assert_eq!(
            decide(Some(&spec), "b", at(15), D),
            Decision::Follow { holder: "a".into() }
        );
        assert_eq!(decide(Some(&spec), "b", at(16), D), Decision::Takeover);
    }

    #[test]
    fn a_free_or_timeless_lease_is_taken() {
        let mut free = held("a", 0, 15);
        free.holder_identity = None;
        assert_eq!(decide(Some(&free), "b", at(1), D), Decision::Takeover);
        free.holder_identity = Some(String::new());
        assert_eq!(decide(Some(&free), "b", at(1), D), Decision::Takeover);
        let timeless = LeaseSpec {
            holder_identity: Some("a".into()),
            ..LeaseSpec::default()
        };
        assert_eq!(decide(Some(&timeless), "b", at(1), D), Decision::Takeover);
    }

    #[test]
    fn the_default_duration_applies_without_one() {
        let mut spec = held("a", 0, 15);
        spec.lease_duration_seconds = None;
        assert!(!expired(&spec, at(10), Duration::from_secs(15)));
        assert!(expired(&spec, at(10), Duration::from_secs(5)));
    }

    #[test]
    fn takeovers_count_transitions_and_renewals_keep_them() {
        let spec = held("a", 0, 15);
        let taken = next_spec(Some(&spec), &Decision::Takeover, "b", at(20), D);
        assert_eq!(taken.holder_identity.as_deref(), Some("b"));
        assert_eq!(taken.lease_transitions, Some(4));
        assert_eq!(taken.acquire_time, Some(MicroTime(at(20))));
        assert_eq!(taken.lease_duration_seconds, Some(15));
        let renewed = next_spec(Some(&taken), &Decision::Renew, "b", at(22), D);
        assert_eq!(renewed.lease_transitions, Some(4));
        assert_eq!(renewed.acquire_time, Some(MicroTime(at(20))));
        assert_eq!(renewed.renew_time, Some(MicroTime(at(22))));
        let created = next_spec(None, &Decision::Create, "a", at(0), D);
        assert_eq!(created.lease_transitions, Some(0));
    }

    #[test]
    fn configs_are_checked() {
        assert!(ElectionConfig::default().validate().is_ok());
        let bad = ElectionConfig {
            renew_deadline: Duration::from_secs(20),
            ..ElectionConfig::default()
        };
        assert!(bad.validate().is_err());
    }
}
