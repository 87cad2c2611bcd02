//! The HSM as byok needs it: a narrow trait, and its PKCS#11 implementation in [`pkcs11`].
//!
//! The ceremony talks only to [`Hsm`]. Nothing here returns key material except
//! [`Hsm::extract_key_value`], which exists for `wrap = "host"` and returns a locked, zeroizing
//! [`KeyMaterial`]. No type here derives `Debug` over anything that can hold a secret.

pub mod pkcs11;

use std::path::PathBuf;

use secrecy::SecretString;

use crate::secure::KeyMaterial;

pub use pkcs11::{Pkcs11Custodians, Pkcs11Hsm};

/// An object created or found in the current session. Meaningful only to the `Hsm` that made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyRef(pub u64);

/// The digest used for RSA-OAEP (and its MGF1), as `CK_RSA_PKCS_OAEP_PARAMS` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OaepHash {
    Sha1,
    Sha256,
}

impl OaepHash {
    /// Name for messages and records: `SHA-1` or `SHA-256`.
    pub fn name(self) -> &'static str {
        match self {
            OaepHash::Sha1 => "SHA-1",
            OaepHash::Sha256 => "SHA-256",
        }
    }
}

/// PKCS#11 attributes of a secret key, as the token reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KeyAttributes {
    pub token: bool,
    pub private: bool,
    pub sensitive: bool,
    pub extractable: bool,
    pub wrap_with_trusted: bool,
    pub modifiable: bool,
    pub encrypt: bool,
    pub decrypt: bool,
    pub sign: bool,
    pub verify: bool,
    pub wrap: bool,
    pub unwrap: bool,
    pub derive: bool,
    /// `CKA_COPYABLE`, when the token knows it.
    pub copyable: Option<bool>,
}

/// Which AES-256 key to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AesKeyKind {
    /// Session object, sensitive, extractable only by wrapping.
    Sensitive,
    /// Session object whose value can be read: only for `wrap = "host"`.
    Extractable,
    /// Session object for a composed RSA-AES wrap: sensitive, `CKA_WRAP`, extractable only by
    /// wrapping (under the KMS public key), destroyed right after.
    EphemeralWrapping,
}

impl AesKeyKind {
    /// The `CKA_LABEL` the key gets.
    pub fn label(&self) -> &str {
        match self {
            AesKeyKind::Sensitive => "byok-ceremony-key",
            AesKeyKind::Extractable => "byok-ceremony-key-host",
            AesKeyKind::EphemeralWrapping => "byok-ephemeral-kwp",
        }
    }
}

/// A wrapping mechanism byok may use inside a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WrapMechanism {
    /// `CKM_RSA_PKCS_OAEP` (0x0009).
    RsaPkcsOaep,
    /// `CKM_RSA_AES_KEY_WRAP` (0x1054): the whole RSA-AES wrap in one call.
    RsaAesKeyWrap,
    /// `CKM_AES_KEY_WRAP_KWP` (0x210B): RFC 5649 in PKCS#11 3.0.
    AesKeyWrapKwp,
    /// `CKM_AES_KEY_WRAP_PAD` (0x210A): RFC 5649 in SoftHSM; PKCS#11 3.0 defines it as RFC 3394
    /// with PKCS#7 padding, so only the known-answer test tells which a token does.
    AesKeyWrapPad,
}

impl WrapMechanism {
    /// The PKCS#11 name.
    pub fn ck_name(self) -> &'static str {
        match self {
            WrapMechanism::RsaPkcsOaep => "CKM_RSA_PKCS_OAEP",
            WrapMechanism::RsaAesKeyWrap => "CKM_RSA_AES_KEY_WRAP",
            WrapMechanism::AesKeyWrapKwp => "CKM_AES_KEY_WRAP_KWP",
            WrapMechanism::AesKeyWrapPad => "CKM_AES_KEY_WRAP_PAD",
        }
    }

    /// The `CK_MECHANISM_TYPE` value.
    pub fn code(self) -> u64 {
        match self {
            WrapMechanism::RsaPkcsOaep => 0x0009,
            WrapMechanism::RsaAesKeyWrap => 0x1054,
            WrapMechanism::AesKeyWrapKwp => 0x210B,
            WrapMechanism::AesKeyWrapPad => 0x210A,
        }
    }
}

