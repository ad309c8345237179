//! End-to-end test support for Strom.
//!
//! [`kube_sim`] is a stateful in-memory Kubernetes API server over plain HTTP on loopback:
//! the real operator and real `strom` masters run against it in CI, where no cluster can
//! run (DESIGN.md §8, layer 4).

pub mod kube_sim;
pub mod pods;
