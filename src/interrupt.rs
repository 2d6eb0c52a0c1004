//! Ctrl-C and SIGTERM: set a flag that every writer checks between batches, so a run stops
//! sending, collects the replies still in flight, and writes its result.

use std::sync::atomic::{AtomicBool, Ordering};

static REQUESTED: AtomicBool = AtomicBool::new(false);

/// True once SIGINT or SIGTERM arrived.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::Relaxed)
}

/// Installs the signal handlers; call once inside the runtime.
pub fn install() -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    tokio::spawn(async move {
        tokio::select! {
            _ = sigint.recv() => {}
            _ = sigterm.recv() => {}
        }
        REQUESTED.store(true, Ordering::Relaxed);
        // A second signal means "now": stop without waiting for replies in flight.
        tokio::select! {
            _ = sigint.recv() => {}
            _ = sigterm.recv() => {}
        }
        eprintln!("cachefill: interrupted twice; exiting without waiting for the result");
        std::process::exit(130);
    });
    Ok(())
}
