//! What the token itself says about the key a ceremony generates, read with cryptoki directly
//! (not through byok) while the ceremony runs, compared with what byok recorded: the key is a
//! sensitive session object whose value cannot be read, and its key check value, computed here
//! with the token's own AES-ECB, is the one in the transcript.
//!
//! The ceremony runs in-process against the token under test and LocalStack behind a KMS double
//! that, at ImportKeyMaterial (while the generated key still exists), opens its own session on
//! the token and reads the key. Each test loads the PKCS#11 module in its own process
//! (cargo-nextest).

use std::sync::Mutex;

use byok::kms::{AwsKms, Expiration, ImportToken, ImportType, Kms, KmsError};
use byok::prompt::Answer;

use crate::common::{SoftHsm, TestKms, approve_answers, ceremony_for, run_in_process};

/// The generated key as the token reports it.
#[derive(Debug)]
struct OnToken {
    sensitive: bool,
    extractable: bool,
    token: bool,
    private: bool,
    /// `CKA_VALUE` came back with bytes in it.
    value_readable: bool,
    /// First 3 bytes of the token's AES-ECB encryption of a zero block, hex.
    kcv: String,
}

/// Reads the key labelled `label` on `byok-hsm` through a second cryptoki context of the module
/// byok already loaded and initialised in this process: no `C_Initialize` (it would fail) and
/// no `C_Finalize` (byok still uses the module). Login state is per token and process, so this
/// session sees byok's private session objects.
fn read_key(module: &str, label: &str) -> OnToken {
    use cryptoki::context::Pkcs11;
    use cryptoki::mechanism::Mechanism;
    use cryptoki::object::{Attribute, AttributeType, ObjectClass};
    let ctx = Pkcs11::new(module).expect("load module");
    let slot = ctx
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| ctx.get_token_info(*s).unwrap().label().trim_end() == "byok-hsm")
        .expect("byok-hsm slot");
    let session = ctx.open_ro_session(slot).unwrap();
    let found = session
        .find_objects(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::Label(label.as_bytes().to_vec()),
        ])
        .unwrap();
    assert_eq!(
        found.len(),
        1,
        "one key labelled {label:?} during the import"
    );
    let key = found[0];
    let attrs = session
        .get_attributes(
            key,
            &[
                AttributeType::Sensitive,
                AttributeType::Extractable,
                AttributeType::Token,
                AttributeType::Private,
            ],
        )
        .unwrap();
    let flag = |want: AttributeType| {
        attrs
            .iter()
            .find_map(|a| match (a, want) {
                (Attribute::Sensitive(v), AttributeType::Sensitive)
                | (Attribute::Extractable(v), AttributeType::Extractable)
                | (Attribute::Token(v), AttributeType::Token)
                | (Attribute::Private(v), AttributeType::Private) => Some(*v),
                _ => None,
            })
            .expect("attribute reported")
    };
    // A sensitive key's CKA_VALUE is refused (CKR_ATTRIBUTE_SENSITIVE) or comes back empty.
    let value_readable = match session.get_attributes(key, &[AttributeType::Value]) {
        Ok(values) => values
            .iter()
            .any(|a| matches!(a, Attribute::Value(v) if !v.is_empty())),
        Err(_) => false,
    };
    let block = session
        .encrypt(&Mechanism::AesEcb, key, &[0u8; 16])
        .unwrap();
    OnToken {
        sensitive: flag(AttributeType::Sensitive),
        extractable: flag(AttributeType::Extractable),
        token: flag(AttributeType::Token),
        private: flag(AttributeType::Private),
        value_readable,
        kcv: hex::encode(&block[..3]),
    }
}

/// LocalStack, with a look at the token before each ImportKeyMaterial.
struct Inspect {
    real: AwsKms,
    module: String,
    label: &'static str,
    seen: Mutex<Vec<OnToken>>,
}

impl Kms for Inspect {
    crate::common::forward_kms!(
        describe_key,
        create_key,
        create_alias,
        update_alias,
        list_resource_tags,
        find_tagged_keys,
        list_key_materials,
        get_parameters_for_import,
        rotate_key_on_demand,
        encrypt,
        decrypt,
        whereabouts
    );
    fn import_key_material(
        &self,
        key_arn: &str,
        token: &ImportToken,
        blob: &[u8],
        e: Expiration,
        t: ImportType,
        d: Option<&str>,
    ) -> Result<Option<String>, KmsError> {
        let on_token = read_key(&self.module, self.label);
        self.seen.lock().unwrap().push(on_token);
        self.real.import_key_material(key_arn, token, blob, e, t, d)
    }
}

#[test]
fn the_generated_key_is_what_the_token_says_and_its_kcv_is_the_tokens() {
    let token = SoftHsm::new();
    let kms = TestKms::new();
    let (arn, alias) = kms.external_key();
    let file = ceremony_for(&token, "demo-softhsm.toml", &alias, &[]);
    let t = token.path("t.jsonl");
    let inspect = Inspect {
        real: AwsKms::new("us-east-1").unwrap(),
        module: token.kind.module(),
        label: "byok-ceremony-key",
        seen: Mutex::new(Vec::new()),
    };
    let mut answers = vec![Answer::Secret("hsm-pin", token.pin.clone())];
    answers.extend(approve_answers(&token, "plan", &["Alice", "Bob"]));
    answers.extend(approve_answers(&token, "import", &["Alice", "Carol"]));
    let (result, said, recs) = run_in_process(&token, &file, &t, &inspect, answers);
    assert!(result.is_ok(), "{result:?}\n{}", said.join("\n"));
    assert_eq!(kms.state(&arn), "Enabled");

    let seen = inspect.seen.into_inner().unwrap();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let key = &seen[0];
    // A session object, private and sensitive: its value cannot be read out of the token...
    assert!(key.sensitive, "{key:?}");
    assert!(!key.token && key.private, "{key:?}");
    assert!(
        !key.value_readable,
        "the token returned the key's value: {key:?}"
    );
    // ...and extractable only because C_WrapKey needs CKA_EXTRACTABLE (wrapping, not reading).
    assert!(key.extractable, "{key:?}");

    let generated = &recs.iter().find(|r| r["type"] == "key_generated").unwrap()["data"];
    assert_eq!(generated["sensitive"], key.sensitive);
    assert_eq!(generated["token_object"], key.token);
    // The transcript's KCV is the token's own AES-ECB of a zero block, computed here.
    assert_eq!(generated["kcv"], key.kcv.as_str());
    let finished = &recs.last().unwrap();
    assert_eq!(finished["type"], "ceremony_finished");
    assert_eq!(finished["data"]["targets"][0]["kcv"], key.kcv.as_str());
}
