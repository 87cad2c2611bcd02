//! [`Hsm`] over a real PKCS#11 module, through the `cryptoki` crate.
//!
//! One [`Module`] per process and library (a second `C_Initialize` fails); one [`Pkcs11Hsm`]
//! per token, each with its own read-write session. Attribute lists are never debug-printed:
//! cryptoki derives `Debug` over attribute values.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Function, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsOaepParams, PkcsOaepSource};
use cryptoki::mechanism::vendor_defined::VendorDefinedMechanism;
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use secrecy::SecretString;
use zeroize::Zeroize;

use super::{
    AesKeyKind, ApprovalSignature, CustodianTokens, GeneratedKeyPair, Hsm, HsmDescription,
    HsmError, KeyAttributes, KeyPairUsage, KeyRef, ModuleSource, OaepHash, Pkcs11Call,
    TokenSelector, WrapMechanism,
};
use crate::secure::KeyMaterial;

/// A loaded and initialised PKCS#11 library. Finalised when the last user drops it.
pub struct Module {
    ctx: Pkcs11,
    path: PathBuf,
}

/// The setting a [`HsmError::LoadModule`] names when the caller does not say.
pub const HSM_MODULE_SETTING: &str = "hsm.module (or the variable named by hsm.module_env)";

impl Module {
    /// Loads `path` and calls `C_Initialize` with OS locking. Load each library once per
    /// process (see [`Modules`]): a second `C_Initialize` fails.
    pub fn load(path: &Path) -> Result<Arc<Module>, HsmError> {
        if !path.is_file() {
            return Err(HsmError::LoadModule {
                path: path.to_path_buf(),
                detail: "no such file".into(),
                setting: HSM_MODULE_SETTING.into(),
            });
        }
        let ctx = Pkcs11::new(path).map_err(|e| HsmError::LoadModule {
            path: path.to_path_buf(),
            detail: e.to_string(),
            setting: HSM_MODULE_SETTING.into(),
        })?;
        // Without OS_LOCKING_OK, SoftHSM turns off its own locking.
        ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
            .map_err(|e| pkcs11_error("initialising the module", e))?;
        Ok(Arc::new(Module {
            ctx,
            path: path.to_path_buf(),
        }))
    }

    /// Path the module was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn find_slot(&self, selector: &TokenSelector) -> Result<Slot, HsmError> {
        let slots = self
            .ctx
            .get_slots_with_token()
            .map_err(|e| pkcs11_error("listing slots", e))?;
        let mut matches = Vec::new();
        let mut present = Vec::new();
        for slot in slots {
            let info = self
                .ctx
                .get_token_info(slot)
                .map_err(|e| pkcs11_error("reading token info", e))?;
            if !info.token_initialized() {
                // SoftHSM's spare slot, or a blank card: nothing to select.
                continue;
            }
            let label = info.label().trim_end().to_string();
            let serial = info.serial_number().trim_end().to_string();
            let hit = match selector {
                TokenSelector::Label(l) => *l == label,
                TokenSelector::Serial(s) => *s == serial,
            };
            if hit {
                matches.push(slot);
            }
            present.push(format!("{label:?} (serial {serial})"));
        }
        match matches.len() {
            1 => Ok(matches[0]),
            0 => Err(HsmError::TokenNotFound {
                selector: selector.clone(),
                module: self.path.display().to_string(),
                present: if present.is_empty() {
                    "none".into()
                } else {
                    present.join(", ")
                },
            }),
            _ => Err(HsmError::TokenAmbiguous {
                selector: selector.clone(),
            }),
        }
    }
}

/// The PKCS#11 modules of one process, each loaded (and initialised) once: a path that leads to
/// a library already loaded, by another spelling or a symbolic link, gets the same [`Module`].
#[derive(Default)]
pub struct Modules {
    /// Canonical path → module.
    loaded: Vec<(PathBuf, Arc<Module>)>,
}

impl Modules {
    /// The module at `path`, loaded now or earlier. `setting` names where the path came from
    /// (e.g. `custodian[1].module`), for the message when it cannot be loaded.
    pub fn load(&mut self, path: &Path, setting: &str) -> Result<Arc<Module>, HsmError> {
        let with_setting = |e: HsmError| match e {
            HsmError::LoadModule { path, detail, .. } => HsmError::LoadModule {
                path,
                detail,
                setting: setting.to_string(),
            },
            other => other,
        };
        // A path that cannot be canonicalised cannot be loaded either: `Module::load` says why.
        let Ok(canonical) = std::fs::canonicalize(path) else {
            return Module::load(path).map_err(with_setting);
        };
        if let Some((_, module)) = self.loaded.iter().find(|(p, _)| *p == canonical) {
            return Ok(Arc::clone(module));
        }
        let module = Module::load(path).map_err(with_setting)?;
        self.loaded.push((canonical, Arc::clone(&module)));
        Ok(module)
    }
}

impl Drop for Module {
    fn drop(&mut self) {
        // Sessions hold clones of the context but are gone by now (they own an Arc<Module>).
        let _ = self.ctx.clone().finalize();
    }
}

/// One token of a [`Module`], with one read-write session.
pub struct Pkcs11Hsm {
    // Declared first so it drops (closes) before the module is finalised.
    session: Session,
    objects: RefCell<HashMap<u64, ObjectHandle>>,
    slot: Slot,
    description: HsmDescription,
    module: Arc<Module>,
}

