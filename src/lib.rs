//! byok: guided key ceremonies that move AES-256 key material generated in a
//! PKCS#11 HSM into AWS KMS ("bring your own key"), with a signed, hash-chained audit
//! transcript that auditors verify offline.
//!
//! The binary (`src/main.rs`) only parses the command line and calls [`commands`]. The
//! ceremony engine ([`ceremony`]) talks to the HSM ([`hsm`]), KMS ([`kms`]) and the people at
//! the terminal ([`prompt`]) through narrow traits.

// unwrap_used and expect_used are denied for the library and the binary in Cargo.toml's
// [lints]; unit tests may panic on an unexpected value.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod audit;
pub mod cancel;
pub mod ceremony;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod ecdsa;
pub mod error;
pub mod failpoint;
pub mod hsm;
pub mod inventory;
pub mod jcs;
pub mod kms;
pub mod policy;
pub mod prompt;
pub mod quorum;
pub mod report;
pub mod rfc3339;
pub mod secure;
pub mod spec;
pub mod step;
pub mod text;
pub mod transcript;
pub mod wrap;

pub use error::{Error, ErrorClass};