/// Where a PKCS#11 module path comes from, as a ceremony file names it (`module` or
/// `module_env`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ModuleSource {
    Path(PathBuf),
    /// The name of an environment variable holding the path.
    Env(String),
}

impl std::fmt::Display for ModuleSource {
    /// The path, or `$NAME` for a variable (what `byok check` shows: it never reads it).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModuleSource::Path(p) => write!(f, "{}", p.display()),
            ModuleSource::Env(var) => write!(f, "${var}"),
        }
    }
}

/// How to find a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSelector {
    Label(String),
    Serial(String),
}

impl std::fmt::Display for TokenSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenSelector::Label(l) => write!(f, "label {l:?}"),
            TokenSelector::Serial(s) => write!(f, "serial {s:?}"),
        }
    }
}

/// Identity of the module and token, as recorded in the transcript.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HsmDescription {
    pub module_path: String,
    pub module_manufacturer: String,
    pub module_description: String,
    pub module_version: String,
    pub cryptoki_version: String,
    pub token_label: String,
    pub token_serial: String,
    pub token_model: String,
    pub token_manufacturer: String,
}

/// A failed PKCS#11 call: which function, which return value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pkcs11Call {
    /// e.g. `C_WrapKey`.
    pub function: String,
    /// e.g. `CKR_ARGUMENTS_BAD`, or the library's message when there is no CK_RV.
    pub rv: String,
}

impl std::fmt::Display for Pkcs11Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} returned {}", self.function, self.rv)
    }
}

/// Everything that can go wrong talking to the HSM.
#[derive(Debug, thiserror::Error)]
pub enum HsmError {
    #[error(
        "cannot load the PKCS#11 module {path}: {detail}; check {setting} and that the file exists"
    )]
    LoadModule {
        path: PathBuf,
        detail: String,
        /// The setting that named the module, e.g. `hsm.module (or the variable named by
        /// hsm.module_env)`.
        setting: String,
    },
    #[error("{doing}: {call}")]
    Pkcs11 {
        doing: &'static str,
        call: Pkcs11Call,
    },
    #[error("no token with {selector} in module {module}; tokens present: {present}")]
    TokenNotFound {
        selector: TokenSelector,
        module: String,
        present: String,
    },
    #[error("more than one token has {selector}; select it by hsm.token_serial instead")]
    TokenAmbiguous { selector: TokenSelector },
    #[error("the PIN for token {token:?} is incorrect")]
    PinIncorrect { token: String },
    #[error("the Security Officer PIN for token {token:?} is incorrect")]
    SoPinIncorrect { token: String },
    #[error(
        "token {token:?} holds {found} AES keys labelled {label:?}; a reimport needs exactly one kept key under the label its source transcript recorded"
    )]
    KeptKeyNotFound {
        label: String,
        token: String,
        found: usize,
    },
    #[error(
        "the PIN for token {token:?} is locked after too many wrong attempts; the token's security officer must unlock it"
    )]
    PinLocked { token: String },
    #[error(
        "token {token:?} reports a user already logged in; byok needs a fresh login it can check, so close other sessions to the token first"
    )]
    AlreadyLoggedIn { token: String },
    #[error(
        "an object labelled {label:?} already exists on token {token:?}; byok never replaces keys: choose another label"
    )]
    LabelExists { label: String, token: String },
    #[error("no EC P-256 key pair labelled {label:?} on token {token:?} ({detail})")]
    KeyNotFound {
        label: String,
        token: String,
        detail: String,
    },
    #[error("the token returned no usable value for the key: {0}")]
    ValueUnavailable(String),
    #[error("the token's key {label:?} failed its signature self-check: {detail}")]
    SignerSelfCheck { label: String, detail: String },
    #[error("the token returned a malformed value: {0}")]
    Encoding(#[from] crate::ecdsa::EncodingError),
    #[error(
        "custodian token {token:?} (serial {serial}) is the ceremony's HSM token; each custodian approves on their own token"
    )]
    CustodianOnHsmToken { token: String, serial: String },
    #[error(
        "the custodian module {module} was not loaded when the ceremony started; this is a bug in byok"
    )]
    CustodianModuleNotLoaded { module: String },
    #[error(
        "the token {token:?} created the key pair {label:?} with more than sign/verify usage ({usage}); {cleanup}. Use a token that honours CKA_DECRYPT, CKA_UNWRAP and CKA_DERIVE false, or report this token in docs/hsm-compatibility.md"
    )]
    KeyPairNotSignOnly {
        label: String,
        token: String,
        /// Every usage attribute as the token reported it.
        usage: KeyPairUsage,
        /// What became of the pair: destroyed, or why not.
        cleanup: String,
    },
    #[error("the token cannot use {mechanism}: {detail}; run `byok probe` to see what it can do")]
    MechanismNotOffered {
        mechanism: &'static str,
        detail: String,
    },
    #[error("unknown object reference {0:?}")]
    UnknownObject(KeyRef),
}

