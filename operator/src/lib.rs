//! `strom-operator`: runs Strom jobs on Kubernetes. A `StreamJob` resource (`crd`) is
//! reconciled into a master and a worker Deployment; upgrades and rescales go through
//! savepoints.

pub mod build;
pub mod controller;
pub mod crd;
pub mod duration;
pub mod lifecycle;
pub mod master_api;
pub mod metrics;
pub mod reconciler;
pub mod run;
pub mod validate;
