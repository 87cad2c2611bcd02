//! Step `capability_check`: the known-answer test proves, once per ceremony, that this token
//! wraps as KMS expects with the chosen algorithm; every target's wrap then uses exactly the
//! plan it proved.

use crate::error::Error;
use crate::hsm::WrapMechanism;
use crate::transcript::payload::{CapabilityChecked, ProcessHardening};
use crate::wrap::{self, SelfTest, WrapLocation};

use super::{Run, Step};

pub(super) fn check(run: &mut Run<'_>) -> Result<SelfTest, Error> {
    run.enter(Step::CapabilityCheck)?;
    let algorithm = run.ceremony.import.algorithm;
    let location = run.ceremony.import.wrap;
    if location == WrapLocation::Host {
        run.prompter.warn(
            "wrap = \"host\": the key material will leave the HSM in plaintext and be wrapped \
             by byok in locked memory. Use this only when the token cannot wrap with the \
             required algorithm.",
        );
    }
    // `run` hardened the process before the first prompt; record what the kernel says now.
    let hardening = crate::secure::hardening_state();
    if location == WrapLocation::Host && !(hardening.core_dumps_disabled && hardening.not_dumpable)
    {
        return Err(super::refused(
            "wrap = \"host\" needs core dumps off and the process not dumpable, and the kernel refused one of them; run on a host that allows setrlimit(RLIMIT_CORE) and prctl(PR_SET_DUMPABLE)".into(),
        ));
    }
    let test = wrap::self_test(run.hsm, algorithm, location, run.ceremony.import.key_spec)?;
    // A kept copy is moved inside the token under a throwaway AES key: find out now, before
    // any import, whether the token can, not after KMS holds material with no copy.
    if run
        .ceremony
        .targets
        .iter()
        .any(|t| t.keep_key_label.is_some())
    {
        let kwp = [WrapMechanism::AesKeyWrapKwp, WrapMechanism::AesKeyWrapPad];
        if !kwp.iter().any(|m| run.hsm.mechanism_support(*m).is_ok()) {
            return Err(super::refused(
                "hsm.keep_key_label needs CKM_AES_KEY_WRAP_KWP or CKM_AES_KEY_WRAP_PAD to copy imported material inside the token, and this token offers neither; remove keep_key_label or use another token".into(),
            ));
        }
    }
    run.record(&CapabilityChecked {
        algorithm: algorithm.kms_name().into(),
        location: location.name().into(),
        mechanism: test.mechanism.clone(),
        known_answer_key_bits: test.kat_key_bits as u64,
        known_answer_test: "pass".into(),
        rejected: test.rejected.clone(),
        process_hardening: Some(ProcessHardening {
            core_dumps_disabled: hardening.core_dumps_disabled,
            not_dumpable: hardening.not_dumpable,
        }),
    })?;
    run.prompter.say(&format!(
        "  {} at {} ({}): known-answer test passed",
        algorithm,
        location.name(),
        test.mechanism
    ));
    Ok(test)
}