impl HsmError {
    /// The failing PKCS#11 call, when the error is one.
    pub fn pkcs11_call(&self) -> Option<&Pkcs11Call> {
        match self {
            HsmError::Pkcs11 { call, .. } => Some(call),
            _ => None,
        }
    }
}

/// The HSM operations a ceremony needs. One session, one token.
pub trait Hsm {
    /// Module and token identity.
    fn description(&self) -> &HsmDescription;
    /// Logs the user in with `pin`. A login the token did not check is an error.
    fn login(&self, pin: &SecretString) -> Result<(), HsmError>;
    /// Logs the user out (of every session of this process on the token).
    fn logout(&self) -> Result<(), HsmError>;
    /// Whether the token offers `mechanism` with `CKF_WRAP`; `Err` says why not (not in
    /// `C_GetMechanismList`, the missing flag, or the function and CK_RV).
    fn mechanism_support(&self, mechanism: WrapMechanism) -> Result<(), String>;
    /// Generates an AES-256 key.
    fn generate_aes256(&self, kind: AesKeyKind) -> Result<KeyRef, HsmError>;
    /// `CKA_VALUE_LEN` of a secret key, in bytes.
    fn key_length(&self, key: KeyRef) -> Result<usize, HsmError>;
    /// AES-ECB of a zero block under `key`, first 3 bytes.
    fn key_check_value(&self, key: KeyRef) -> Result<[u8; 3], HsmError>;
    /// Creates a session public-key object with `CKA_WRAP` from an RSA modulus and exponent.
    fn import_rsa_public_key(&self, modulus: &[u8], exponent: &[u8]) -> Result<KeyRef, HsmError>;
    /// `C_WrapKey` with `CKM_RSA_PKCS_OAEP` (hash and MGF1 of `hash`, empty label).
    fn wrap_rsa_oaep(
        &self,
        wrapping: KeyRef,
        key: KeyRef,
        hash: OaepHash,
    ) -> Result<Vec<u8>, HsmError>;
    /// `C_WrapKey` of `key` under the AES key `wrapping` with an RFC 5649 mechanism
    /// ([`WrapMechanism::AesKeyWrapKwp`] or [`WrapMechanism::AesKeyWrapPad`]).
    fn wrap_aes_kwp(
        &self,
        mechanism: WrapMechanism,
        wrapping: KeyRef,
        key: KeyRef,
    ) -> Result<Vec<u8>, HsmError>;
    /// `C_WrapKey` with `CKM_RSA_AES_KEY_WRAP` (AES-256 ephemeral key; OAEP with `hash` and its
    /// MGF1, empty label).
    fn wrap_rsa_aes(
        &self,
        wrapping: KeyRef,
        key: KeyRef,
        hash: OaepHash,
    ) -> Result<Vec<u8>, HsmError>;
    /// Reads the value of a non-sensitive key (host wrap only).
    fn extract_key_value(&self, key: KeyRef) -> Result<KeyMaterial, HsmError>;
    /// Copies the session key `key`, inside the token, to a token object labelled `label` that
    /// can do nothing but be wrapped by a trusted wrapping key: `CKA_ENCRYPT`, `CKA_DECRYPT`,
    /// `CKA_SIGN`, `CKA_VERIFY`, `CKA_WRAP`, `CKA_UNWRAP`, `CKA_DERIVE` and `CKA_MODIFIABLE`
    /// false, `CKA_WRAP_WITH_TRUSTED` true (and `CKA_COPYABLE` false where the token allows
    /// it), all set by one call. Refuses an existing label.
    fn keep_copy(&self, key: KeyRef, label: &str) -> Result<KeyRef, HsmError>;
    /// The attributes of a secret key, read from the token.
    fn key_attributes(&self, key: KeyRef) -> Result<KeyAttributes, HsmError>;
    /// Logs the Security Officer in with `pin` (a reimport, before the user logs in). A login
    /// the token did not check is an error.
    fn login_so(&self, pin: &SecretString) -> Result<(), HsmError>;
    /// As the Security Officer: generates a session AES-256 key with `CKA_TRUSTED` true,
    /// `CKA_WRAP` and `CKA_UNWRAP` true, not extractable, and `CKA_PRIVATE` false (so that it
    /// outlives the SO's logout and the user can use it). The only key a kept key
    /// (`CKA_WRAP_WITH_TRUSTED`) can be wrapped under; never a token object.
    fn generate_trusted_transfer_key(&self) -> Result<KeyRef, HsmError>;
    /// The one AES secret key labelled `label` (a kept key); refuses none or several.
    fn find_kept_key(&self, label: &str) -> Result<KeyRef, HsmError>;
    /// Copies the kept key `kept` into a new session key inside the token: `C_WrapKey` under
    /// the trusted transfer key `trusted` (RFC 5649: `CKM_AES_KEY_WRAP_KWP`, else
    /// `CKM_AES_KEY_WRAP_PAD`), then `C_UnwrapKey` with the template of a generated
    /// [`AesKeyKind::Sensitive`] key (sensitive, extractable only by wrapping, `CKA_ENCRYPT`
    /// for the key check value). The wrapped bytes never leave this call and are zeroized.
    fn copy_kept_to_session(&self, trusted: KeyRef, kept: KeyRef) -> Result<KeyRef, HsmError>;
    /// Destroys an object.
    fn destroy(&self, key: KeyRef) -> Result<(), HsmError>;
    /// True if any object visible to the session carries `label`.
    fn label_exists(&self, label: &str) -> Result<bool, HsmError>;
    /// Finds the EC P-256 key pair labelled `label`: private key and public SPKI DER.
    fn find_ec_key_pair(&self, label: &str) -> Result<(KeyRef, Vec<u8>), HsmError>;
    /// Generates a token EC P-256 key pair that can only sign (private key) and verify (public
    /// key), reads its usage attributes back, and refuses (destroying the pair) when the token
    /// reports any other usage. Returns the public SPKI DER and the usage as read back.
    fn generate_ec_key_pair(&self, label: &str) -> Result<GeneratedKeyPair, HsmError>;
    /// The usage attributes of the EC key pair labelled `label`, as the token reports them.
    fn ec_key_pair_usage(&self, label: &str) -> Result<KeyPairUsage, HsmError>;
    /// `CKM_ECDSA` over a SHA-256 digest; returns a DER signature.
    fn sign_digest(&self, key: KeyRef, digest: &[u8; 32]) -> Result<Vec<u8>, HsmError>;
    /// Random bytes from the token.
    fn random(&self, len: usize) -> Result<Vec<u8>, HsmError>;
    /// The raw PKCS#11 handle behind `key`, for the record.
    fn raw_handle(&self, key: KeyRef) -> u64;
}

