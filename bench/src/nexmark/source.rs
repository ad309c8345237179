//! The Nexmark stream as a Strom source: reader `s` of `p` makes events `s, s+p, …`, so the
//! readers move through event time together and the union is the same at any parallelism.

use super::generator::{Timeline, event};
use super::model::Event;
use strom::prelude::*;

/// `events` Nexmark events at `timeline`'s rate.
#[derive(Clone, Copy, Debug)]
pub struct NexmarkSource {
    pub events: u64,
    pub timeline: Timeline,
}

impl Source<Event> for NexmarkSource {
    fn is_bounded(&self) -> bool {
        true
    }

    fn create_reader(&self, ctx: &SourceContext) -> Result<Box<dyn SourceReader<Event>>, BoxError> {
        Ok(Box::new(NexmarkReader {
            next: ctx.subtask_index as u64,
            step: ctx.parallelism as u64,
            end: self.events,
            timeline: self.timeline,
        }))
    }
}

struct NexmarkReader {
    next: u64,
    step: u64,
    end: u64,
    timeline: Timeline,
}

impl SourceReader<Event> for NexmarkReader {
    fn poll(&mut self, out: &mut SourceOutput<'_, Event>) -> Result<SourcePoll, BoxError> {
        let n =
            (out.batch_size() as u64).min(self.end.saturating_sub(self.next).div_ceil(self.step));
        let (first, step, timeline) = (self.next, self.step, self.timeline);
        out.collect_all((0..n).map(|k| event(first + k * step, &timeline)));
        self.next += n * step;
        Ok(if self.next >= self.end {
            SourcePoll::Finished
        } else {
            SourcePoll::More
        })
    }
}