impl Pkcs11Hsm {
    /// Opens a read-write session on the token chosen by `selector`.
    pub fn open(module: Arc<Module>, selector: &TokenSelector) -> Result<Self, HsmError> {
        let slot = module.find_slot(selector)?;
        let lib = module
            .ctx
            .get_library_info()
            .map_err(|e| pkcs11_error("reading module info", e))?;
        let token = module
            .ctx
            .get_token_info(slot)
            .map_err(|e| pkcs11_error("reading token info", e))?;
        let session = module
            .ctx
            .open_rw_session(slot)
            .map_err(|e| pkcs11_error("opening a session", e))?;
        let description = HsmDescription {
            module_path: module.path.display().to_string(),
            module_manufacturer: lib.manufacturer_id().trim_end().to_string(),
            module_description: lib.library_description().trim_end().to_string(),
            module_version: lib.library_version().to_string(),
            cryptoki_version: lib.cryptoki_version().to_string(),
            token_label: token.label().trim_end().to_string(),
            token_serial: token.serial_number().trim_end().to_string(),
            token_model: token.model().trim_end().to_string(),
            token_manufacturer: token.manufacturer_id().trim_end().to_string(),
        };
        Ok(Pkcs11Hsm {
            session,
            objects: RefCell::new(HashMap::new()),
            slot,
            description,
            module,
        })
    }

    /// Loads `path` and opens the token chosen by `selector`.
    pub fn open_path(path: &Path, selector: &TokenSelector) -> Result<Self, HsmError> {
        Self::open(Module::load(path)?, selector)
    }

    /// The module this token belongs to (to open more tokens of the same library).
    pub fn module(&self) -> Arc<Module> {
        Arc::clone(&self.module)
    }

    fn remember(&self, handle: ObjectHandle) -> KeyRef {
        let raw = handle.handle();
        self.objects.borrow_mut().insert(raw, handle);
        KeyRef(raw)
    }

    fn handle(&self, key: KeyRef) -> Result<ObjectHandle, HsmError> {
        self.objects
            .borrow()
            .get(&key.0)
            .copied()
            .ok_or(HsmError::UnknownObject(key))
    }

    fn find_one(
        &self,
        template: &[Attribute],
        label: &str,
        what: &str,
    ) -> Result<ObjectHandle, HsmError> {
        let found = self
            .session
            .find_objects(template)
            .map_err(|e| pkcs11_error("searching objects", e))?;
        match found.as_slice() {
            [one] => Ok(*one),
            [] => Err(HsmError::KeyNotFound {
                label: label.to_string(),
                token: self.description.token_label.clone(),
                detail: format!(
                    "no {what} with that label; create it with `byok audit-key create` (audit key) or `byok custodian enroll` (approval key)"
                ),
            }),
            _ => Err(HsmError::KeyNotFound {
                label: label.to_string(),
                token: self.description.token_label.clone(),
                detail: format!(
                    "{} {what}s share that label; labels must be unique",
                    found.len()
                ),
            }),
        }
    }
}

impl Hsm for Pkcs11Hsm {
    fn description(&self) -> &HsmDescription {
        &self.description
    }

    fn login(&self, pin: &SecretString) -> Result<(), HsmError> {
        let token = self.description.token_label.clone();
        match self.session.login(UserType::User, Some(pin)) {
            Ok(()) => Ok(()),
            // A PIN of a length the token never accepts is as wrong as any other.
            Err(CkError::Pkcs11(RvError::PinIncorrect | RvError::PinLenRange, _)) => {
                Err(HsmError::PinIncorrect { token })
            }
            Err(CkError::Pkcs11(RvError::PinLocked, _)) => Err(HsmError::PinLocked { token }),
            // Answered without checking the PIN: never accept it as a login.
            Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {
                Err(HsmError::AlreadyLoggedIn { token })
            }
            Err(e) => Err(pkcs11_error("logging in", e)),
        }
    }

    fn logout(&self) -> Result<(), HsmError> {
        self.session
            .logout()
            .map_err(|e| pkcs11_error("logging out", e))
    }

    fn mechanism_support(&self, mechanism: WrapMechanism) -> Result<(), String> {
        match self
            .module
            .ctx
            .get_mechanism_info(self.slot, mechanism_type(mechanism))
        {
            Ok(info) if info.wrap() => Ok(()),
            Ok(_) => Err(format!(
                "C_GetMechanismInfo({}) lacks CKF_WRAP",
                mechanism.ck_name()
            )),
            Err(e) => Err(format!(
                "C_GetMechanismInfo({}) returned {}",
                mechanism.ck_name(),
                call_of(&e).rv
            )),
        }
    }

    fn generate_aes256(&self, kind: AesKeyKind) -> Result<KeyRef, HsmError> {
        let sensitive = kind != AesKeyKind::Extractable;
        let wrapping = kind == AesKeyKind::EphemeralWrapping;
        // Always a session object: a kill -9 ends the session and the key with it. Material
        // that must outlive the ceremony is copied to the token only once KMS holds it
        // (`keep_copy`), with every capability but trusted wrapping turned off.
        let template = [
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::ValueLen(32.into()),
            Attribute::Token(false),
            // SoftHSM creates PRIVATE=false keys without a login: always ask for private.
            Attribute::Private(true),
            Attribute::Sensitive(sensitive),
            // Needed for C_WrapKey.
            Attribute::Extractable(true),
            // ENCRYPT for the key check value of the material; an ephemeral key only wraps.
            Attribute::Encrypt(!wrapping),
            Attribute::Decrypt(false),
            Attribute::Wrap(wrapping),
            Attribute::Unwrap(false),
            Attribute::Label(kind.label().as_bytes().to_vec()),
        ];
        let handle = self
            .session
            .generate_key(&Mechanism::AesKeyGen, &template)
            .map_err(|e| pkcs11_error("generating the AES-256 key", e))?;
        Ok(self.remember(handle))
    }

