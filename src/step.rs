//! The steps of a ceremony, named the same way in messages, errors and `ceremony_aborted`.
//!
//! A leaf module: errors name the step they stopped at without depending on the engine.

/// The steps of a ceremony, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Start,
    OpenHsm,
    /// A resumed run: what KMS and the earlier transcript say of each target.
    Reconcile,
    ApprovePlan,
    KmsPreflight,
    CapabilityCheck,
    ImportParameters,
    Generate,
    Wrap,
    ConfirmImport,
    Import,
    Verify,
    Keep,
    /// `kind = "reimport"`: the `[source]` transcript verified and recorded.
    SourceCheck,
    /// `kind = "reimport"`: each kept key's KCV computed in the HSM now, before the plan
    /// approval.
    KeptKeyCheck,
    /// `kind = "rotate"`: the quorum approves RotateKeyOnDemand.
    ConfirmRotate,
    /// `kind = "rotate"`: RotateKeyOnDemand and its verification.
    Rotate,
    /// Alias-swap and rollback: the quorum approves UpdateAlias.
    ConfirmSwap,
    /// Alias-swap and rollback: UpdateAlias and its verification.
    Swap,
    Cleanup,
    Finish,
}

impl Step {
    /// Name used in messages and in `ceremony_aborted.data.step`.
    pub fn name(self) -> &'static str {
        match self {
            Step::Start => "start",
            Step::OpenHsm => "open_hsm",
            Step::Reconcile => "reconcile",
            Step::ApprovePlan => "approve_plan",
            Step::KmsPreflight => "kms_preflight",
            Step::CapabilityCheck => "capability_check",
            Step::ImportParameters => "import_parameters",
            Step::Generate => "generate",
            Step::Wrap => "wrap",
            Step::ConfirmImport => "confirm_import",
            Step::Import => "import",
            Step::Verify => "verify",
            Step::Keep => "keep",
            Step::SourceCheck => "source_check",
            Step::KeptKeyCheck => "kept_key_check",
            Step::ConfirmRotate => "confirm_rotate",
            Step::Rotate => "rotate",
            Step::ConfirmSwap => "confirm_swap",
            Step::Swap => "swap",
            Step::Cleanup => "cleanup",
            Step::Finish => "finish",
        }
    }

    /// Heading shown to the operator.
    pub fn heading(self) -> &'static str {
        match self {
            Step::Start => "Start",
            Step::OpenHsm => "Open the HSM",
            Step::Reconcile => "Reconcile the targets with KMS and the earlier transcript",
            Step::ApprovePlan => "Approve the plan (dual control)",
            Step::KmsPreflight => "Check the KMS keys (read only)",
            Step::CapabilityCheck => "Prove the token's wrap (known-answer test)",
            Step::ImportParameters => {
                "Create keys (where asked), get import parameters, generate and wrap in the HSM"
            }
            Step::Generate => "Generate AES-256 in the HSM",
            Step::Wrap => "Wrap the keys for KMS",
            Step::ConfirmImport => "Approve the import",
            Step::Import => "Import into KMS and verify",
            Step::Verify => "Verify the imports",
            Step::Keep => "Keep the imported material on the token",
            Step::SourceCheck => "Check the source transcript",
            Step::KeptKeyCheck => "Check the kept keys in the HSM (KCV now against the source)",
            Step::ConfirmRotate => "Approve the rotation",
            Step::Rotate => "Rotate (RotateKeyOnDemand) and verify",
            Step::ConfirmSwap => "Approve the alias move",
            Step::Swap => "Move the aliases (UpdateAlias) and verify",
            Step::Cleanup => "Clean up HSM objects",
            Step::Finish => "Finish",
        }
    }
}
