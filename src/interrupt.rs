//! Ctrl-C and SIGTERM: set a flag that every writer checks between batches, so a run stops
//! sending, collects the replies still in flight, and writes its result. A second signal
//! exits at once, but still stops the servers the run launched.

use std::sync::atomic::{AtomicBool, Ordering};

static REQUESTED: AtomicBool = AtomicBool::new(false);

/// True once SIGINT or SIGTERM arrived.
pub(crate) fn requested() -> bool {
    REQUESTED.load(Ordering::Relaxed)
}

/// Installs the signal handlers; call once inside the runtime.
pub(crate) fn install() -> std::io::Result<()> {
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
        eprintln!(
            "cachefill: interrupted twice; stopping the servers it launched and exiting without waiting for the result"
        );
        // `exit` runs no destructors, so launched servers are stopped here, not by their drops.
        crate::server::cleanup::stop_all();
        std::process::exit(130);
    });
    Ok(())
}
