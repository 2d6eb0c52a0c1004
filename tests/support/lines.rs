//! A background run's standard error, line by line as it comes: a test waits for the line
//! that says the run reached a point (a primary lost, a server started) before it acts.

use std::io::{BufRead, BufReader};
use std::process::Child;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The standard error of a child started with `Stderr::piped()`, read on a thread.
pub struct StderrLines {
    lines: mpsc::Receiver<String>,
    /// The lines read so far.
    pub seen: Vec<String>,
}

impl StderrLines {
    /// Takes `child`'s standard error (piped) and reads it on a thread of its own.
    pub fn of(child: &mut Child) -> StderrLines {
        let stderr = child.stderr.take().expect("standard error piped");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        StderrLines {
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for the first line that contains `needle` and returns it; panics with the lines
    /// seen when the run ends or stays silent for a minute first.
    pub fn wait_for(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let line = self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|_| panic!("no line with {needle:?} in {:#?}", self.seen));
            self.seen.push(line.clone());
            if line.contains(needle) {
                return line;
            }
        }
    }

    /// Every line, once the child has exited (its end of the pipe is closed).
    pub fn all(&mut self) -> String {
        self.seen.extend(self.lines.iter());
        self.seen.join("\n")
    }
}
