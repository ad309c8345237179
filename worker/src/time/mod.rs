//! Event time: timestamp assigners, watermark strategies and generators.

pub(crate) mod emitter;
pub mod watermark;

pub use watermark::{
    BoundedOutOfOrderness, NoWatermarks, WatermarkGenerator, WatermarkOutput, WatermarkStrategy,
};