    fn key_length(&self, key: KeyRef) -> Result<usize, HsmError> {
        let attrs = self
            .session
            .get_attributes(self.handle(key)?, &[AttributeType::ValueLen])
            .map_err(|e| pkcs11_error("reading the key length", e))?;
        for attr in attrs {
            if let Attribute::ValueLen(len) = attr {
                return usize::try_from(u64::from(len))
                    .map_err(|_| HsmError::ValueUnavailable("CKA_VALUE_LEN out of range".into()));
            }
        }
        Err(HsmError::ValueUnavailable(
            "the key has no CKA_VALUE_LEN".into(),
        ))
    }

    fn key_check_value(&self, key: KeyRef) -> Result<[u8; 3], HsmError> {
        let out = self
            .session
            .encrypt(&Mechanism::AesEcb, self.handle(key)?, &[0u8; 16])
            .map_err(|e| pkcs11_error("computing the key check value", e))?;
        match out.as_slice() {
            [a, b, c, ..] if out.len() == 16 => Ok([*a, *b, *c]),
            _ => Err(HsmError::ValueUnavailable(format!(
                "AES-ECB of one block returned {} bytes",
                out.len()
            ))),
        }
    }

    fn import_rsa_public_key(&self, modulus: &[u8], exponent: &[u8]) -> Result<KeyRef, HsmError> {
        let template = [
            Attribute::Class(ObjectClass::PUBLIC_KEY),
            Attribute::KeyType(KeyType::RSA),
            Attribute::Token(false),
            Attribute::Private(false),
            Attribute::Wrap(true),
            Attribute::Encrypt(false),
            Attribute::Verify(false),
            Attribute::Modulus(modulus.to_vec()),
            Attribute::PublicExponent(exponent.to_vec()),
            Attribute::Label(b"byok-kms-wrapping-key".to_vec()),
        ];
        let handle = self
            .session
            .create_object(&template)
            .map_err(|e| pkcs11_error("importing the wrapping public key", e))?;
        Ok(self.remember(handle))
    }

    fn wrap_rsa_oaep(
        &self,
        wrapping: KeyRef,
        key: KeyRef,
        hash: OaepHash,
    ) -> Result<Vec<u8>, HsmError> {
        let params = match hash {
            OaepHash::Sha1 => PkcsOaepParams::new(
                MechanismType::SHA1,
                PkcsMgfType::MGF1_SHA1,
                PkcsOaepSource::empty(),
            ),
            OaepHash::Sha256 => PkcsOaepParams::new(
                MechanismType::SHA256,
                PkcsMgfType::MGF1_SHA256,
                PkcsOaepSource::empty(),
            ),
        };
        self.session
            .wrap_key(
                &Mechanism::RsaPkcsOaep(params),
                self.handle(wrapping)?,
                self.handle(key)?,
            )
            .map_err(|e| pkcs11_error("wrapping the key with RSA-OAEP", e))
    }

    fn wrap_aes_kwp(
        &self,
        mechanism: WrapMechanism,
        wrapping: KeyRef,
        key: KeyRef,
    ) -> Result<Vec<u8>, HsmError> {
        let mech = match mechanism {
            WrapMechanism::AesKeyWrapPad => Mechanism::AesKeyWrapPad,
            WrapMechanism::AesKeyWrapKwp => Mechanism::VendorDefined(
                VendorDefinedMechanism::new::<()>(mechanism_type(mechanism), None),
            ),
            WrapMechanism::RsaPkcsOaep | WrapMechanism::RsaAesKeyWrap => {
                return Err(HsmError::MechanismNotOffered {
                    mechanism: mechanism.ck_name(),
                    detail: "not an AES key wrap with padding".into(),
                });
            }
        };
        self.session
            .wrap_key(&mech, self.handle(wrapping)?, self.handle(key)?)
            .map_err(|e| pkcs11_error("wrapping the key under the ephemeral AES key", e))
    }

    fn wrap_rsa_aes(
        &self,
        wrapping: KeyRef,
        key: KeyRef,
        hash: OaepHash,
    ) -> Result<Vec<u8>, HsmError> {
        let mechanism = mechanism_type(WrapMechanism::RsaAesKeyWrap);
        let (hash_alg, mgf) = match hash {
            OaepHash::Sha1 => (cryptoki_sys::CKM_SHA_1, cryptoki_sys::CKG_MGF1_SHA1),
            OaepHash::Sha256 => (cryptoki_sys::CKM_SHA256, cryptoki_sys::CKG_MGF1_SHA256),
        };
        let oaep = cryptoki_sys::CK_RSA_PKCS_OAEP_PARAMS {
            hashAlg: hash_alg,
            mgf,
            source: cryptoki_sys::CKZ_DATA_SPECIFIED,
            pSourceData: std::ptr::null_mut(),
            ulSourceDataLen: 0,
        };
        // `oaep` outlives the call below; the token only reads through the pointer.
        let params = cryptoki_sys::CK_RSA_AES_KEY_WRAP_PARAMS {
            ulAESKeyBits: 256,
            pOAEPParams: std::ptr::addr_of!(oaep).cast_mut(),
        };
        let mech = Mechanism::VendorDefined(VendorDefinedMechanism::new(mechanism, Some(&params)));
        self.session
            .wrap_key(&mech, self.handle(wrapping)?, self.handle(key)?)
            .map_err(|e| pkcs11_error("wrapping the key with CKM_RSA_AES_KEY_WRAP", e))
    }

