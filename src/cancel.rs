//! Ctrl-C and SIGTERM: the first one asks the ceremony to stop and record why; a second Ctrl-C
//! ends the process at once (exit 130), leaving a transcript that `verify` reports as truncated.

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();

fn flag() -> &'static Arc<AtomicBool> {
    FLAG.get_or_init(|| Arc::new(AtomicBool::new(false)))
}

/// Installs the signal handlers. Call once, before the ceremony starts.
pub fn install() -> std::io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let f = flag();
    // Order matters: the conditional shutdown must be registered before the flag setter so
    // that the first signal only sets the flag.
    signal_hook::flag::register_conditional_shutdown(SIGINT, 130, Arc::clone(f))?;
    signal_hook::flag::register(SIGINT, Arc::clone(f))?;
    signal_hook::flag::register(SIGTERM, Arc::clone(f))?;
    Ok(())
}

/// True once Ctrl-C or SIGTERM arrived.
pub fn is_cancelled() -> bool {
    flag().load(Ordering::SeqCst)
}

/// Marks the process as cancelled (for tests of the abort path).
pub fn cancel() {
    flag().store(true, Ordering::SeqCst);
}
