//! Ctrl-C (SIGINT) and SIGTERM during training: the first asks the run to end after its
//! current step, so that it writes its checkpoint and the model so far; a second ends the
//! process at once (every file this crate writes is atomic, so nothing is half-written either
//! way).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The exit status of a run ended by a signal, as shells report SIGINT.
pub const EXIT_STATUS: u8 = 130;

/// The error a command returns when it stopped because it was asked to.
#[derive(Debug)]
pub struct Interrupted {
    /// What was kept, for the message.
    pub kept: String,
}

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "interrupted; {}", self.kept)
    }
}

impl std::error::Error for Interrupted {}

/// Installs the handler and returns the flag it sets on the first signal.
pub fn on_signal() -> Result<Arc<AtomicBool>, ctrlc::Error> {
    let flag = Arc::new(AtomicBool::new(false));
    let set = flag.clone();
    ctrlc::set_handler(move || {
        if set.swap(true, Ordering::SeqCst) {
            std::process::exit(EXIT_STATUS.into());
        }
        eprintln!("\ninterrupted: ending after the current step and saving (interrupt again to quit at once)");
    })?;
    Ok(flag)
}
