//! End-to-end test support for Strom.
//!
//! [`kube_sim`] is a stateful in-memory Kubernetes API server over plain HTTP on loopback
//! and [`pods`] a pod runner that starts real `strom` processes for the Deployments it
//! sees: the real operator and real masters and workers run against them in CI, where no
//! cluster can run (DESIGN.md §8, layer 4). [`journeys`] are the user journeys, written
//! once and run on that simulated cluster (`cargo test -p strom-e2e --test journeys`) and
//! on a real one (`strom-e2e journeys --context kind-strom`, from `e2e/kind/run.sh`).

pub mod journeys;
pub mod kube_sim;
pub mod pods;