/// A key pair made by [`Hsm::generate_ec_key_pair`].
pub struct GeneratedKeyPair {
    /// SPKI DER of the public key.
    pub spki: Vec<u8>,
    /// The usage attributes read back from the token after generation.
    pub usage: KeyPairUsage,
}

/// The usage attributes of an EC key pair as the token reports them: `None` for one the token
/// did not report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KeyPairUsage {
    /// `CKA_SIGN`, `CKA_SIGN_RECOVER`, `CKA_DECRYPT`, `CKA_UNWRAP`, `CKA_DERIVE`.
    pub private: [Option<bool>; 5],
    /// `CKA_VERIFY`, `CKA_VERIFY_RECOVER`, `CKA_ENCRYPT`, `CKA_WRAP`, `CKA_DERIVE`.
    pub public: [Option<bool>; 5],
}

impl KeyPairUsage {
    /// The names of [`KeyPairUsage::private`], in order; the first is the one usage allowed.
    pub const PRIVATE: [&'static str; 5] = [
        "CKA_SIGN",
        "CKA_SIGN_RECOVER",
        "CKA_DECRYPT",
        "CKA_UNWRAP",
        "CKA_DERIVE",
    ];
    /// The names of [`KeyPairUsage::public`], in order; the first is the one usage allowed.
    pub const PUBLIC: [&'static str; 5] = [
        "CKA_VERIFY",
        "CKA_VERIFY_RECOVER",
        "CKA_ENCRYPT",
        "CKA_WRAP",
        "CKA_DERIVE",
    ];

