//! Ctrl-C and SIGTERM: the first one asks the ceremony to stop and record why; a second Ctrl-C
//! ends the process at once (exit 130), leaving a transcript that `verify` reports as truncated.
//! Before that exit, the terminal's mode as it was at start is put back, so a second Ctrl-C in
//! the middle of a hidden PIN prompt does not leave the operator's terminal without echo.

#![allow(
    unsafe_code,
    reason = "tcgetattr/tcsetattr to restore the terminal on Ctrl-C; each block says why it is sound"
)]

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();

fn flag() -> &'static Arc<AtomicBool> {
    FLAG.get_or_init(|| Arc::new(AtomicBool::new(false)))
}

/// The controlling terminal (kept open for the life of the process) and its mode at start.
static TTY_MODE: OnceLock<(i32, libc::termios)> = OnceLock::new();

/// Remembers the terminal's mode, when stdin is a terminal.
fn remember_tty_mode() {
    use std::io::IsTerminal;
    use std::os::fd::IntoRawFd;
    if !std::io::stdin().is_terminal() || TTY_MODE.get().is_some() {
        return;
    }
    let Ok(tty) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
    else {
        return;
    };
    // Never closed: the signal action below may use it until the process ends.
    let fd = tty.into_raw_fd();
    let mut mode = std::mem::MaybeUninit::<libc::termios>::uninit();
    // SAFETY: tcgetattr writes a termios into the buffer, which we read only on success.
    if unsafe { libc::tcgetattr(fd, mode.as_mut_ptr()) } == 0 {
        // SAFETY: tcgetattr succeeded, so the termios is initialised.
        let _ = TTY_MODE.set((fd, unsafe { mode.assume_init() }));
    }
}

/// Installs the signal handlers. Call once, before the ceremony starts.
pub fn install() -> std::io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    remember_tty_mode();
    let f = flag();
    let seen = Arc::clone(f);
    // SAFETY: the action loads an atomic, reads a OnceLock set before registration and never
    // changed after, and calls tcsetattr: all async-signal-safe. It runs before the shutdown
    // action registered next, so a second Ctrl-C restores the terminal, then exits.
    unsafe {
        signal_hook::low_level::register(SIGINT, move || {
            if seen.load(Ordering::SeqCst)
                && let Some((fd, mode)) = TTY_MODE.get()
            {
                libc::tcsetattr(*fd, libc::TCSANOW, mode);
            }
        })?;
    }
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
