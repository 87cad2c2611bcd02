//! byok's integration suite: one test binary, shared helpers in `common`.
//!
//! Needs the environment of `scripts/testenv up` (SoftHSM, LocalStack); `scripts/test` provides
//! it and runs the suite under cargo-nextest (one process per test).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking, with the value it did not expect"
)]
#![allow(
    unsafe_code,
    reason = "tests signal child processes (kill) and set the token config variable (set_var) before the module is loaded; each block says why it is sound"
)]

mod alias_swap;
mod ceremony;
mod common;
mod custodian_modules;
mod dual_control;
mod examples;
mod fleet;
mod hardening;
mod inprocess;
mod inventory;
mod liar;
mod lifecycle;
mod matrix;
mod mutations;
mod outcome;
mod policy;
mod procedures;
mod reimport;
mod report;
mod rotation;
mod sign_only;
mod spec;
mod terminal;
mod token_truth;
mod transcript;
mod whereabouts;
