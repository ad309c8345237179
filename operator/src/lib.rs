//! `strom-operator`: runs Strom jobs on Kubernetes. A `StreamJob` resource (`crd`) is
//! reconciled into a master and a worker Deployment; upgrades and rescales go through
//! savepoints.

pub mod crd;
pub mod duration;
pub mod validate;
