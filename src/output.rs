//! Where a command's output goes: standard output, or a file written atomically. A reader
//! that went away (`cachefill check plan.toml | head`, `-o - | head`) is not an error.

use std::io::{ErrorKind, Write};
use std::path::Path;

use crate::error::Failure;

/// Writes `text` to standard output.
pub fn print_stdout(text: &str) -> Result<(), Failure> {
    to_stdout(text.as_bytes())
        .map_err(|e| Failure::Failed(format!("cannot write to standard output: {e}")))
}

/// Writes `bytes` to `path` (`-`: standard output) through a temporary file and a rename,
/// so a reader never sees half a file.
pub fn write(bytes: &[u8], path: &Path) -> std::io::Result<()> {
    if path == Path::new("-") {
        return to_stdout(bytes);
    }
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = path.with_file_name(format!(".{file_name}.{}.tmp", std::process::id()));
    let written =
        std::fs::write(&temporary, bytes).and_then(|()| std::fs::rename(&temporary, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written
}

fn to_stdout(bytes: &[u8]) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() == ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}
