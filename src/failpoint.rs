//! Deterministic crash points for the kill -9 tests, in debug builds only.
//!
//! `BYOK_FAILPOINT=after:<record_type>:<n>` kills the process with SIGKILL right after the
//! `n`-th record of that type is synced to the transcript (`before:<record_type>:<n>`: right
//! before it is written); `BYOK_FAILPOINT=import:answered:<n>` kills it right after the `n`-th
//! ImportKeyMaterial answer arrives, before anything records it, and `create:answered:<n>` right
//! after the `n`-th CreateKey answer, before CreateAlias. `BYOK_FAILPOINT=full:<record_type>:<n>`
//! does not kill: it makes the transcript's disk "full" from the `n`-th write of that record type
//! on (every later write fails with ENOSPC, as on a real full disk). `n` defaults to 1. Release
//! builds ignore the variable: nothing here can be triggered in production.

#![allow(
    unsafe_code,
    reason = "kill(2) of this process at a crash point (debug builds only)"
)]

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

static COUNTS: Mutex<Vec<(String, u64)>> = Mutex::new(Vec::new());

/// Set once `full:<record_type>` is reached: the disk stays full for every later write.
static DISK_FULL: AtomicBool = AtomicBool::new(false);

/// Called before a transcript write of a record of `record_type`: `Some(ENOSPC)` once the
/// `full:<record_type>:<n>` point has been reached (debug builds only).
pub fn disk_full(record_type: &str) -> Option<std::io::Error> {
    if !cfg!(debug_assertions) {
        return None;
    }
    if DISK_FULL.load(Ordering::SeqCst) || reached("full", record_type) {
        DISK_FULL.store(true, Ordering::SeqCst);
        return Some(std::io::Error::from_raw_os_error(libc::ENOSPC));
    }
    None
}

/// Called at crash point `kind:point` (`after:<record type>`, `before:<record type>`,
/// `import:answered`, `create:answered`).
pub fn hit(kind: &str, point: &str) {
    if !cfg!(debug_assertions) {
        return;
    }
    if reached(kind, point) {
        let spec = std::env::var("BYOK_FAILPOINT").unwrap_or_default();
        eprintln!("byok: BYOK_FAILPOINT {spec}: killing the process (SIGKILL)");
        // SAFETY: kill(2) on our own pid with a valid signal number touches no memory.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}

/// True exactly when `kind:point` is passed for the `n`-th time and `BYOK_FAILPOINT` names it.
fn reached(kind: &str, point: &str) -> bool {
    let Ok(spec) = std::env::var("BYOK_FAILPOINT") else {
        return false;
    };
    let mut parts = spec.splitn(3, ':');
    let (Some(want_kind), Some(want_point)) = (parts.next(), parts.next()) else {
        return false;
    };
    let nth: u64 = parts.next().and_then(|n| n.parse().ok()).unwrap_or(1);
    if want_kind != kind || want_point != point {
        return false;
    }
    let n = {
        // Test-only counter; a poisoned lock still holds valid counts.
        let mut counts = COUNTS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = format!("{kind}:{point}");
        match counts.iter_mut().find(|(k, _)| *k == key) {
            Some((_, c)) => {
                *c += 1;
                *c
            }
            None => {
                counts.push((key, 1));
                1
            }
        }
    };
    n == nth
}
