//! What a run shows while it works: a bar per running stage on a terminal, otherwise (or
//! with `--quiet`) one line when a stage starts and one when it ends; nothing at all when
//! called as a library ([`Display::Silent`]). All on stderr.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::plan::NodeAddr;
use crate::plan::units::human_bytes;

/// What a run, a verify or a profile shows on standard error while it works.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Display {
    /// Nothing: the caller reads the outcome from what the call returns (the default of
    /// the library).
    #[default]
    Silent,
    /// One line when a stage starts and one when it ends, and notes such as a stall
    /// (`--quiet`, or standard error is not a terminal).
    Lines,
    /// A bar per running stage when standard error is a terminal, lines otherwise (the
    /// command line's default).
    Bars,
}

/// The run's display.
#[derive(Clone)]
pub(crate) struct Progress {
    bars: Option<MultiProgress>,
    lines: bool,
}

impl Progress {
    /// Bars when asked for and stderr is a terminal; log lines otherwise, unless silent.
    pub(crate) fn new(display: Display) -> Progress {
        let bars = (display == Display::Bars && std::io::stderr().is_terminal())
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10)));
        Progress {
            bars,
            lines: display != Display::Silent,
        }
    }

    /// Prints a line without tearing the bars.
    pub(crate) fn line(&self, message: &str) {
        match &self.bars {
            Some(bars) => {
                let _ = bars.println(message);
            }
            None if self.lines => eprintln!("{message}"),
            None => {}
        }
    }

    /// Shows a stage that starts now: `keys` keys and `bytes` of payload as planned (an
    /// estimate when sizes are ranges), or, with `until_memory`, about `keys` keys until the
    /// target holds `bytes`.
    pub(crate) fn stage(
        &self,
        name: &str,
        target: &str,
        (keys, bytes): (u64, u64),
        until_memory: bool,
    ) -> StageProgress {
        let bar = self.bar(name, keys, "{pos}/{len} keys · {msg} · ETA {eta}");
        if bar.is_none() && self.lines {
            if until_memory {
                eprintln!(
                    "stage {name} → {target}: started, until {} in memory (about {keys} keys)",
                    human_bytes(bytes)
                );
            } else {
                eprintln!(
                    "stage {name} → {target}: started, {keys} keys, {} planned",
                    human_bytes(bytes)
                );
            }
        }
        StageProgress {
            bar,
            lines: self.lines,
            name: name.to_string(),
            planned_bytes: bytes,
            stall: Mutex::new(None),
        }
    }

    /// A bar of `len` for `name` (none without a terminal): the name, the bar, then `rest`
    /// (an indicatif template). Colours unless `NO_COLOR` is set.
    fn bar(&self, name: &str, len: u64, rest: &str) -> Option<ProgressBar> {
        self.bars.as_ref().map(|bars| {
            let color = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
            let head = if color {
                "{prefix:>14.bold} [{bar:30.cyan/blue}] "
            } else {
                "{prefix:>14} [{bar:30}] "
            };
            let style = ProgressStyle::with_template(&format!("{head}{rest}"))
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
            let bar = bars.add(ProgressBar::new(len).with_style(style));
            bar.set_prefix(name.to_string());
            bar
        })
    }

    /// Shows work counted in keys (`verify` reading a stage back: "checked"; `profile`
    /// sampling a server: "sampled"): a bar on a terminal, nothing otherwise (both print a
    /// line when they are done).
    pub(crate) fn counting(&self, name: &str, keys: u64, verb: &str) -> CountProgress {
        let rest = format!("{{pos}}/{{len}} keys {verb} · {{msg}} · ETA {{eta}}");
        CountProgress {
            counter: Counter(self.bar(name, keys, &rest)),
        }
    }
}

/// A bar of keys counted as they are done (see [`Progress::counting`]); cleared when it is
/// dropped, whether the work ended or not, so the line that follows stands alone.
pub(crate) struct CountProgress {
    counter: Counter,
}

impl CountProgress {
    /// `keys` more are done.
    pub(crate) fn add(&self, keys: u64) {
        self.counter.add(keys);
    }

    /// A handle that counts on this bar from another task.
    pub(crate) fn counter(&self) -> Counter {
        self.counter.clone()
    }
}

impl Drop for CountProgress {
    fn drop(&mut self) {
        if let Some(bar) = &self.counter.0 {
            bar.finish_and_clear();
        }
    }
}

/// Counts keys done on a [`CountProgress`] bar (nothing without one).
#[derive(Clone)]
pub(crate) struct Counter(Option<ProgressBar>);

impl Counter {
    /// `keys` more are done.
    pub(crate) fn add(&self, keys: u64) {
        if let Some(bar) = &self.0 {
            let seconds = bar.elapsed().as_secs_f64().max(1e-3);
            let done = bar.position() + keys;
            bar.set_message(format!("{:.0} keys/s", done as f64 / seconds));
            bar.inc(keys);
        }
    }
}

/// The display of one stage.
pub(crate) struct StageProgress {
    bar: Option<ProgressBar>,
    /// Lines without bars (not silent).
    lines: bool,
    name: String,
    planned_bytes: u64,
    /// The stall shown now: on the bar, or (without bars) already printed.
    stall: Mutex<Option<NodeAddr>>,
}

impl StageProgress {
    /// Updates the bar with what the server acknowledged so far.
    pub(crate) fn update(&self, keys: u64, bytes: u64, elapsed: Duration) {
        if let Some(bar) = &self.bar {
            let seconds = elapsed.as_secs_f64().max(1e-3);
            bar.set_position(keys);
            bar.set_message(format!(
                "{}/{} · {:.1} MB/s · {:.0} keys/s",
                human_bytes(bytes),
                human_bytes(self.planned_bytes),
                bytes as f64 / 1e6 / seconds,
                keys as f64 / seconds
            ));
        }
    }

    /// Shows the server that has been silent the longest with writes in flight, if any:
    /// on the bar at once; without bars, one line per stall once it lasts `report_after`.
    pub(crate) fn stalled(&self, stall: Option<(NodeAddr, Duration)>, report_after: Duration) {
        let mut shown = self.stall.lock().unwrap_or_else(|e| e.into_inner());
        let Some((addr, silent)) = stall else {
            if shown.take().is_some()
                && let Some(bar) = &self.bar
            {
                bar.set_prefix(self.name.clone());
            }
            return;
        };
        let text = format!("no reply from {addr} for {}s", silent.as_secs());
        match &self.bar {
            Some(bar) => {
                bar.set_prefix(format!("{} ({text})", self.name));
                *shown = Some(addr);
            }
            None if silent >= report_after && shown.as_ref() != Some(&addr) => {
                if self.lines {
                    eprintln!("stage {}: {text}, still waiting", self.name);
                }
                *shown = Some(addr);
            }
            None => {}
        }
    }

    /// Prints a line about the stage without tearing the bars.
    pub(crate) fn note(&self, message: &str) {
        match &self.bar {
            Some(bar) => bar.println(message),
            None if self.lines => eprintln!("{message}"),
            None => {}
        }
    }

    /// Ends the display of the stage with a one-line summary.
    pub(crate) fn finish(&self, summary: &str) {
        match &self.bar {
            Some(bar) => bar.abandon_with_message(summary.to_string()),
            None if self.lines => eprintln!("stage {}: {summary}", self.name),
            None => {}
        }
    }
}
