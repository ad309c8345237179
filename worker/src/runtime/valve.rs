//! Combines the watermarks and idleness of a task's input channels into the task's
//! watermark: the minimum over active channels (Flink's `StatusWatermarkValve`), and the
//! simulated processing-time clock: the minimum over channels that have not ended.

use crate::record::{MAX_WATERMARK, MIN_WATERMARK, WatermarkStatus};

#[derive(Clone, Debug)]
struct ChannelState {
    watermark: i64,
    active: bool,
    /// Whether the channel takes part in the minimum. A channel that returns from
    /// idleness behind the current watermark joins again once it has caught up.
    aligned: bool,
}

/// What the valve lets through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ValveOutput {
    Watermark(i64),
    Status(WatermarkStatus),
}

#[derive(Debug)]
pub(crate) struct WatermarkValve {
    channels: Vec<ChannelState>,
    last_watermark: i64,
    last_status: WatermarkStatus,
}

impl WatermarkValve {
    pub(crate) fn new(channels: usize) -> Self {
        WatermarkValve {
            channels: vec![
                ChannelState {
                    watermark: MIN_WATERMARK,
                    active: true,
                    aligned: true,
                };
                channels
            ],
            last_watermark: MIN_WATERMARK,
            last_status: WatermarkStatus::Active,
        }
    }

    pub(crate) fn input_watermark(
        &mut self,
        channel: usize,
        watermark: i64,
        out: &mut Vec<ValveOutput>,
    ) {
        let ch = &mut self.channels[channel];
        if self.last_status == WatermarkStatus::Active && ch.active && watermark > ch.watermark {
            ch.watermark = watermark;
            if !ch.aligned && watermark >= self.last_watermark {
                ch.aligned = true;
            }
            self.output_min_of_aligned(out);
        }
    }

    pub(crate) fn input_status(
        &mut self,
        channel: usize,
        status: WatermarkStatus,
        out: &mut Vec<ValveOutput>,
    ) {
        let ch = &mut self.channels[channel];
        match status {
            WatermarkStatus::Idle if ch.active => {
                ch.active = false;
                ch.aligned = false;
                let at_min = ch.watermark == self.last_watermark;
                if !self.channels.iter().any(|c| c.active) {
                    // Nobody will advance event time any more: release the highest
                    // watermark any channel reached.
                    if at_min {
                        self.output_max_of_all(out);
                    }
                    self.last_status = WatermarkStatus::Idle;
                    out.push(ValveOutput::Status(WatermarkStatus::Idle));
                } else if at_min {
                    self.output_min_of_aligned(out);
                }
            }
            WatermarkStatus::Active if !ch.active => {
                ch.active = true;
                if ch.watermark >= self.last_watermark {
                    ch.aligned = true;
                }
                if self.last_status == WatermarkStatus::Idle {
                    self.last_status = WatermarkStatus::Active;
                    out.push(ValveOutput::Status(WatermarkStatus::Active));
                }
            }
            _ => {}
        }
    }

    /// The channel ended: it holds nothing back any more.
    pub(crate) fn input_ended(&mut self, channel: usize, out: &mut Vec<ValveOutput>) {
        let ch = &mut self.channels[channel];
        ch.watermark = MAX_WATERMARK;
        ch.active = true;
        ch.aligned = true;
        if self.channels.iter().all(|c| c.watermark == MAX_WATERMARK)
            && self.last_watermark < MAX_WATERMARK
        {
            self.last_watermark = MAX_WATERMARK;
            out.push(ValveOutput::Watermark(MAX_WATERMARK));
        } else if self.last_status == WatermarkStatus::Active {
            self.output_min_of_aligned(out);
        }
    }

    fn output_min_of_aligned(&mut self, out: &mut Vec<ValveOutput>) {
        let min = self
            .channels
            .iter()
            .filter(|c| c.aligned)
            .map(|c| c.watermark)
            .min();
        if let Some(min) = min
            && min > self.last_watermark
        {
            self.last_watermark = min;
            out.push(ValveOutput::Watermark(min));
        }
    }

    fn output_max_of_all(&mut self, out: &mut Vec<ValveOutput>) {
        let max = self
            .channels
            .iter()
            .map(|c| c.watermark)
            .max()
            .unwrap_or(MIN_WATERMARK);
        if max > self.last_watermark {
            self.last_watermark = max;
            out.push(ValveOutput::Watermark(max));
        }
    }
}

/// The simulated processing-time clock of a task: the minimum over channels still open.
#[derive(Debug)]
pub(crate) struct ClockValve {
    clocks: Vec<Option<i64>>,
}

