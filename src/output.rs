//! Where a command's output goes: standard output, or a file written atomically. A reader
//! that went away (`cachefill check plan.toml | head`, `-o - | head`) is not an error.

use std::io::{ErrorKind, Write};
use std::path::Path;

use crate::error::Failure;

/// Writes `text` to standard output.
pub fn print_stdout(text: &str) -> Result<(), Failure> {
    tolerating_closed_reader(&mut std::io::stdout().lock(), text.as_bytes())
        .map_err(|e| Failure::Failed(format!("cannot write to standard output: {e}")))
}

/// Writes `bytes` to `path` (`-`: standard output). A regular file (or a new one) is
/// written through a temporary file and a rename, so a reader never sees half a file; a
/// symbolic link is followed, so the file it names is replaced and the link stays (a link
/// to nothing yet gets its file made in place). Anything else (`/dev/null`, `/dev/stdout`,
/// a named pipe) is opened and written in place: a rename would put a regular file where
/// the device or pipe was.
pub fn write(bytes: &[u8], path: &Path) -> std::io::Result<()> {
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
    fn a_new_file_is_written_whole() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("result.json");
        write(b"{}", &file).unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), b"{}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