    fn extract_key_value(&self, key: KeyRef) -> Result<KeyMaterial, HsmError> {
        let attrs = self
            .session
            .get_attributes(self.handle(key)?, &[AttributeType::Value])
            .map_err(|e| pkcs11_error("reading the key value for host wrap", e))?;
        let mut result = Err(HsmError::ValueUnavailable(
            "the token returned no CKA_VALUE (is the key sensitive?)".into(),
        ));
        for attr in attrs {
            if let Attribute::Value(mut bytes) = attr {
                result = KeyMaterial::from_slice(&bytes).ok_or_else(|| {
                    HsmError::ValueUnavailable(format!(
                        "CKA_VALUE has {} bytes, expected 32",
                        bytes.len()
                    ))
                });
                bytes.zeroize();
            }
        }
        result
    }

    fn keep_copy(&self, key: KeyRef, label: &str) -> Result<KeyRef, HsmError> {
        if self.label_exists(label)? {
            return Err(HsmError::LabelExists {
                label: label.to_string(),
                token: self.description.token_label.clone(),
            });
        }
        // C_CopyObject cannot set CKA_WRAP_WITH_TRUSTED (SoftHSM 2.6.1 and kryoptic 1.5.4
        // both answer CKR_ATTRIBUTE_READ_ONLY, docs/hsm-compatibility.md), and a copy without
        // it could be wrapped out under any key the user makes. So the material is moved
        // inside the token: wrapped under a throwaway session AES key, then unwrapped into a
        // token object whose template sets every attribute at once. The throwaway key is
        // destroyed before this returns, whatever happens.
        let (mech, mechanism) =
            self.kwp_mechanism("needed to move the kept key into a token object inside the HSM")?;
        let transfer_template = [
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::ValueLen(32.into()),
            Attribute::Token(false),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Encrypt(false),
            Attribute::Decrypt(false),
            Attribute::Wrap(true),
            Attribute::Unwrap(true),
            Attribute::Label(b"byok-keep-transfer".to_vec()),
        ];
        let transfer = self
            .session
            .generate_key(&Mechanism::AesKeyGen, &transfer_template)
            .map_err(|e| pkcs11_error("generating the transfer key for the kept copy", e))?;
        let transfer_ref = self.remember(transfer);
        let result = (|| {
            let mut blob = self.wrap_aes_kwp(mechanism, transfer_ref, key)?;
            let mut template = vec![
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(true),
                Attribute::Label(label.as_bytes().to_vec()),
                Attribute::Encrypt(false),
                Attribute::Decrypt(false),
                Attribute::Sign(false),
                Attribute::Verify(false),
                Attribute::Wrap(false),
                Attribute::Unwrap(false),
                Attribute::Derive(false),
                Attribute::WrapWithTrusted(true),
                Attribute::Modifiable(false),
            ];
            // kryoptic lets the user copy a kept key with CKA_ENCRYPT=true unless it is not
            // copyable; SoftHSM refuses CKA_COPYABLE=false in C_UnwrapKey (and such copies
            // anyway), and leaves a stray object behind when an unwrap fails. So the attribute
            // is first tried on a session object, which vanishes with the session whatever
            // the token leaves behind.
            if self.unwrap_accepts_not_copyable(&mech, transfer, &blob, &template) {
                template.push(Attribute::Copyable(false));
            }
            let unwrapped = self.session.unwrap_key(&mech, transfer, &blob, &template);
            blob.zeroize();
            unwrapped.map_err(|e| pkcs11_error("unwrapping the kept copy into a token object", e))
        })();
        let destroyed = self.destroy(transfer_ref);
        let handle = result?;
        destroyed?;
        Ok(self.remember(handle))
    }

    fn login_so(&self, pin: &SecretString) -> Result<(), HsmError> {
        let token = self.description.token_label.clone();
        match self.session.login(UserType::So, Some(pin)) {
            Ok(()) => Ok(()),
            Err(CkError::Pkcs11(RvError::PinIncorrect | RvError::PinLenRange, _)) => {
                Err(HsmError::SoPinIncorrect { token })
            }
            Err(CkError::Pkcs11(RvError::PinLocked, _)) => Err(HsmError::PinLocked { token }),
            // Answered without checking the PIN: never accept it as a login.
            Err(CkError::Pkcs11(
                RvError::UserAlreadyLoggedIn | RvError::UserAnotherAlreadyLoggedIn,
                _,
            )) => Err(HsmError::AlreadyLoggedIn { token }),
            Err(e) => Err(pkcs11_error("logging in as Security Officer", e)),
        }
    }

    fn generate_trusted_transfer_key(&self) -> Result<KeyRef, HsmError> {
        // PRIVATE false: C_Logout destroys the private session objects of the application,
        // and the SO can make public objects only. A session object: it dies with the session.
        let template = [
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::ValueLen(32.into()),
            Attribute::Token(false),
            Attribute::Private(false),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Trusted(true),
            Attribute::Wrap(true),
            Attribute::Unwrap(true),
            Attribute::Encrypt(false),
            Attribute::Decrypt(false),
            Attribute::Label(TRUSTED_TRANSFER_LABEL.as_bytes().to_vec()),
        ];
        let handle = self
            .session
            .generate_key(&Mechanism::AesKeyGen, &template)
            .map_err(|e| pkcs11_error("generating the trusted transfer key as SO", e))?;
        Ok(self.remember(handle))
    }

