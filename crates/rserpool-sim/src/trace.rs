//! What happened in a run: every step as a line of text with its
//! virtual time, kept whole (`--trace`) or as the last lines before a
//! failure.

use std::collections::VecDeque;
use std::time::Duration;

/// How a run keeps its trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceMode {
    /// Nothing (benchmarks).
    Off,
    /// The last `n` lines, for a failure report.
    Last(usize),
    /// Everything, printed as it happens.
    Print,
}

/// The trace of one run.
#[derive(Debug)]
pub struct Trace {
    mode: TraceMode,
    lines: VecDeque<String>,
}

impl Trace {
    /// A trace kept as `mode` says.
    pub fn new(mode: TraceMode) -> Self {
        Trace {
            mode,
            lines: VecDeque::new(),
        }
    }

    /// Whether anything is kept (so callers can skip formatting).
    pub fn on(&self) -> bool {
        self.mode != TraceMode::Off
    }

    /// Record a line at virtual time `t` (from the start).
    pub fn line(&mut self, t: Duration, text: impl FnOnce() -> String) {
        match self.mode {
            TraceMode::Off => {}
            TraceMode::Print => println!("{} {}", stamp(t), text()),
            TraceMode::Last(n) => {
                if self.lines.len() >= n {
                    self.lines.pop_front();
                }
                self.lines.push_back(format!("{} {}", stamp(t), text()));
            }
        }
    }

    /// The lines kept.
    pub fn lines(&self) -> impl Iterator<Item = &str> {
        self.lines.iter().map(String::as_str)
    }
}

/// `SSSS.mmm`: seconds and milliseconds of virtual time.
pub fn stamp(t: Duration) -> String {
    format!("{:>5}.{:03}", t.as_secs(), t.subsec_millis())
}