    /// True when the private key can sign and nothing else, and the public key can verify and
    /// nothing else. An attribute the token did not report counts against it.
    pub fn is_sign_only(&self) -> bool {
        [self.private, self.public]
            .iter()
            .all(|flags| flags[0] == Some(true) && flags[1..].iter().all(|f| *f == Some(false)))
    }
}

impl std::fmt::Display for KeyPairUsage {
    /// `private CKA_SIGN=true CKA_SIGN_RECOVER=false …; public CKA_VERIFY=true …`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (side, names, flags)) in [
            ("private", Self::PRIVATE, self.private),
            ("public", Self::PUBLIC, self.public),
        ]
        .into_iter()
        .enumerate()
        {
            write!(f, "{}{side}", if i > 0 { "; " } else { "" })?;
            for (name, flag) in names.iter().zip(flags) {
                match flag {
                    Some(v) => write!(f, " {name}={v}")?,
                    None => write!(f, " {name}=(not reported)")?,
                }
            }
        }
        Ok(())
    }
}

/// A custodian's signature over an approval statement, made on their own token.
pub struct ApprovalSignature {
    /// SPKI DER of the key that signed.
    pub spki: Vec<u8>,
    /// DER ECDSA P-256 signature over SHA-256 of the message.
    pub signature: Vec<u8>,
}

/// Custodians' tokens, opened one approval at a time.
pub trait CustodianTokens {
    /// Opens a new session on `token` of the custodian's `module` (`None`: the HSM's own
    /// module; else the custodian's `module`/`module_env` exactly as the ceremony file gives
    /// it, loaded before the ceremony started), logs in with `pin` so that the token checks
    /// the PIN (logging out first if the token reports a login already), signs
    /// SHA-256(`message`) with the EC key pair labelled `key_label`, and logs out again. The
    /// HSM's own token (same module, same serial) is refused.
    fn sign_approval(
        &self,
        module: Option<&ModuleSource>,
        token: &TokenSelector,
        key_label: &str,
        pin: &SecretString,
        message: &[u8],
    ) -> Result<ApprovalSignature, HsmError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIGN_ONLY: KeyPairUsage = KeyPairUsage {
        private: [
            Some(true),
            Some(false),
            Some(false),
            Some(false),
            Some(false),
        ],
        public: [
            Some(true),
            Some(false),
            Some(false),
            Some(false),
            Some(false),
        ],
    };

    #[test]
    fn only_sign_and_verify_make_a_sign_only_pair() {
        assert!(SIGN_ONLY.is_sign_only());
        for i in 0..5 {
            for side in 0..2 {
                let with = |value: Option<bool>| {
                    let mut u = SIGN_ONLY;
                    if side == 0 {
                        u.private[i] = value;
                    } else {
                        u.public[i] = value;
                    }
                    u
                };
                // Flipped: sign/verify off, or another usage on.
                let u = with(Some(i != 0));
                assert!(!u.is_sign_only(), "side {side} attribute {i} flipped");
                // Not reported counts against the pair too.
                let u = with(None);
                assert!(!u.is_sign_only(), "side {side} attribute {i} unreported");
            }
        }
    }

    #[test]
    fn usage_is_shown_attribute_by_attribute() {
        let mut u = SIGN_ONLY;
        u.private[2] = Some(true);
        u.public[4] = None;
        assert_eq!(
            u.to_string(),
            "private CKA_SIGN=true CKA_SIGN_RECOVER=false CKA_DECRYPT=true CKA_UNWRAP=false CKA_DERIVE=false; public CKA_VERIFY=true CKA_VERIFY_RECOVER=false CKA_ENCRYPT=false CKA_WRAP=false CKA_DERIVE=(not reported)"
        );
    }

    #[test]
    fn module_sources_show_as_check_prints_them() {
        assert_eq!(
            ModuleSource::Path("/usr/lib/opensc-pkcs11.so".into()).to_string(),
            "/usr/lib/opensc-pkcs11.so"
        );
        assert_eq!(
            ModuleSource::Env("BOB_MODULE".into()).to_string(),
            "$BOB_MODULE"
        );
    }
}
