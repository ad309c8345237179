//! Time-to-live for keyed state (Flink's `StateTtlConfig`), in processing time.

use std::time::Duration;

/// When an entry's time to live starts again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TtlUpdateType {
    /// On creation and every write (Flink's default).
    OnCreateAndWrite,
    /// On reads too.
    OnReadAndWrite,
}

/// Whether an expired entry that has not been cleaned up yet may still be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TtlVisibility {
    /// Expired entries are never returned (Flink's default).
    NeverReturnExpired,
    /// Expired entries are returned until cleanup removes them.
    ReturnExpiredIfNotCleanedUp,
}

/// Time-to-live settings for one piece of keyed state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateTtlConfig {
    pub ttl: Duration,
    pub update_type: TtlUpdateType,
    pub visibility: TtlVisibility,
}

impl StateTtlConfig {
    /// Entries expire `ttl` after their last write, and are never returned once expired.
    pub const fn new(ttl: Duration) -> Self {
        StateTtlConfig {
            ttl,
            update_type: TtlUpdateType::OnCreateAndWrite,
            visibility: TtlVisibility::NeverReturnExpired,
        }
    }
    pub const fn update_type(mut self, update_type: TtlUpdateType) -> Self {
        self.update_type = update_type;
        self
    }
    pub const fn visibility(mut self, visibility: TtlVisibility) -> Self {
        self.visibility = visibility;
        self
    }
    pub(crate) fn ttl_millis(&self) -> i64 {
        self.ttl.as_millis().min(i64::MAX as u128 / 2) as i64
    }
}