    fn find_kept_key(&self, label: &str) -> Result<KeyRef, HsmError> {
        let found = self
            .session
            .find_objects(&[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::Label(label.as_bytes().to_vec()),
            ])
            .map_err(|e| pkcs11_error("searching the kept key", e))?;
        match found.as_slice() {
            [one] => Ok(self.remember(*one)),
            _ => Err(HsmError::KeptKeyNotFound {
                label: label.to_string(),
                token: self.description.token_label.clone(),
                found: found.len(),
            }),
        }
    }

    fn copy_kept_to_session(&self, trusted: KeyRef, kept: KeyRef) -> Result<KeyRef, HsmError> {
        let (mech, _) =
            self.kwp_mechanism("needed to copy the kept key into a session key inside the HSM")?;
        let mut blob = self
            .session
            .wrap_key(&mech, self.handle(trusted)?, self.handle(kept)?)
            .map_err(|e| pkcs11_error("wrapping the kept key under the trusted transfer key", e))?;
        // The template of a generated `AesKeyKind::Sensitive` key (generate_aes256), so that
        // the rest of the ceremony treats the copy like one.
        let template = [
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::Token(false),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(true),
            Attribute::Encrypt(true),
            Attribute::Decrypt(false),
            Attribute::Wrap(false),
            Attribute::Unwrap(false),
            Attribute::Label(AesKeyKind::Sensitive.label().as_bytes().to_vec()),
        ];
        let unwrapped = self
            .session
            .unwrap_key(&mech, self.handle(trusted)?, &blob, &template);
        blob.zeroize();
        let handle =
            unwrapped.map_err(|e| pkcs11_error("unwrapping the kept key into a session key", e))?;
        Ok(self.remember(handle))
    }

    fn key_attributes(&self, key: KeyRef) -> Result<KeyAttributes, HsmError> {
        let asked = [
            AttributeType::Token,
            AttributeType::Private,
            AttributeType::Sensitive,
            AttributeType::Extractable,
            AttributeType::WrapWithTrusted,
            AttributeType::Modifiable,
            AttributeType::Encrypt,
            AttributeType::Decrypt,
            AttributeType::Sign,
            AttributeType::Verify,
            AttributeType::Wrap,
            AttributeType::Unwrap,
            AttributeType::Derive,
        ];
        // CKA_COPYABLE (PKCS#11 2.40) is read separately: a token that predates it answers
        // CKR_ATTRIBUTE_TYPE_INVALID for the whole list otherwise.
        let attrs = self
            .session
            .get_attributes(self.handle(key)?, &asked)
            .map_err(|e| pkcs11_error("reading the key's attributes", e))?;
        let mut out = KeyAttributes::default();
        let mut seen = 0usize;
        for attr in attrs {
            seen += 1;
            match attr {
                Attribute::Token(v) => out.token = v,
                Attribute::Private(v) => out.private = v,
                Attribute::Sensitive(v) => out.sensitive = v,
                Attribute::Extractable(v) => out.extractable = v,
                Attribute::WrapWithTrusted(v) => out.wrap_with_trusted = v,
                Attribute::Modifiable(v) => out.modifiable = v,
                Attribute::Encrypt(v) => out.encrypt = v,
                Attribute::Decrypt(v) => out.decrypt = v,
                Attribute::Sign(v) => out.sign = v,
                Attribute::Verify(v) => out.verify = v,
                Attribute::Wrap(v) => out.wrap = v,
                Attribute::Unwrap(v) => out.unwrap = v,
                Attribute::Derive(v) => out.derive = v,
                _ => seen -= 1,
            }
        }
        if seen != asked.len() {
            return Err(HsmError::ValueUnavailable(format!(
                "the token reported {seen} of the {} attributes asked for",
                asked.len()
            )));
        }
        if let Ok(attrs) = self
            .session
            .get_attributes(self.handle(key)?, &[AttributeType::Copyable])
        {
            for attr in attrs {
                if let Attribute::Copyable(v) = attr {
                    out.copyable = Some(v);
                }
            }
        }
        Ok(out)
    }

    fn destroy(&self, key: KeyRef) -> Result<(), HsmError> {
        let handle = self.handle(key)?;
        self.session
            .destroy_object(handle)
            .map_err(|e| pkcs11_error("destroying an object", e))?;
        self.objects.borrow_mut().remove(&key.0);
        Ok(())
    }

    fn label_exists(&self, label: &str) -> Result<bool, HsmError> {
        let found = self
            .session
            .find_objects(&[Attribute::Label(label.as_bytes().to_vec())])
            .map_err(|e| pkcs11_error("searching objects", e))?;
        Ok(!found.is_empty())
    }

    fn find_ec_key_pair(&self, label: &str) -> Result<(KeyRef, Vec<u8>), HsmError> {
        let private = self.find_one(
            &[
                Attribute::Class(ObjectClass::PRIVATE_KEY),
                Attribute::KeyType(KeyType::EC),
                Attribute::Label(label.as_bytes().to_vec()),
            ],
            label,
            "EC private key",
        )?;
        let public = self.find_one(
            &[
                Attribute::Class(ObjectClass::PUBLIC_KEY),
                Attribute::KeyType(KeyType::EC),
                Attribute::Label(label.as_bytes().to_vec()),
            ],
            label,
            "EC public key",
        )?;
        let spki = self.ec_public_spki(public)?;
        Ok((self.remember(private), spki))
    }

