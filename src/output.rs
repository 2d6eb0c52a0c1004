//! Where a command's output goes: standard output, or a file written atomically. A reader
//! that went away (`cachefill check plan.toml | head`, `-o - | head`) is not an error.

use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use crate::error::Failure;

/// Writes `text` to standard output.
pub(crate) fn print_stdout(text: &str) -> Result<(), Failure> {
    tolerating_closed_reader(&mut std::io::stdout().lock(), text.as_bytes())
        .map_err(|e| Failure::Failed(format!("cannot write to standard output: {e}")))
}

/// Writes `bytes` to `path` (`-`: standard output). A regular file (or a new one) is
/// written through a temporary file and a rename, so a reader never sees half a file; a
/// symbolic link is followed, so the file it names is replaced and the link stays (a link
/// to nothing yet gets its file made in place). Anything else (`/dev/null`, `/dev/stdout`,
/// a named pipe) is opened and written in place: a rename would put a regular file where
/// the device or pipe was.
pub(crate) fn write(bytes: &[u8], path: &Path) -> std::io::Result<()> {
    if path == Path::new("-") {
        return tolerating_closed_reader(&mut std::io::stdout().lock(), bytes);
    }
    let is_link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    let path = match std::fs::metadata(path) {
        Ok(found) if !found.is_file() => return write_in_place(bytes, path),
        Ok(_) if is_link => std::fs::canonicalize(path)?,
        Err(_) if is_link => return write_in_place(bytes, path),
        _ => path.to_path_buf(),
    };
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = path.with_file_name(format!(".{file_name}.{}.tmp", std::process::id()));
    let written =
        std::fs::write(&temporary, bytes).and_then(|()| std::fs::rename(&temporary, &path));
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written
}

/// Refuses, before any work, an output path that cannot be written: a missing folder, a
/// file where its folder should be, a folder where the file should be, a folder or file
/// the user may not write (or on a read-only file system). `what` names the output in the
/// line (`the result`). `-` (standard output) is always fine.
pub(crate) fn check_writable(path: &Path, what: &str) -> Result<(), Failure> {
    if path == Path::new("-") {
        return Ok(());
    }
    let refuse = |why: String| {
        Failure::Invalid(format!(
            "cannot write {what} to {}: {why}; nothing was done",
            path.display()
        ))
    };
    // A link is judged by the file it names; a link to nothing yet by its own folder.
    let target = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    match std::fs::metadata(&target) {
        Ok(found) if found.is_dir() => return Err(refuse("it is a folder".into())),
        // A device or a pipe is written in place: it needs only to be writable itself.
        Ok(found) if !found.is_file() => {
            return may_write(&target).map_err(|e| refuse(e.to_string()));
        }
        _ => {}
    }
    let folder = match target.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    match std::fs::metadata(&folder) {
        Err(e) if e.kind() == ErrorKind::NotFound => Err(refuse(format!(
            "the folder {} does not exist (create it first)",
            folder.display()
        ))),
        Err(e) => Err(refuse(format!("{}: {e}", folder.display()))),
        Ok(found) if !found.is_dir() => Err(refuse(format!(
            "{} is a file, not a folder",
            folder.display()
        ))),
        // The file is written beside itself and renamed: its folder must take new files.
        Ok(_) => may_write(&folder).map_err(|e| refuse(format!("{}: {e}", folder.display()))),
    }
}

/// Whether this process may write `path` (`access(2)`, which also says a read-only file
/// system).
fn may_write(path: &Path) -> std::io::Result<()> {
    let name = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| std::io::Error::new(ErrorKind::InvalidInput, "a NUL byte in the path"))?;
    // SAFETY: `name` is a NUL-terminated path that outlives the call.
    match unsafe { libc::access(name.as_ptr(), libc::W_OK) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

fn write_in_place(bytes: &[u8], path: &Path) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    tolerating_closed_reader(&mut file, bytes)
}

/// Writes `bytes` to `out`; a reader that went away (a closed pipe) is not an error.
fn tolerating_closed_reader(out: &mut impl Write, bytes: &[u8]) -> std::io::Result<()> {
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() == ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::write;
    use std::io::Read;
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};

    #[test]
    fn a_named_pipe_is_written_through_and_stays_a_pipe() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("result.fifo");
        let name = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
        // A reader that does not wait for a writer, so the write below does not block.
        let mut reader = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
            .unwrap();
        write(b"{\"status\":\"ok\"}\n", &fifo).unwrap();
        assert!(
            std::fs::symlink_metadata(&fifo)
                .unwrap()
                .file_type()
                .is_fifo()
        );
        let mut text = String::new();
        reader.read_to_string(&mut text).unwrap();
        assert_eq!(text, "{\"status\":\"ok\"}\n");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    fn assert_is_symlink(path: &std::path::Path) {
        let kind = std::fs::symlink_metadata(path).unwrap().file_type();
        assert!(
            kind.is_symlink(),
            "{} is no longer a symbolic link",
            path.display()
        );
    }

    #[test]
    fn a_symbolic_link_stays_and_its_file_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("results").join("run.json");
        std::fs::create_dir(file.parent().unwrap()).unwrap();
        std::fs::write(&file, "old").unwrap();
        let link = dir.path().join("latest.json");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        write(b"new", &link).unwrap();
        assert_is_symlink(&link);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "new");
        assert_eq!(
            std::fs::read_dir(file.parent().unwrap()).unwrap().count(),
            1
        );
    }

    #[test]
    fn a_link_to_nothing_yet_stays_and_gets_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("run.json");
        let link = dir.path().join("latest.json");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        write(b"new", &link).unwrap();
        assert_is_symlink(&link);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "new");
    }

    #[test]
    fn an_output_that_cannot_be_written_is_refused_before_any_work() {
        use super::check_writable;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain");
        std::fs::write(&file, "x").unwrap();
        let refused = |path: &std::path::Path| check_writable(path, "the result").unwrap_err();
        let missing = dir.path().join("missing").join("r.json");
        assert_eq!(
            refused(&missing).to_string(),
            format!(
                "cannot write the result to {}: the folder {} does not exist (create it \
                 first); nothing was done",
                missing.display(),
                dir.path().join("missing").display()
            )
        );
        assert_eq!(
            refused(dir.path()).to_string(),
            format!(
                "cannot write the result to {}: it is a folder; nothing was done",
                dir.path().display()
            )
        );
        let under_file = file.join("r.json");
        assert_eq!(
            refused(&under_file).to_string(),
            format!(
                "cannot write the result to {}: {} is a file, not a folder; nothing was done",
                under_file.display(),
                file.display()
            )
        );
        assert_eq!(refused(&missing).exit_code(), 2);
        for fine in [
            file.clone(),
            dir.path().join("new.json"),
            "-".into(),
            "/dev/null".into(),
            "relative.json".into(),
        ] {
            check_writable(&fine, "the result").unwrap();
        }
        // Nothing was made by checking.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_new_file_is_written_whole() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("result.json");
        write(b"{}", &file).unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), b"{}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
