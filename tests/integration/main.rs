//! byok's integration suite: one test binary, shared helpers in `common`.
//!
//! Needs the environment of `scripts/testenv up` (SoftHSM, LocalStack); `scripts/test` provides
//! it and runs the suite under cargo-nextest (one process per test).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod alias_swap;
mod ceremony;
mod common;
mod custodian_modules;
mod dual_control;
mod fleet;
mod hardening;
mod inprocess;
mod liar;
mod lifecycle;
mod matrix;
mod outcome;
mod reimport;
mod rotation;
mod sign_only;
mod spec;
mod terminal;
mod transcript;
mod whereabouts;
