//! The typed DataStream API.

pub mod connected;
pub mod datastream;
pub mod env;
pub mod join;
pub mod keyed;
pub mod windowed;

pub use connected::{
    BroadcastConnectedStream, BroadcastStream, ConnectedKeyedStreams, ConnectedStreams,
    KeyedBroadcastConnectedStream,
};
pub use datastream::{DataStream, SinkHandle};
pub use env::StreamEnv;
pub use join::{
    IntervalJoin, IntervalJoined, Tagged, TwoStreams, TwoStreamsKeyed, TwoStreamsWhere,
    WindowedTwoStreams,
};
pub use keyed::KeyedStream;
pub use windowed::{AllWindowedStream, WindowedStream};