    fn ec_key_pair_usage(&self, label: &str) -> Result<KeyPairUsage, HsmError> {
        let find = |class, what| {
            self.find_one(
                &[
                    Attribute::Class(class),
                    Attribute::KeyType(KeyType::EC),
                    Attribute::Label(label.as_bytes().to_vec()),
                ],
                label,
                what,
            )
        };
        let private = find(ObjectClass::PRIVATE_KEY, "EC private key")?;
        let public = find(ObjectClass::PUBLIC_KEY, "EC public key")?;
        Ok(KeyPairUsage {
            private: self.usage_flags(private, &PRIVATE_USAGE)?,
            public: self.usage_flags(public, &PUBLIC_USAGE)?,
        })
    }

    fn generate_ec_key_pair(&self, label: &str) -> Result<GeneratedKeyPair, HsmError> {
        if self.label_exists(label)? {
            return Err(HsmError::LabelExists {
                label: label.to_string(),
                token: self.description.token_label.clone(),
            });
        }
        let id = self.random(16)?;
        // Every usage attribute is given, not left to the token's defaults (which may allow
        // decrypt, unwrap or derive): an approval or audit key signs, and nothing else. SoftHSM
        // 2.6.1 and kryoptic 1.5 accept the *_RECOVER attributes false for EC keys.
        let public_template = [
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Verify(true),
            Attribute::VerifyRecover(false),
            Attribute::Encrypt(false),
            Attribute::Wrap(false),
            Attribute::Derive(false),
            Attribute::EcParams(crate::ecdsa::P256_EC_PARAMS.to_vec()),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Id(id.clone()),
        ];
        let private_template = [
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            Attribute::SignRecover(false),
            Attribute::Decrypt(false),
            Attribute::Unwrap(false),
            Attribute::Derive(false),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Id(id),
        ];
        let (public, private) = self
            .session
            .generate_key_pair(
                &Mechanism::EccKeyPairGen,
                &public_template,
                &private_template,
            )
            .map_err(|e| pkcs11_error("generating the EC P-256 key pair", e))?;
        let checked = (|| -> Result<(KeyPairUsage, Vec<u8>), HsmError> {
            let usage = KeyPairUsage {
                private: self.usage_flags(private, &PRIVATE_USAGE)?,
                public: self.usage_flags(public, &PUBLIC_USAGE)?,
            };
            Ok((usage, self.ec_public_spki(public)?))
        })();
        let refused = match checked {
            Ok((usage, spki)) if usage.is_sign_only() => {
                return Ok(GeneratedKeyPair { spki, usage });
            }
            Ok((usage, _)) => Ok(usage),
            Err(e) => Err(e),
        };
        // Never leave behind a pair that byok does not vouch for; try both halves.
        let destroyed: Vec<Result<(), CkError>> = [private, public]
            .into_iter()
            .map(|h| self.session.destroy_object(h))
            .collect();
        let usage = refused?;
        Err(HsmError::KeyPairNotSignOnly {
            label: label.to_string(),
            token: self.description.token_label.clone(),
            usage,
            cleanup: match destroyed.into_iter().find_map(Result::err) {
                None => "byok destroyed the pair".into(),
                Some(e) => format!(
                    "byok could not destroy the pair ({}): delete the objects labelled {label:?} before another attempt",
                    call_of(&e)
                ),
            },
        })
    }

    fn sign_digest(&self, key: KeyRef, digest: &[u8; 32]) -> Result<Vec<u8>, HsmError> {
        let raw = self
            .session
            .sign(&Mechanism::Ecdsa, self.handle(key)?, digest)
            .map_err(|e| pkcs11_error("signing with ECDSA", e))?;
        Ok(crate::ecdsa::raw_signature_to_der(&raw)?)
    }

    fn random(&self, len: usize) -> Result<Vec<u8>, HsmError> {
        let len =
            u32::try_from(len).map_err(|_| HsmError::ValueUnavailable("random length".into()))?;
        self.session
            .generate_random_vec(len)
            .map_err(|e| pkcs11_error("generating random bytes", e))
    }

    fn raw_handle(&self, key: KeyRef) -> u64 {
        key.0
    }
}

/// Custodians' tokens: through the HSM's own module, or through a custodian's own module.
pub struct Pkcs11Custodians {
    hsm_module: Arc<Module>,
    hsm_serial: String,
    /// Custodians' own modules, by `module`/`module_env` as the ceremony file gives them.
    own: Vec<(ModuleSource, Arc<Module>)>,
}

impl Pkcs11Custodians {
    /// Custodian tokens reached through `hsm`'s module; `hsm`'s own token is refused.
    pub fn for_hsm(hsm: &Pkcs11Hsm) -> Self {
        Pkcs11Custodians {
            hsm_module: hsm.module(),
            hsm_serial: hsm.description.token_serial.clone(),
            own: Vec::new(),
        }
    }

    /// Adds the module that custodians naming `source` use. Load it through the same
    /// [`Modules`] as the HSM's, so that a path shared with the HSM shares its module (and the
    /// HSM's token is recognised there).
    pub fn with_module(mut self, source: ModuleSource, module: Arc<Module>) -> Self {
        match self.own.iter_mut().find(|(s, _)| *s == source) {
            Some(entry) => entry.1 = module,
            None => self.own.push((source, module)),
        }
        self
    }
}

