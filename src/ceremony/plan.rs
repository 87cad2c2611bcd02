//! The plan `byok check` prints: what the ceremony will do, in the order it will do it.

use crate::spec::{Ceremony, ModuleSource};
use crate::wrap::WrapLocation;

/// Human-readable plan of a validated ceremony.
pub fn render(c: &Ceremony) -> String {
    let module = match &c.hsm.module {
        ModuleSource::Path(p) => p.display().to_string(),
        ModuleSource::Env(var) => format!("${var}"),
    };
    let wrap = match c.import.wrap {
        WrapLocation::Hsm if c.import.algorithm.is_rsa_aes() => "inside the HSM (CKM_RSA_AES_KEY_WRAP, or an ephemeral AES key with RFC 5649 wrap and CKM_RSA_PKCS_OAEP; the known-answer test picks)".to_string(),
        WrapLocation::Hsm => "inside the HSM (C_WrapKey, CKM_RSA_PKCS_OAEP)".to_string(),
        WrapLocation::Host => "on the HOST: the material leaves the HSM in plaintext into locked memory (wrap = \"host\")".to_string(),
    };
    let expiry = match c.import.expiration.valid_to() {
        Some(t) => format!(
            "{} (ValidTo {})",
            c.import.expiration.model(),
            crate::transcript::format_rfc3339(t)
        ),
        None => c.import.expiration.model().to_string(),
    };
    let keep = match &c.hsm.keep_key_label {
        Some(l) => format!("kept on the token as {l:?} (made unextractable after the wrap)"),
        None => "destroyed after the import (session object)".to_string(),
    };
    let dual = match &c.dual_control {
        crate::spec::DualControl::Off => "OFF — REHEARSAL ONLY: the operator alone confirms the import; no custodian approves anything".to_string(),
        crate::spec::DualControl::Quorum { quorum, custodians } => {
            let mut s = format!("{quorum} of {} custodians approve the plan and the import:", custodians.len());
            for k in custodians {
                s.push_str(&format!("\n                    {} ({}, key {:?}, SHA-256 {})", k.name, k.token, k.key_label, k.public_key_sha256));
            }
            s
        }
    };
    let steps = [
        "start: record the ceremony file and the audit key",
        "open_hsm: log in to the token (PIN asked at the terminal)",
        "approve_plan: the custodian quorum signs the plan statement",
        "kms_preflight: DescribeKey must show EXTERNAL, SYMMETRIC_DEFAULT, PendingImport",
        "capability_check: known-answer test of the wrap on this token",
        "import_parameters: GetParametersForImport (public key and token hashes recorded)",
        "generate: AES-256 inside the HSM, key check value recorded",
        "wrap: wrap the key under the KMS public key",
        "confirm_import: the custodian quorum signs the import statement (key, hashes, KCV, expiry)",
        "import: ImportKeyMaterial",
        "verify: DescribeKey and an Encrypt/Decrypt round trip",
        "cleanup: destroy session objects",
        "finish: ceremony_finished; print the last line's SHA-256",
    ];
    let mut out = format!(
        "Ceremony {id}: {desc}\n  operator        {op}\n  HSM module      {module}\n  token           {token}\n  audit key       {label:?}, SHA-256 {fp}\n  KMS key         {key} in {region}\n  algorithm       {alg} with {spec}\n  wrap            {wrap}\n  expiration      {expiry}\n  generated key   {keep}\n  dual control    {dual}\nSteps:\n",
        id = c.id,
        desc = c.description,
        op = c.operator,
        token = c.hsm.token,
        label = c.hsm.audit_key_label,
        fp = c.hsm.audit_key_sha256,
        key = c.kms.key,
        region = c.kms.region,
        alg = c.import.algorithm,
        spec = c.import.key_spec,
        dual = dual,
    );
    for (i, s) in steps.iter().enumerate() {
        out.push_str(&format!("  {:>2}. {s}\n", i + 1));
    }
    out
}
