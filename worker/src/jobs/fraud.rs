//! (being written)

use crate::jobs::JobSpec;

/// The jobs of this module.
pub fn jobs() -> Vec<JobSpec> {
    Vec::new()
}