impl CustodianTokens for Pkcs11Custodians {
    fn sign_approval(
        &self,
        module: Option<&ModuleSource>,
        token: &TokenSelector,
        key_label: &str,
        pin: &SecretString,
        message: &[u8],
    ) -> Result<ApprovalSignature, HsmError> {
        let module = match module {
            None => &self.hsm_module,
            Some(source) => self
                .own
                .iter()
                .find(|(s, _)| s == source)
                .map(|(_, m)| m)
                .ok_or_else(|| HsmError::CustodianModuleNotLoaded {
                    module: source.to_string(),
                })?,
        };
        let hsm = Pkcs11Hsm::open(Arc::clone(module), token)?;
        // A serial names a token within one module: the same serial elsewhere is another token.
        if Arc::ptr_eq(module, &self.hsm_module) && hsm.description.token_serial == self.hsm_serial
        {
            return Err(HsmError::CustodianOnHsmToken {
                token: hsm.description.token_label.clone(),
                serial: hsm.description.token_serial.clone(),
            });
        }
        match hsm.login(pin) {
            // Another session holds a login the token would not re-check: end it, then log
            // in again so that this PIN is checked.
            Err(HsmError::AlreadyLoggedIn { .. }) => {
                hsm.logout()?;
                hsm.login(pin)?;
            }
            other => other?,
        }
        let signed = (|| {
            let (key, spki) = hsm.find_ec_key_pair(key_label)?;
            let digest: [u8; 32] =
                sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(message))
                    .into();
            let signature = hsm.sign_digest(key, &digest)?;
            Ok(ApprovalSignature { spki, signature })
        })();
        let _ = hsm.logout();
        signed
    }
}

/// The attributes of [`KeyPairUsage::private`], in its order.
const PRIVATE_USAGE: [AttributeType; 5] = [
    AttributeType::Sign,
    AttributeType::SignRecover,
    AttributeType::Decrypt,
    AttributeType::Unwrap,
    AttributeType::Derive,
];

/// The attributes of [`KeyPairUsage::public`], in its order.
const PUBLIC_USAGE: [AttributeType; 5] = [
    AttributeType::Verify,
    AttributeType::VerifyRecover,
    AttributeType::Encrypt,
    AttributeType::Wrap,
    AttributeType::Derive,
];

/// The label of the Security Officer's trusted transfer key (a reimport's session object).
pub const TRUSTED_TRANSFER_LABEL: &str = "byok-trusted-transfer";

impl Pkcs11Hsm {
    /// The RFC 5649 AES key wrap the token offers (`CKM_AES_KEY_WRAP_KWP`, else
    /// `CKM_AES_KEY_WRAP_PAD`), for moving a key inside the token; `why` says what for.
    fn kwp_mechanism(&self, why: &str) -> Result<(Mechanism<'static>, WrapMechanism), HsmError> {
        let mechanism = [WrapMechanism::AesKeyWrapKwp, WrapMechanism::AesKeyWrapPad]
            .into_iter()
            .find(|m| self.mechanism_support(*m).is_ok())
            .ok_or_else(|| HsmError::MechanismNotOffered {
                mechanism: "CKM_AES_KEY_WRAP_KWP or CKM_AES_KEY_WRAP_PAD",
                detail: why.to_string(),
            })?;
        let mech = match mechanism {
            WrapMechanism::AesKeyWrapPad => Mechanism::AesKeyWrapPad,
            _ => Mechanism::VendorDefined(VendorDefinedMechanism::new::<()>(
                mechanism_type(mechanism),
                None,
            )),
        };
        Ok((mech, mechanism))
    }

    /// The boolean attributes `asked` of `object`, in order; `None` for one the token does not
    /// report.
    fn usage_flags(
        &self,
        object: ObjectHandle,
        asked: &[AttributeType; 5],
    ) -> Result<[Option<bool>; 5], HsmError> {
        let attrs = self
            .session
            .get_attributes(object, asked)
            .map_err(|e| pkcs11_error("reading the key pair's usage attributes", e))?;
        let mut out = [None; 5];
        for attr in attrs {
            let (kind, value) = match attr {
                Attribute::Sign(v) => (AttributeType::Sign, v),
                Attribute::SignRecover(v) => (AttributeType::SignRecover, v),
                Attribute::Decrypt(v) => (AttributeType::Decrypt, v),
                Attribute::Unwrap(v) => (AttributeType::Unwrap, v),
                Attribute::Derive(v) => (AttributeType::Derive, v),
                Attribute::Verify(v) => (AttributeType::Verify, v),
                Attribute::VerifyRecover(v) => (AttributeType::VerifyRecover, v),
                Attribute::Encrypt(v) => (AttributeType::Encrypt, v),
                Attribute::Wrap(v) => (AttributeType::Wrap, v),
                _ => continue,
            };
            if let Some(i) = asked.iter().position(|a| *a == kind) {
                out[i] = Some(value);
            }
        }
        Ok(out)
    }

