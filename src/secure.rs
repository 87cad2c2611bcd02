//! Process hardening and the one type that may hold plaintext key material.
//!
//! Key material exists in byok's memory only for `wrap = "host"`. Before it does,
//! [`harden_process`] turns off core dumps and ptrace-style dumping, and [`KeyMaterial`] keeps
//! the bytes in a heap page locked against swapping (where the OS allows) and wipes them on drop.
//! Nothing here implements `Debug` or `Display` for the material.

#![allow(
    unsafe_code,
    reason = "setrlimit, prctl and mlock/munlock have no safe wrapper in std; each block says why it is sound"
)]

use zeroize::Zeroize;

/// What hardening achieved, for the transcript.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hardening {
    pub core_dumps_disabled: bool,
    pub not_dumpable: bool,
}

/// Disables core dumps (`RLIMIT_CORE` = 0) and marks the process non-dumpable.
pub fn harden_process() -> Hardening {
    let limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: setrlimit reads a valid, initialised rlimit struct we own.
    let core_dumps_disabled = unsafe { libc::setrlimit(libc::RLIMIT_CORE, &limit) } == 0;
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_DUMPABLE takes an integer argument and touches no memory of ours.
    let not_dumpable = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } == 0;
    #[cfg(not(target_os = "linux"))]
    let not_dumpable = false;
    Hardening {
        core_dumps_disabled,
        not_dumpable,
    }
}

/// What the kernel reports now: the core-dump limit (soft and hard both 0) and the dumpable
/// flag (`PR_GET_DUMPABLE` = 0). Read back, not remembered, for the transcript.
pub fn hardening_state() -> Hardening {
    let mut limit = libc::rlimit {
        rlim_cur: 1,
        rlim_max: 1,
    };
    // SAFETY: getrlimit writes into the rlimit struct we own and pass by pointer.
    let read = unsafe { libc::getrlimit(libc::RLIMIT_CORE, &mut limit) } == 0;
    let core_dumps_disabled = read && limit.rlim_cur == 0 && limit.rlim_max == 0;
    #[cfg(target_os = "linux")]
    // SAFETY: PR_GET_DUMPABLE takes no pointer arguments and returns the flag.
    let not_dumpable = unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) } == 0;
    #[cfg(not(target_os = "linux"))]
    let not_dumpable = false;
    Hardening {
        core_dumps_disabled,
        not_dumpable,
    }
}

/// Exactly 32 bytes of AES-256 key material: locked in memory where possible, zeroized on drop.
pub struct KeyMaterial {
    bytes: Box<[u8; 32]>,
    locked: bool,
}

impl KeyMaterial {
    /// Copies `src` into a fresh locked buffer. `None` unless `src` is exactly 32 bytes.
    ///
    /// The caller remains responsible for wiping `src`.
    pub fn from_slice(src: &[u8]) -> Option<Self> {
        if src.len() != 32 {
            return None;
        }
        let mut bytes = Box::new([0u8; 32]);
        // SAFETY: the pointer and length describe the boxed array, which outlives the lock
        // (we unlock in Drop before the Box is freed).
        let locked = unsafe { libc::mlock(bytes.as_ptr().cast(), bytes.len()) } == 0;
        bytes.copy_from_slice(src);
        Some(KeyMaterial { bytes, locked })
    }

    /// The material. Callers must not copy it anywhere that outlives this value.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..]
    }

    /// Whether `mlock` succeeded.
    pub fn is_locked(&self) -> bool {
        self.locked
    }
}

impl Drop for KeyMaterial {
    fn drop(&mut self) {
        self.bytes.zeroize();
        if self.locked {
            // SAFETY: same pointer and length that were locked in `from_slice`.
            unsafe {
                libc::munlock(self.bytes.as_ptr().cast(), self.bytes.len());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_material_is_exactly_32_bytes() {
        assert!(KeyMaterial::from_slice(&[1u8; 16]).is_none());
        assert!(KeyMaterial::from_slice(&[1u8; 33]).is_none());
        let m = KeyMaterial::from_slice(&[9u8; 32]).unwrap();
        assert_eq!(m.as_bytes(), &[9u8; 32]);
    }

    #[test]
    fn hardening_disables_core_dumps() {
        let h = harden_process();
        assert!(h.core_dumps_disabled);
        let mut cur = libc::rlimit {
            rlim_cur: 1,
            rlim_max: 1,
        };
        // SAFETY: getrlimit writes one `rlimit` into `cur`, which is valid and writable.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_CORE, &mut cur) }, 0);
        assert_eq!(cur.rlim_cur, 0);
        assert_eq!(hardening_state(), h);
        assert!(h.not_dumpable);
    }
}