impl ClockValve {
    pub(crate) fn new(channels: usize) -> Self {
        ClockValve {
            clocks: vec![Some(i64::MIN); channels],
        }
    }

    /// Records the clock of a channel; returns the new minimum.
    pub(crate) fn input(&mut self, channel: usize, time: i64) -> i64 {
        if let Some(c) = &mut self.clocks[channel]
            && time > *c
        {
            *c = time;
        }
        self.min()
    }

    /// The channel ended; returns the new minimum.
    pub(crate) fn ended(&mut self, channel: usize) -> i64 {
        self.clocks[channel] = None;
        self.min()
    }

    fn min(&self) -> i64 {
        self.clocks
            .iter()
            .flatten()
            .copied()
            .min()
            .unwrap_or(i64::MIN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ValveOutput::*;
    use WatermarkStatus::*;

    fn run(
        valve: &mut WatermarkValve,
        f: impl FnOnce(&mut WatermarkValve, &mut Vec<ValveOutput>),
    ) -> Vec<ValveOutput> {
        let mut out = Vec::new();
        f(valve, &mut out);
        out
    }

    #[test]
    fn watermark_is_minimum_over_channels() {
        let mut v = WatermarkValve::new(2);
        assert_eq!(run(&mut v, |v, o| v.input_watermark(0, 10, o)), vec![]);
        assert_eq!(
            run(&mut v, |v, o| v.input_watermark(1, 5, o)),
            vec![Watermark(5)]
        );
        assert_eq!(
            run(&mut v, |v, o| v.input_watermark(1, 20, o)),
            vec![Watermark(10)]
        );
        assert_eq!(run(&mut v, |v, o| v.input_watermark(0, 9, o)), vec![]);
    }

    #[test]
    fn idle_channel_does_not_hold_back_and_rejoins_after_catching_up() {
        let mut v = WatermarkValve::new(2);
        run(&mut v, |v, o| v.input_watermark(0, 10, o));
        assert_eq!(
            run(&mut v, |v, o| v.input_status(1, Idle, o)),
            vec![Watermark(10)]
        );
        assert_eq!(
            run(&mut v, |v, o| v.input_watermark(0, 15, o)),
            vec![Watermark(15)]
        );
        // Channel 1 comes back behind: it does not pull the watermark back.
        assert_eq!(run(&mut v, |v, o| v.input_status(1, Active, o)), vec![]);
        assert_eq!(run(&mut v, |v, o| v.input_watermark(1, 12, o)), vec![]);
        assert_eq!(
            run(&mut v, |v, o| v.input_watermark(0, 30, o)),
            vec![Watermark(30)]
        );
        // Still behind the last output (30): still left out.
        assert_eq!(run(&mut v, |v, o| v.input_watermark(1, 20, o)), vec![]);
        // Caught up (Flink: at or above the last output): now it holds the minimum again.
        assert_eq!(run(&mut v, |v, o| v.input_watermark(1, 30, o)), vec![]);
        assert_eq!(run(&mut v, |v, o| v.input_watermark(0, 40, o)), vec![]);
        assert_eq!(
            run(&mut v, |v, o| v.input_watermark(1, 35, o)),
            vec![Watermark(35)]
        );
    }

    #[test]
    fn all_idle_releases_the_maximum_and_goes_idle() {
        let mut v = WatermarkValve::new(2);
        run(&mut v, |v, o| v.input_watermark(0, 10, o));
        run(&mut v, |v, o| v.input_watermark(1, 4, o));
        assert_eq!(run(&mut v, |v, o| v.input_status(0, Idle, o)), vec![]);
        assert_eq!(
            run(&mut v, |v, o| v.input_status(1, Idle, o)),
            vec![Watermark(10), Status(Idle)]
        );
        assert_eq!(
            run(&mut v, |v, o| v.input_status(0, Active, o)),
            vec![Status(Active)]
        );
    }

    #[test]
    fn ended_channels_release_the_rest() {
        let mut v = WatermarkValve::new(2);
        run(&mut v, |v, o| v.input_watermark(0, 10, o));
        assert_eq!(run(&mut v, |v, o| v.input_ended(1, o)), vec![Watermark(10)]);
        assert_eq!(
            run(&mut v, |v, o| v.input_ended(0, o)),
            vec![Watermark(MAX_WATERMARK)]
        );
    }

    #[test]
    fn clock_is_minimum_of_open_channels() {
        let mut c = ClockValve::new(2);
        assert_eq!(c.input(0, 100), i64::MIN);
        assert_eq!(c.input(1, 50), 50);
        assert_eq!(c.ended(1), 100);
    }
}