    /// Whether the token takes `CKA_COPYABLE=false` in a `C_UnwrapKey` template, tried on a
    /// session object (destroyed at once) so that nothing can be left on the token.
    fn unwrap_accepts_not_copyable(
        &self,
        mech: &Mechanism,
        transfer: ObjectHandle,
        blob: &[u8],
        template: &[Attribute],
    ) -> bool {
        let mut probe: Vec<Attribute> = template
            .iter()
            .filter(|a| !matches!(a, Attribute::Token(_) | Attribute::Label(_)))
            .cloned()
            .collect();
        probe.push(Attribute::Token(false));
        probe.push(Attribute::Copyable(false));
        match self.session.unwrap_key(mech, transfer, blob, &probe) {
            Ok(handle) => {
                let _ = self.session.destroy_object(handle);
                true
            }
            Err(_) => false,
        }
    }

    fn ec_public_spki(&self, public: ObjectHandle) -> Result<Vec<u8>, HsmError> {
        let attrs = self
            .session
            .get_attributes(public, &[AttributeType::EcPoint])
            .map_err(|e| pkcs11_error("reading the EC public key", e))?;
        for attr in attrs {
            if let Attribute::EcPoint(point) = attr {
                return Ok(crate::ecdsa::spki_from_ec_point(&point)?);
            }
        }
        Err(HsmError::ValueUnavailable(
            "the public key has no CKA_EC_POINT".into(),
        ))
    }
}

// `mechanism_type` relies on this layout.
const _: () = assert!(
    std::mem::size_of::<MechanismType>() == std::mem::size_of::<cryptoki_sys::CK_MECHANISM_TYPE>()
);

/// cryptoki's `MechanismType` for a wrapping mechanism.
///
/// cryptoki 0.12 has no constant for the standard `CKM_AES_KEY_WRAP_KWP` (0x210B) and
/// `CKM_RSA_AES_KEY_WRAP` (0x1054), refuses values below `CKM_VENDOR_DEFINED` in
/// `new_vendor_defined`, and drops mechanisms it does not know from `get_mechanism_list`.
#[allow(
    unsafe_code,
    reason = "the only way to name a mechanism cryptoki 0.12 has no constant for"
)]
fn mechanism_type(mechanism: WrapMechanism) -> MechanismType {
    match mechanism {
        WrapMechanism::RsaPkcsOaep => MechanismType::RSA_PKCS_OAEP,
        WrapMechanism::AesKeyWrapPad => MechanismType::AES_KEY_WRAP_PAD,
        WrapMechanism::AesKeyWrapKwp | WrapMechanism::RsaAesKeyWrap => {
            // SAFETY: `MechanismType` is `#[repr(transparent)]` over `CK_MECHANISM_TYPE`
            // (cryptoki 0.12 `mechanism/mod.rs`, so that `Vec<MechanismType>` and
            // `Vec<CK_MECHANISM_TYPE>` share a layout; the size is asserted above) and has no
            // invariant beyond holding a mechanism number. The token itself answers
            // CKR_MECHANISM_INVALID for a number it does not implement.
            unsafe {
                std::mem::transmute::<cryptoki_sys::CK_MECHANISM_TYPE, MechanismType>(
                    mechanism.code(),
                )
            }
        }
    }
}

/// Wraps a cryptoki error with what byok was doing.
fn pkcs11_error(doing: &'static str, e: CkError) -> HsmError {
    HsmError::Pkcs11 {
        doing,
        call: call_of(&e),
    }
}

/// `C_Function` and `CKR_NAME` of a cryptoki error.
fn call_of(e: &CkError) -> Pkcs11Call {
    match e {
        CkError::Pkcs11(rv, function) => Pkcs11Call {
            function: function_name(*function),
            rv: rv_name(*rv),
        },
        other => Pkcs11Call {
            function: "cryptoki".into(),
            rv: other.to_string(),
        },
    }
}

fn function_name(f: Function) -> String {
    format!("C_{f:?}")
}

/// `ArgumentsBad` → `CKR_ARGUMENTS_BAD`.
fn rv_name(rv: RvError) -> String {
    let camel = format!("{rv:?}");
    let mut out = String::from("CKR_");
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapping_mechanisms_carry_their_pkcs11_numbers() {
        for m in [
            WrapMechanism::RsaPkcsOaep,
            WrapMechanism::RsaAesKeyWrap,
            WrapMechanism::AesKeyWrapKwp,
            WrapMechanism::AesKeyWrapPad,
        ] {
            assert_eq!(
                cryptoki_sys::CK_MECHANISM_TYPE::from(mechanism_type(m)),
                m.code(),
                "{}",
                m.ck_name()
            );
        }
        assert_eq!(
            WrapMechanism::AesKeyWrapKwp.code(),
            cryptoki_sys::CKM_AES_KEY_WRAP_KWP
        );
        assert_eq!(
            WrapMechanism::RsaAesKeyWrap.code(),
            cryptoki_sys::CKM_RSA_AES_KEY_WRAP
        );
        assert_eq!(
            WrapMechanism::AesKeyWrapPad.code(),
            cryptoki_sys::CKM_AES_KEY_WRAP_PAD
        );
        assert_eq!(
            WrapMechanism::RsaPkcsOaep.code(),
            cryptoki_sys::CKM_RSA_PKCS_OAEP
        );
    }

    #[test]
    fn return_values_are_named_like_the_spec() {
        assert_eq!(rv_name(RvError::ArgumentsBad), "CKR_ARGUMENTS_BAD");
        assert_eq!(rv_name(RvError::PinIncorrect), "CKR_PIN_INCORRECT");
        assert_eq!(rv_name(RvError::MechanismInvalid), "CKR_MECHANISM_INVALID");
        assert_eq!(function_name(Function::WrapKey), "C_WrapKey");
    }
}
