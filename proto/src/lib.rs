//! Strom's wire contracts, generated from `proto/strom/v1/`:
//!
//! - [`control`]: master ⇄ worker (registration, heartbeats, deploy/cancel, task states,
//!   checkpoint trigger/ack/notify), one bidirectional stream per worker;
//! - [`data`]: worker → worker record channels with credit-based flow control.

/// Master ⇄ worker messages and the `Master` service.
pub mod control {
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    tonic::include_proto!("strom.control.v1");
}

/// Worker → worker channel frames and the `DataExchange` service.
pub mod data {
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    tonic::include_proto!("strom.data.v1");
}
