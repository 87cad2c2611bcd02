//! Ceremony file validation: a table of bad files and the exact messages they give, and every
//! file in `ceremonies/` passing `byok check`.

use std::path::Path;

use time::OffsetDateTime;
use time::macros::datetime;

use crate::common::{assert_contains, byok, stderr, stdout};

const NOW: OffsetDateTime = datetime!(2026-11-23 12:00:00 UTC);

const BASE: &str = r#"[ceremony]
id = "c-1"
description = "test"
operator = "Alice"

[hsm]
module = "/usr/lib/softhsm/libsofthsm2.so"
token_label = "byok-hsm"
audit_key_label = "byok-audit"
audit_key_sha256 = "f914dd8288413ccf4bbb17aa45b26f14901406e6c0ca393b664e6b151055fad0"

[kms]
region = "us-east-1"
key = "alias/byok-demo"

[import]
wrapping_algorithm = "RSAES_OAEP_SHA_256"
wrapping_key_spec = "RSA_4096"
wrap = "hsm"
expiration = "KEY_MATERIAL_DOES_NOT_EXPIRE"

[dual_control]
quorum = 2

[[custodian]]
name = "Alice"
token_label = "cust-alice"
key_label = "byok-approval"
public_key_sha256 = "1111111111111111111111111111111111111111111111111111111111111111"

[[custodian]]
name = "Bob"
token_label = "cust-bob"
key_label = "byok-approval"
public_key_sha256 = "2222222222222222222222222222222222222222222222222222222222222222"
"#;

fn problems(text: &str) -> String {
    match byok::spec::parse(Path::new("c.toml"), text, NOW) {
        Ok(_) => "valid".into(),
        Err(e) => e.to_string(),
    }
}

fn one(message: &str) -> String {
    format!(
        "ceremony file c.toml is invalid (1 problem); fix it and run `byok check` again:\n  {message}"
    )
}

#[test]
fn the_base_file_is_valid_and_defaults_apply() {
    assert_eq!(problems(BASE), "valid");
    let minimal = BASE
        .replace("wrapping_algorithm = \"RSAES_OAEP_SHA_256\"\n", "")
        .replace("wrapping_key_spec = \"RSA_4096\"\n", "")
        .replace("wrap = \"hsm\"\n", "");
    let c = byok::spec::parse(Path::new("c.toml"), &minimal, NOW).unwrap();
    assert_eq!(
        c.import.algorithm,
        byok::wrap::WrappingAlgorithm::RsaesOaepSha256
    );
    assert_eq!(c.import.key_spec, byok::wrap::WrappingKeySpec::Rsa4096);
    assert_eq!(c.import.wrap, byok::wrap::WrapLocation::Hsm);
    match &c.dual_control {
        byok::spec::DualControl::Quorum { quorum, custodians } => {
            assert_eq!(*quorum, 2);
            assert_eq!(custodians.len(), 2);
            assert_eq!(custodians[1].name, "Bob");
        }
        other => panic!("expected a quorum, found {other:?}"),
    }
    let rehearsal = BASE.replace("quorum = 2", "enabled = false");
    let c = byok::spec::parse(Path::new("c.toml"), &rehearsal, NOW).unwrap();
    assert_eq!(c.dual_control, byok::spec::DualControl::Off);
}

#[test]
fn every_algorithm_and_key_spec_is_accepted_at_both_locations() {
    use byok::wrap::{WrapLocation, WrappingAlgorithm, WrappingKeySpec};
    for algorithm in WrappingAlgorithm::ALL {
        for spec in WrappingKeySpec::ALL {
            for location in [WrapLocation::Hsm, WrapLocation::Host] {
                let text = BASE
                    .replace("RSAES_OAEP_SHA_256", algorithm.kms_name())
                    .replace("RSA_4096", spec.kms_name())
                    .replace("wrap = \"hsm\"", &format!("wrap = \"{}\"", location.name()));
                let c = byok::spec::parse(Path::new("c.toml"), &text, NOW)
                    .unwrap_or_else(|e| panic!("{algorithm} {spec} {location:?}: {e}"));
                assert_eq!(c.import.algorithm, algorithm);
                assert_eq!(c.import.key_spec, spec);
                assert_eq!(c.import.wrap, location);
            }
        }
    }
}

#[test]
fn kinds_rotation_and_valid_for_are_checked() {
    let with = |from: &str, to: &str| problems(&BASE.replace(from, to));
    let kind = |k: &str| {
        with(
            "operator = \"Alice\"",
            &format!("operator = \"Alice\"\nkind = {k}"),
        )
    };
    assert_eq!(kind("\"import\""), "valid");
    assert_eq!(kind("\"rotate\""), "valid");
    assert_contains(
        &kind("\"rollback\""),
        "source: missing: a rollback needs [source] with transcript",
    );
    // A reimport needs the [source] it builds on.
    assert_contains(
        &kind("\"reimport\""),
        "source: missing: kind = \"reimport\" needs [source] with transcript = \"PATH\"",
    );
    assert_contains(
        &kind("\"shred\""),
        "ceremony.kind: expected \"import\", \"rotate\", \"rollback\" or \"reimport\", found \"shred\"",
    );
    // The description sent is the file's text and the ceremony id, in KMS's character set.
    let rotate = BASE.replace(
        "operator = \"Alice\"",
        "operator = \"Alice\"\nkind = \"rotate\"",
    );
    let c = byok::spec::parse(
        Path::new("c.toml"),
        &format!("{rotate}\n[rotation]\nkey_material_description = \"yearly 2027\"\n"),
        NOW,
    )
    .unwrap();
    assert_eq!(
        c.import.kind,
        byok::spec::Kind::Rotate {
            key_material_description: "yearly 2027 ceremony c-1".into()
        }
    );
    assert_contains(
        &problems(&format!(
            "{rotate}\n[rotation]\nkey_material_description = \"yearly (2027)\"\n"
        )),
        "rotation.key_material_description: with the ceremony id appended (\"yearly (2027) ceremony c-1\") it contains '('; KMS takes only A-Z a-z 0-9 : / _ . - and spaces",
    );
    assert_contains(
        &problems(&format!(
            "{rotate}\n[rotation]\nstrategy = \"alias-swap\"\n"
        )),
        "kms.key: target 0 (alias/byok-demo): strategy = \"alias-swap\" needs previous_key, the ARN of the key the alias names now",
    );
    assert_contains(
        &problems(&format!(
            "{BASE}\n[rotation]\nstrategy = \"new-material\"\n"
        )),
        "rotation: is for kind = \"rotate\"",
    );
    // valid_for: N days from now, at most 365.
    let expires = |v: &str| {
        BASE.replace(
            "expiration = \"KEY_MATERIAL_DOES_NOT_EXPIRE\"",
            &format!("expiration = \"KEY_MATERIAL_EXPIRES\"\n{v}"),
        )
    };
    let c = byok::spec::parse(Path::new("c.toml"), &expires("valid_for = \"365d\""), NOW).unwrap();
    assert_eq!(
        c.import.expiration.valid_to(),
        Some(NOW + time::Duration::days(365))
    );
    assert_contains(
        &problems(&expires("valid_for = \"366d\"")),
        "import.valid_for: expected a number of days from 1 to 365 followed by d, e.g. \"365d\", found \"366d\"",
    );
    assert_contains(
        &problems(&expires(
            "valid_for = \"30d\"\nvalid_to = 2027-01-01T00:00:00Z",
        )),
        "import.valid_for: give either valid_to (a date) or valid_for (a number of days), not both",
    );
}

#[test]
fn validation_table_gives_exact_messages() {
    let cases: Vec<(&str, String, String)> = vec![
        (
            "unknown field",
            BASE.replace(
                "operator = \"Alice\"",
                "operator = \"Alice\"\ncolour = \"red\"",
            ),
            one(
                "c.toml:5: ceremony.colour: unknown field `colour`, expected one of `id`, `kind`, `description`, `operator`",
            ),
        ),
        (
            "a PIN in the file",
            BASE.replace(
                "token_label = \"byok-hsm\"",
                "token_label = \"byok-hsm\"\nuser_pin = \"1234\"",
            ),
            one(
                "c.toml:9: hsm.user_pin: unknown field `user_pin`: a ceremony file never holds a PIN; byok asks for PINs when it needs them",
            ),
        ),
        (
            "wrong type",
            BASE.replace("region = \"us-east-1\"", "region = 5"),
            one("c.toml:13: kms.region: invalid type: integer `5`, expected a string"),
        ),
        (
            "missing section field",
            BASE.replace("operator = \"Alice\"\n", ""),
            one("c.toml:1: ceremony: missing field `operator`"),
        ),
        (
            "unsupported algorithm",
            BASE.replace("RSAES_OAEP_SHA_256", "RSAES_PKCS1_V1_5"),
            one(
                "c.toml:17: import.wrapping_algorithm: RSAES_PKCS1_V1_5 is no longer accepted by AWS KMS; use RSAES_OAEP_SHA_256, RSAES_OAEP_SHA_1, RSA_AES_KEY_WRAP_SHA_256 or RSA_AES_KEY_WRAP_SHA_1",
            ),
        ),
        (
            "SM2PKE is refused",
            BASE.replace("RSAES_OAEP_SHA_256", "SM2PKE"),
            one(
                "c.toml:17: import.wrapping_algorithm: SM2PKE (China regions) is not supported by byok; use RSAES_OAEP_SHA_256, RSAES_OAEP_SHA_1, RSA_AES_KEY_WRAP_SHA_256 or RSA_AES_KEY_WRAP_SHA_1",
            ),
        ),
        (
            "bad key spec",
            BASE.replace("RSA_4096", "RSA_1024"),
            one(
                "c.toml:18: import.wrapping_key_spec: expected RSA_2048, RSA_3072 or RSA_4096, found \"RSA_1024\"",
            ),
        ),
        (
            "bad wrap location",
            BASE.replace("wrap = \"hsm\"", "wrap = \"cloud\""),
            one("c.toml:19: import.wrap: expected \"hsm\" or \"host\", found \"cloud\""),
        ),
        (
            "valid_to more than 365 days ahead",
            BASE.replace(
                "expiration = \"KEY_MATERIAL_DOES_NOT_EXPIRE\"",
                "expiration = \"KEY_MATERIAL_EXPIRES\"\nvalid_to = 2027-11-24T12:00:00Z",
            ),
            one(
                "c.toml:21: import.valid_to: 2027-11-24T12:00:00.000Z is more than 365 days ahead, which KMS refuses; choose an earlier time",
            ),
        ),
        (
            "valid_to in the past",
            BASE.replace(
                "expiration = \"KEY_MATERIAL_DOES_NOT_EXPIRE\"",
                "expiration = \"KEY_MATERIAL_EXPIRES\"\nvalid_to = 2026-11-01T00:00:00Z",
            ),
            one(
                "c.toml:21: import.valid_to: 2026-11-01T00:00:00.000Z is in the past; choose a time after now and at most 365 days ahead",
            ),
        ),
        (
            "valid_to missing",
            BASE.replace("KEY_MATERIAL_DOES_NOT_EXPIRE", "KEY_MATERIAL_EXPIRES"),
            one(
                "c.toml:16: import.valid_to: missing: KEY_MATERIAL_EXPIRES needs valid_to, e.g. valid_to = 2027-06-30T00:00:00Z, or valid_for = \"365d\"",
            ),
        ),
        (
            "valid_to without an offset",
            BASE.replace(
                "expiration = \"KEY_MATERIAL_DOES_NOT_EXPIRE\"",
                "expiration = \"KEY_MATERIAL_EXPIRES\"\nvalid_to = 2027-01-01T00:00:00",
            ),
            one(
                "c.toml:21: import.valid_to: expected a date-time with a UTC offset, e.g. 2027-06-30T00:00:00Z, found 2027-01-01T00:00:00",
            ),
        ),
        (
            "bad fingerprint",
            BASE.replace(
                "f914dd8288413ccf4bbb17aa45b26f14901406e6c0ca393b664e6b151055fad0",
                "abc",
            ),
            one(
                "c.toml:10: hsm.audit_key_sha256: expected 64 hex digits (the SHA-256 printed by `byok audit-key create`), found \"abc\"",
            ),
        ),
        (
            "module and module_env",
            BASE.replacen("token_label", "module_env = \"X\"\ntoken_label", 1),
            one("c.toml:7: hsm.module: give either module or module_env, not both"),
        ),
        (
            "bad key reference",
            BASE.replace("alias/byok-demo", "byok-demo"),
            one(
                "c.toml:14: kms.key: expected a key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID), a key id or alias/NAME, found \"byok-demo\"",
            ),
        ),
        (
            "ARN in another region",
            BASE.replace(
                "alias/byok-demo",
                "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            ),
            one(
                "c.toml:14: kms.key: the ARN is in region eu-west-1, but kms.region is us-east-1; make them agree",
            ),
        ),
        (
            "a misspelt field that merely contains the letters pin",
            BASE.replace("wrap = \"hsm\"", "wrap = \"hsm\"\nshipping = 1"),
            one(
                "c.toml:20: import.shipping: unknown field `shipping`, expected one of `wrapping_algorithm`, `wrapping_key_spec`, `wrap`, `expiration`, `valid_to`, `valid_for`",
            ),
        ),
        (
            "quorum of one",
            BASE.replace("quorum = 2", "quorum = 1"),
            one(
                "c.toml:23: dual_control.quorum: expected 2 ≤ quorum ≤ the number of custodians (2), found 1",
            ),
        ),
        (
            "quorum larger than the custodians",
            BASE.replace("quorum = 2", "quorum = 3"),
            one(
                "c.toml:23: dual_control.quorum: expected 2 ≤ quorum ≤ the number of custodians (2), found 3",
            ),
        ),
        (
            "no quorum and not a rehearsal",
            BASE.replace("quorum = 2", ""),
            one(
                "c.toml:22: dual_control.quorum: missing: set quorum = M (at least 2 custodians must approve), or enabled = false for a rehearsal",
            ),
        ),
        (
            "the same custodian name twice",
            BASE.replace("name = \"Bob\"", "name = \"Alice\""),
            one("c.toml:32: custodian[1].name: \"Alice\" is listed twice; each custodian once"),
        ),
        (
            "the same approval key twice",
            BASE.replace(
                "2222222222222222222222222222222222222222222222222222222222222222",
                "1111111111111111111111111111111111111111111111111111111111111111",
            ),
            one(
                "c.toml:35: custodian[1].public_key_sha256: the same approval key is listed for two custodians; each needs their own key",
            ),
        ),
        (
            "a custodian on the HSM token",
            BASE.replace("token_label = \"cust-bob\"", "token_label = \"byok-hsm\""),
            one(
                "c.toml:33: custodian[1].token_label: is the ceremony's HSM token; approvals must be made on the custodian's own token",
            ),
        ),
        (
            "a custodian field unknown",
            BASE.replace("name = \"Bob\"", "name = \"Bob\"\nrole = \"x\""),
            one(
                "c.toml:33: custodian[1].role: unknown field `role`, expected one of `name`, `module`, `module_env`, `token_label`, `token_serial`, `key_label`, `public_key_sha256`",
            ),
        ),
        (
            "a custodian module given both ways",
            BASE.replace(
                "name = \"Bob\"",
                "name = \"Bob\"\nmodule = \"/opt/bob/pkcs11.so\"\nmodule_env = \"BOB_MODULE\"",
            ),
            one("c.toml:33: custodian[1].module: give either module or module_env, not both"),
        ),
        (
            "a custodian module_env that is no variable name",
            BASE.replace("name = \"Bob\"", "name = \"Bob\"\nmodule_env = \"1BAD\""),
            one(
                "c.toml:33: custodian[1].module_env: expected an environment variable name like BYOK_PKCS11_MODULE, found \"1BAD\"",
            ),
        ),
        (
            "an empty custodian module",
            BASE.replace("name = \"Bob\"", "name = \"Bob\"\nmodule = \"\""),
            one(
                "c.toml:33: custodian[1].module: must not be empty; give the path of the custodian's PKCS#11 module, or leave module out to use the HSM's",
            ),
        ),
        (
            "a custodian on the HSM token through the HSM's module named again",
            BASE.replace(
                "token_label = \"cust-bob\"",
                "module = \"/usr/lib/softhsm/libsofthsm2.so\"\ntoken_label = \"byok-hsm\"",
            ),
            one(
                "c.toml:34: custodian[1].token_label: is the ceremony's HSM token; approvals must be made on the custodian's own token",
            ),
        ),
        (
            "keep with host wrap",
            BASE.replace("wrap = \"hsm\"", "wrap = \"host\"")
                .replace("audit_key_label", "keep_key_label = \"k\"\naudit_key_label"),
            one(
                "c.toml:9: hsm.keep_key_label: cannot keep a key generated for wrap = \"host\" (it is not sensitive); remove keep_key_label or use wrap = \"hsm\"",
            ),
        ),
    ];
    for (name, text, expected) in cases {
        assert_eq!(problems(&text), expected, "case: {name}");
    }
}

#[test]
fn several_problems_are_reported_together() {
    let text = BASE
        .replace("id = \"c-1\"", "id = \"bad id!\"")
        .replace("RSA_4096", "RSA_9");
    assert_eq!(
        problems(&text),
        "ceremony file c.toml is invalid (2 problems); fix it and run `byok check` again:\n  \
         c.toml:2: ceremony.id: expected 1 to 64 characters from A-Z a-z 0-9 . _ -, found \"bad id!\"\n  \
         c.toml:18: import.wrapping_key_spec: expected RSA_2048, RSA_3072 or RSA_4096, found \"RSA_9\""
    );
}

#[test]
fn check_exits_2_and_names_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        BASE.replace("RSAES_OAEP_SHA_256", "RSAES_OAEP_SHA_512"),
    )
    .unwrap();
    let out = byok().arg("check").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(&format!(
            "{}:17: import.wrapping_algorithm: expected RSAES_OAEP_SHA_256, RSAES_OAEP_SHA_1, RSA_AES_KEY_WRAP_SHA_256 or RSA_AES_KEY_WRAP_SHA_1, found \"RSAES_OAEP_SHA_512\"",
            path.display()
        )),
        "{}",
        stderr(&out)
    );
}

#[test]
fn every_file_in_ceremonies_passes_check() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("ceremonies");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        // The one file here that is not a ceremony: `byok inventory`'s rotation policy, held
        // to its own rules.
        if path
            .file_name()
            .is_some_and(|f| f == "rotation-policy.toml")
        {
            byok::inventory::rules::load(&path).unwrap();
            continue;
        }
        n += 1;
        let out = byok().arg("check").arg(&path).output().unwrap();
        assert!(out.status.success(), "{}: {}", path.display(), stderr(&out));
        assert!(stdout(&out).contains(": valid"), "{}", stdout(&out));
        // The file's SHA-256 for the paper record, computed here independently.
        use sha2::Digest as _;
        let sha = hex::encode(sha2::Sha256::digest(std::fs::read(&path).unwrap()));
        assert!(
            stdout(&out).contains(&format!("\nceremony file SHA-256: {sha}\n")),
            "{}: {}",
            path.display(),
            stdout(&out)
        );
    }
    assert!(n >= 2, "expected the example ceremonies, found {n}");
}

/// BASE without its one `kms.key`.
fn no_key() -> String {
    BASE.replace("key = \"alias/byok-demo\"\n", "")
}

#[test]
fn target_lists_give_exact_messages() {
    let product = |services: &str, key: &str| {
        format!(
            "{}\n[targets]\nservices = {services}\nenvironments = [\"dev\"]\nkey = \"{key}\"\n",
            no_key()
        )
    };
    let many: Vec<String> = (0..334).map(|i| format!("\"s{i}\"")).collect();
    let cases: Vec<(&str, String, String)> = vec![
        (
            "both forms",
            format!(
                "{}\n[[target]]\nkey = \"alias/a\"\n{}",
                no_key(),
                "\n[targets]\nservices = [\"s3\"]\nenvironments = [\"dev\"]\nkey = \"alias/{service}-{environment}\"\n"
            ),
            one(
                "c.toml:39: targets: give the targets one way: [[target]] tables or one [targets] table, not both",
            ),
        ),
        (
            "kms.key and a list",
            format!("{BASE}\n[[target]]\nkey = \"alias/a\"\n"),
            one(
                "c.toml:14: kms.key: give the targets one way: kms.key (one key), [[target]] tables or one [targets] table, not several",
            ),
        ),
        (
            "no target",
            no_key(),
            one(
                "c.toml:12: kms.key: missing: name the target key with kms.key (one key), [[target]] tables or one [targets] table",
            ),
        ),
        (
            "duplicate target",
            format!(
                "{}\n[[target]]\nkey = \"alias/a\"\n\n[[target]]\nkey = \"alias/b\"\n\n[[target]]\nkey = \"alias/a\"\n",
                no_key()
            ),
            one("c.toml:43: target[2].key: alias/a is listed twice (targets 0 and 2); each key once"),
        ),
        (
            "duplicate after expansion",
            product("[\"s3\", \"s3\"]", "alias/{service}-{environment}"),
            one("c.toml:39: targets.key: alias/s3-dev is listed twice (targets 0 and 1); each key once"),
        ),
        (
            "a bad template is reported once, not per expansion",
            product("[\"s3\", \"rds\"]", "bad/{service}-{environment}"),
            one(
                "c.toml:39: targets.key: target 0: expected a key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID), a key id or alias/NAME, found \"bad/s3-dev\"",
            ),
        ),
        (
            "a description without create, once for the template",
            format!(
                "{}\n[targets]\nservices = [\"s3\", \"rds\"]\nenvironments = [\"dev\"]\nkey = \"alias/{{service}}-{{environment}}\"\ndescription = \"x\"\n",
                no_key()
            ),
            one(
                "c.toml:39: targets.key: target 0: description and tags are for create = true; remove them or set create = true",
            ),
        ),
        (
            "unknown placeholder",
            product("[\"s3\"]", "alias/{service}-{region}"),
            one(
                "c.toml:39: targets.key: \"alias/{service}-{region}\": the only placeholders are {service} and {environment}",
            ),
        ),
        (
            "create needs an alias",
            format!(
                "{}\n[[target]]\nkey = \"arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab\"\ncreate = true\n",
                no_key()
            ),
            one(
                "c.toml:37: target[0].key: target 0: create = true needs an alias (alias/NAME) to create, found \"arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab\"",
            ),
        ),
        (
            "description without create",
            format!("{}\n[[target]]\nkey = \"alias/a\"\ndescription = \"x\"\n", no_key()),
            one(
                "c.toml:37: target[0].key: target 0: description and tags are for create = true; remove them or set create = true",
            ),
        ),
        (
            "more than 1,000 targets",
            format!(
                "{}\n[targets]\nservices = [{}]\nenvironments = [\"a\", \"b\", \"c\"]\nkey = \"alias/{{service}}-{{environment}}\"\n",
                no_key(),
                many.join(",")
            ),
            one(
                "c.toml:36: targets: 1002 targets; a ceremony holds at most 1000: split it into several ceremonies",
            ),
        ),
        (
            "one kept label for several targets",
            format!(
                "{}\n[[target]]\nkey = \"alias/a\"\n\n[[target]]\nkey = \"alias/b\"\n",
                no_key().replace(
                    "audit_key_label = \"byok-audit\"",
                    "audit_key_label = \"byok-audit\"\nkeep_key_label = \"kept\""
                )
            ),
            one(
                "c.toml:10: hsm.keep_key_label: expands to \"kept\" for targets 0 and 1; put {key} or {index} in it so each target gets its own label",
            ),
        ),
        (
            "call timeout",
            BASE.replace(
                "key = \"alias/byok-demo\"",
                "key = \"alias/byok-demo\"\ncall_timeout_seconds = 0",
            ),
            one("c.toml:15: kms.call_timeout_seconds: expected 1 to 600 seconds, found 0"),
        ),
        (
            "rates",
            BASE.replace(
                "[import]",
                "[kms.rates]\nGetParametersForImport = 0\nDescribeKeys = 5\n\n[import]",
            ),
            "ceremony file c.toml is invalid (2 problems); fix it and run `byok check` again:\n  c.toml:18: kms.rates.DescribeKeys: unknown KMS operation; expected one of DescribeKey, CreateKey, CreateAlias, ListKeys, GetParametersForImport, ImportKeyMaterial, ListKeyRotations, Encrypt, Decrypt, RotateKeyOnDemand, UpdateAlias, ListResourceTags, ListAliases\n  c.toml:17: kms.rates.GetParametersForImport: expected requests per second, a number above 0 (e.g. 1 or 0.25), found 0".into(),
        ),
    ];
    for (name, text, expected) in cases {
        assert_eq!(problems(&text), expected, "case: {name}");
    }
}

#[test]
fn the_product_form_expands_services_times_environments_in_order() {
    let text = format!(
        "{}\n[targets]\nservices = [\"s3\", \"rds\"]\nenvironments = [\"dev\", \"prod\"]\nkey = \"alias/{{service}}-{{environment}}\"\ncreate = true\ndescription = \"{{service}} in {{environment}}\"\ntags = {{ service = \"{{service}}\" }}\n\n[kms.rates]\nGetParametersForImport = 0.25\n",
        no_key()
    );
    let c = byok::spec::parse(Path::new("c.toml"), &text, NOW).unwrap();
    let keys: Vec<&str> = c.targets.iter().map(|t| t.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "alias/s3-dev",
            "alias/s3-prod",
            "alias/rds-dev",
            "alias/rds-prod"
        ]
    );
    let create = c.targets[2].create.as_ref().unwrap();
    assert_eq!(create.description, "rds in dev");
    assert_eq!(create.tags["service"], "rds");
    assert_eq!(
        c.kms.rates.of(byok::kms::Operation::GetParametersForImport),
        0.25
    );
    assert_eq!(
        c.kms.rates.of(byok::kms::Operation::ImportKeyMaterial),
        15.0
    );
}

#[test]
fn a_custodian_names_their_own_module_or_gets_the_hsms() {
    let text = BASE
        .replace(
            "name = \"Alice\"",
            "name = \"Alice\"\nmodule_env = \"ALICE_MODULE\"",
        )
        .replace(
            "token_label = \"cust-bob\"",
            "module = \"/opt/bob/opensc-pkcs11.so\"\ntoken_label = \"byok-hsm\"",
        );
    // Bob's token has the HSM token's label, but on another module: another token.
    let c = byok::spec::parse(Path::new("c.toml"), &text, NOW).expect("valid");
    let byok::spec::DualControl::Quorum { custodians, .. } = &c.dual_control else {
        panic!("dual control is on")
    };
    assert_eq!(
        custodians[0].module,
        Some(byok::spec::ModuleSource::Env("ALICE_MODULE".into()))
    );
    assert_eq!(
        custodians[1].module,
        Some(byok::spec::ModuleSource::Path(
            "/opt/bob/opensc-pkcs11.so".into()
        ))
    );
    let plan = byok::ceremony::plan::render(&c);
    assert_contains(
        &plan,
        "Alice (label \"cust-alice\", module $ALICE_MODULE, key \"byok-approval\", SHA-256 1111",
    );
    assert_contains(
        &plan,
        "Bob (label \"byok-hsm\", module /opt/bob/opensc-pkcs11.so, key \"byok-approval\", SHA-256 2222",
    );
    // Neither field: the HSM's module, and `byok check` shows nothing more.
    let c = byok::spec::parse(Path::new("c.toml"), BASE, NOW).expect("valid");
    let byok::spec::DualControl::Quorum { custodians, .. } = &c.dual_control else {
        panic!("dual control is on")
    };
    assert!(custodians.iter().all(|k| k.module.is_none()));
    assert_contains(
        &byok::ceremony::plan::render(&c),
        "Alice (label \"cust-alice\", key \"byok-approval\", SHA-256 1111",
    );
    assert!(c.custodian_module_paths().unwrap().is_empty());
}

#[test]
fn an_unset_custodian_module_env_is_named_with_what_to_export() {
    const VAR: &str = "BYOK_TEST_CUSTODIAN_MODULE_NEVER_SET";
    assert!(std::env::var_os(VAR).is_none(), "{VAR} must not be set");
    let text = BASE.replace(
        "name = \"Bob\"",
        &format!("name = \"Bob\"\nmodule_env = \"{VAR}\""),
    );
    let c = byok::spec::parse(Path::new("c.toml"), &text, NOW).expect("valid");
    assert_eq!(
        c.custodian_module_paths().unwrap_err().to_string(),
        format!(
            "custodian[1].module_env names the environment variable {VAR}, which is not set; export {VAR}=/path/to/module.so"
        )
    );
}

const PREVIOUS: &str =
    "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

/// BASE as an alias swap of `[[target]]` tables (`targets`: the TOML of the tables).
fn alias_swap(targets: &str) -> String {
    BASE.replace(
        "operator = \"Alice\"",
        "operator = \"Alice\"\nkind = \"rotate\"",
    )
    .replace("key = \"alias/byok-demo\"\n", "")
        + "\n[rotation]\nstrategy = \"alias-swap\"\n"
        + targets
}

/// BASE as a rollback: no [import], a [source], and `targets`.
fn rollback(extra: &str) -> String {
    let base = BASE
        .replace(
            "operator = \"Alice\"",
            "operator = \"Alice\"\nkind = \"rollback\"",
        )
        .replace("key = \"alias/byok-demo\"\n", "");
    let start = base.find("[import]").unwrap();
    let end = base.find("[dual_control]").unwrap();
    format!(
        "{}{}\n[source]\ntranscript = \"swap.jsonl\"\nlast_line_sha256 = \"{}\"\n\n[[target]]\nkey = \"alias/byok-demo\"\n{extra}",
        &base[..start],
        &base[end..],
        "AB".repeat(32)
    )
}

#[test]
fn alias_swap_and_rollback_files_are_checked() {
    let target = |key: &str, previous: &str| {
        format!("\n[[target]]\nkey = \"{key}\"\nprevious_key = \"{previous}\"\n")
    };
    // A valid alias swap: the description and tags are for the new key.
    let text = alias_swap(&format!(
        "{}description = \"new\"\ntags = {{ team = \"db\" }}\n",
        target("alias/byok-demo", PREVIOUS)
    ));
    let c = byok::spec::parse(Path::new("c.toml"), &text, NOW).unwrap();
    assert_eq!(c.import.kind.strategy(), Some("alias-swap"));
    let swap = c.targets[0].swap.as_ref().unwrap();
    assert_eq!(swap.previous_key, PREVIOUS);
    assert_eq!(swap.description.as_deref(), Some("new"));
    assert_eq!(swap.tags.get("team").map(String::as_str), Some("db"));
    // previous_key is a full key ARN in the alias's region.
    for bad in [
        "1234abcd-12ab-34cd-56ef-1234567890ab",
        "alias/other",
        "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    ] {
        assert_contains(
            &problems(&alias_swap(&target("alias/byok-demo", bad))),
            "target 0: previous_key must be the full ARN of the key alias/byok-demo names now (arn:aws:kms:us-east-1:ACCOUNT:key/ID)",
        );
    }
    // The target of an alias swap is an alias.
    assert_contains(
        &problems(&alias_swap(&target(PREVIOUS, PREVIOUS))),
        "target.key: target 0: an alias swap moves an alias, so the target must be alias/NAME",
    );
    // No product form: each target needs its own previous_key.
    assert_contains(
        &problems(&alias_swap(
            "\n[targets]\nservices = [\"s3\"]\nenvironments = [\"prod\"]\nkey = \"alias/{service}-{environment}\"\n",
        )),
        "targets.key: strategy = \"alias-swap\" needs each target's previous_key: list the targets as [[target]] tables",
    );
    // previous_key belongs to alias swaps only.
    let plain =
        BASE.replace("key = \"alias/byok-demo\"\n", "") + &target("alias/byok-demo", PREVIOUS);
    assert_contains(
        &problems(&plain),
        "target 0: previous_key is for kind = \"rotate\" with strategy = \"alias-swap\"; remove it",
    );

    // A valid rollback; its source path is relative to the ceremony file.
    let c = byok::spec::parse(Path::new("/srv/ceremonies/c.toml"), &rollback(""), NOW).unwrap();
    assert_eq!(c.import.kind, byok::spec::Kind::Rollback);
    let src = c.source_transcript.unwrap();
    assert_eq!(src.path, Path::new("/srv/ceremonies/swap.jsonl"));
    assert_eq!(src.last_line_sha256, "ab".repeat(32), "lower-cased");
    // A rollback imports nothing and keeps nothing.
    let with_import = rollback("").replace(
        "[source]",
        "[import]\nexpiration = \"KEY_MATERIAL_DOES_NOT_EXPIRE\"\n\n[source]",
    );
    assert_contains(
        &problems(&with_import),
        "import: a rollback imports nothing; remove [import]",
    );
    assert_contains(
        &problems(&rollback("").replace(
            "audit_key_label = \"byok-audit\"",
            "audit_key_label = \"byok-audit\"\nkeep_key_label = \"k\"",
        )),
        "hsm.keep_key_label: a rollback generates no key to keep",
    );
    assert_contains(
        &problems(&rollback("").replace("last_line_sha256 = \"", "last_line_sha256 = \"x")),
        "source.last_line_sha256: expected 64 hex digits",
    );
    assert_contains(
        &problems(&rollback(
            "\n[[target]]\nkey = \"1234abcd-12ab-34cd-56ef-1234567890ab\"\n",
        )),
        "a rollback moves an alias, so the target must be alias/NAME",
    );
    // [source] belongs to rollbacks; every other kind needs [import].
    assert_contains(
        &problems(&format!(
            "{BASE}\n[source]\ntranscript = \"t\"\nlast_line_sha256 = \"{}\"\n",
            "a".repeat(64)
        )),
        "source: is for kind = \"rollback\" or \"reimport\"",
    );
}

#[test]
fn check_warns_that_expiring_material_can_make_the_whole_key_pending_import() {
    let expiring = |extra: &str| {
        BASE.replace(
            "expiration = \"KEY_MATERIAL_DOES_NOT_EXPIRE\"",
            "expiration = \"KEY_MATERIAL_EXPIRES\"\nvalid_for = \"30d\"",
        )
        .replace(
            "operator = \"Alice\"",
            &format!("operator = \"Alice\"{extra}"),
        )
    };
    let plan = |text: &str| {
        byok::ceremony::plan::render(&byok::spec::parse(Path::new("c.toml"), text, NOW).unwrap())
    };
    let rotate = plan(&expiring("\nkind = \"rotate\""));
    assert_contains(
        &rotate,
        "WARNING: when this material expires (or any one material of a key is deleted), KMS makes the WHOLE key PendingImport",
    );
    assert_contains(&rotate, "WARNING: no copy is kept (no hsm.keep_key_label)");
    let import = plan(&expiring(""));
    assert!(!import.contains("WHOLE key"), "{import}");
    assert_contains(&import, "WARNING: no copy is kept");
    // Material that does not expire needs neither warning.
    assert!(!plan(BASE).contains("WARNING"), "{}", plan(BASE));
}

#[test]
fn a_reimport_source_is_read_relative_to_the_ceremony_file() {
    let reimport = |transcript: &str| {
        format!(
            "{}\n[source]\ntranscript = \"{transcript}\"\nlast_line_sha256 = \"{}\"\n",
            BASE.replace(
                "operator = \"Alice\"",
                "operator = \"Alice\"\nkind = \"reimport\""
            ),
            "AB".repeat(32)
        )
    };
    let c = byok::spec::parse(
        Path::new("/ceremonies/2027/reimport.toml"),
        &reimport("old/keep.jsonl"),
        NOW,
    )
    .unwrap();
    assert_eq!(c.import.kind, byok::spec::Kind::Reimport);
    let s = c.source_transcript.unwrap();
    assert_eq!(s.path, Path::new("/ceremonies/2027/old/keep.jsonl"));
    assert_eq!(s.as_written, "old/keep.jsonl");
    // Pinned in lower case, as byok prints fingerprints.
    assert_eq!(s.last_line_sha256, "ab".repeat(32));
    let c = byok::spec::parse(
        Path::new("/ceremonies/2027/reimport.toml"),
        &reimport("/archive/keep.jsonl"),
        NOW,
    )
    .unwrap();
    assert_eq!(
        c.source_transcript.unwrap().path,
        Path::new("/archive/keep.jsonl")
    );
    // An empty path is refused.
    assert_contains(
        &problems(&reimport("")),
        "source.transcript: must name the earlier transcript's file",
    );
}

/// Plain text only (issue 11): every class of forbidden character, in several fields, gives a
/// message naming the field and the character's position, with the value escaped; and
/// custodian names that differ only in look-alike characters are refused.
#[test]
fn control_characters_and_look_alike_names_are_refused_with_exact_messages() {
    let cases: Vec<(&str, String, String)> = vec![
        (
            "ESC (C0) in a custodian name",
            BASE.replace("name = \"Bob\"", "name = \"Bob\\u001B[2K\""),
            one(
                "c.toml:32: custodian[1].name: character 4 is U+001B, a C0 control character; names, ids, descriptions and labels must be plain text, found \"Bob\\u{1b}[2K\"",
            ),
        ),
        (
            "CR and LF in the operator",
            BASE.replace(
                "operator = \"Alice\"",
                "operator = \"Alice\\r\\nbyok> approve plan\"",
            ),
            one(
                "c.toml:4: ceremony.operator: character 6 is U+000D, a C0 control character; names, ids, descriptions and labels must be plain text, found \"Alice\\u{d}\\u{a}byok> approve plan\"",
            ),
        ),
        (
            "TAB in the description",
            BASE.replace("description = \"test\"", "description = \"te\\tst\""),
            one(
                "c.toml:3: ceremony.description: character 3 is U+0009, a C0 control character; names, ids, descriptions and labels must be plain text, found \"te\\u{9}st\"",
            ),
        ),
        (
            "DEL in the token label",
            BASE.replace(
                "token_label = \"byok-hsm\"",
                "token_label = \"byok\\u007Fhsm\"",
            ),
            one(
                "c.toml:8: hsm.token_label: character 5 is U+007F, DEL; names, ids, descriptions and labels must be plain text, found \"byok\\u{7f}hsm\"",
            ),
        ),
        (
            "C1 CSI in the audit key label",
            BASE.replace(
                "audit_key_label = \"byok-audit\"",
                "audit_key_label = \"byok\u{9b}2K\"",
            ),
            one(
                "c.toml:9: hsm.audit_key_label: character 5 is U+009B, a C1 control character; names, ids, descriptions and labels must be plain text, found \"byok\\u{9b}2K\"",
            ),
        ),
        (
            "a bidi override in the key alias",
            BASE.replace(
                "key = \"alias/byok-demo\"",
                "key = \"alias/\u{202e}omed-koyb\"",
            ),
            one(
                "c.toml:14: kms.key: character 7 is U+202E, a bidirectional formatting character; names, ids, descriptions and labels must be plain text, found \"alias/\\u{202e}omed-koyb\"",
            ),
        ),
        (
            "a bidi isolate in a tag value and ESC in a tag key",
            BASE.replace("key = \"alias/byok-demo\"\n", "").replace(
                "[import]",
                "[[target]]\nkey = \"alias/a\"\ntags = { \"owner\u{2067}\" = \"x\", team = \"pay\\u001Bments\" }\n\n[import]",
            ),
            format!(
                "ceremony file c.toml is invalid (2 problems); fix it and run `byok check` again:\n  {}\n  {}",
                "c.toml:17: target[0].tags: a tag key: character 6 is U+2067, a bidirectional formatting character; names, ids, descriptions and labels must be plain text, found \"owner\\u{2067}\"",
                "c.toml:17: target[0].tags.team: character 4 is U+001B, a C0 control character; names, ids, descriptions and labels must be plain text, found \"pay\\u{1b}ments\"",
            ),
        ),
        (
            "a newline in the ceremony id",
            BASE.replace("id = \"c-1\"", "id = \"c-1\\n\""),
            one(
                "c.toml:2: ceremony.id: character 4 is U+000A, a C0 control character; names, ids, descriptions and labels must be plain text, found \"c-1\\u{a}\"",
            ),
        ),
        (
            "a Cyrillic A next to a Latin one",
            BASE.replace("name = \"Bob\"", "name = \"\u{410}lice\""),
            one(
                "c.toml:32: custodian[1].name: \"\u{410}lice\" (\\u{410}lice) looks like \"Alice\" (custodian[0].name): the names differ only in look-alike characters (Unicode confusables, e.g. a Cyrillic letter for a Latin one); give each custodian a name that reads differently",
            ),
        ),
    ];
    for (what, text, expected) in cases {
        let got = problems(&text);
        assert_eq!(got, expected, "{what}");
        // Never a raw control character in a message.
        assert!(
            byok::text::forbidden_char(&got.replace('\n', " ")).is_none(),
            "{what}: raw control character in {got:?}"
        );
    }
    // Look-alikes are refused, different names are not.
    assert_eq!(
        problems(&BASE.replace("name = \"Bob\"", "name = \"Alíce\"")),
        "valid"
    );
    // rotation.key_material_description, keep_key_label and a target's description too.
    let rotate = BASE.replace(
        "operator = \"Alice\"",
        "operator = \"Alice\"\nkind = \"rotate\"",
    );
    assert_contains(
        &problems(&format!(
            "{rotate}\n[rotation]\nkey_material_description = \"yearly\\u001B]0;owned\\u0007 2027\"\n"
        )),
        "rotation.key_material_description: character 7 is U+001B, a C0 control character; names, ids, descriptions and labels must be plain text, found \"yearly\\u{1b}]0;owned\\u{7} 2027\"",
    );
    assert_contains(
        &problems(&BASE.replace(
            "audit_key_label = \"byok-audit\"",
            "audit_key_label = \"byok-audit\"\nkeep_key_label = \"kept\\u0085\"",
        )),
        "hsm.keep_key_label: character 5 is U+0085, a C1 control character",
    );
    assert_contains(
        &problems(&BASE.replace("key = \"alias/byok-demo\"\n", "").replace(
            "[import]",
            "[[target]]\nkey = \"alias/a\"\ncreate = true\ndescription = \"pay\\u200Fments\"\n\n[import]",
        )),
        "target[0].description: character 4 is U+200F, a bidirectional formatting character",
    );
    // [targets] services too.
    let product = BASE.replace("key = \"alias/byok-demo\"\n", "").replace(
        "[import]",
        "[targets]\nservices = [\"s3\", \"rds\u{2066}\"]\nenvironments = [\"prod\"]\nkey = \"alias/{service}-{environment}\"\n\n[import]",
    );
    assert_contains(
        &problems(&product),
        "targets.services[1]: character 4 is U+2066, a bidirectional formatting character",
    );
}

/// `BYOK_NOW` moves the decision clock: a `valid_to` already past is accepted when the clock
/// is set before it, refused without it, and a malformed `BYOK_NOW` is refused by name.
#[test]
fn byok_now_moves_the_clock_for_valid_to() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("past.toml");
    std::fs::write(
        &path,
        BASE.replace(
            "expiration = \"KEY_MATERIAL_DOES_NOT_EXPIRE\"",
            "expiration = \"KEY_MATERIAL_EXPIRES\"\nvalid_to = 2020-06-01T00:00:00Z",
        ),
    )
    .unwrap();
    let real = byok()
        .env_remove("BYOK_NOW")
        .arg("check")
        .arg(&path)
        .output()
        .unwrap();
    assert!(!real.status.success());
    assert_contains(&stderr(&real), "is in the past");

    let shifted = byok()
        .env("BYOK_NOW", "2020-01-01T00:00:00Z")
        .arg("check")
        .arg(&path)
        .output()
        .unwrap();
    assert!(shifted.status.success(), "{}", stderr(&shifted));
    assert_contains(&stdout(&shifted), "valid");

    let bad = byok()
        .env("BYOK_NOW", "2020-01-01")
        .arg("check")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), real.status.code(), "{}", stderr(&bad));
    assert_contains(
        &stderr(&bad),
        "BYOK_NOW=\"2020-01-01\" is not an RFC 3339 UTC time",
    );
}

/// `byok policy` pins what the file says: a key ARN exactly (no alias condition), the
/// wrapping algorithm and key spec, the expiration model and `kms:ValidTo` as seconds since
/// the epoch; and (with `BYOK_NOW`) loads a file whose `valid_to` has passed like `check`.
#[test]
fn policy_pins_the_file_s_key_and_import_parameters() {
    let arn = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.toml");
    std::fs::write(
        &path,
        BASE.replace("alias/byok-demo", arn).replace(
            "expiration = \"KEY_MATERIAL_DOES_NOT_EXPIRE\"",
            "expiration = \"KEY_MATERIAL_EXPIRES\"\nvalid_to = 2020-06-01T00:00:00Z",
        ),
    )
    .unwrap();
    let out = byok()
        .env("BYOK_NOW", "2020-01-01T00:00:00Z")
        .arg("policy")
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let p: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let statements = p["Statement"].as_array().unwrap();
    let by_sid = |sid: &str| {
        statements
            .iter()
            .find(|s| s["Sid"] == sid)
            .unwrap_or_else(|| panic!("no {sid} in {p}"))
    };
    assert_eq!(
        by_sid("UseTargetKeysByArn")["Resource"],
        serde_json::json!([arn])
    );
    let gpi = by_sid("GetParametersForImportByArn");
    assert_eq!(
        gpi["Action"],
        serde_json::json!(["kms:GetParametersForImport"])
    );
    assert_eq!(
        gpi["Condition"]["StringEquals"],
        serde_json::json!({"kms:WrappingAlgorithm": "RSAES_OAEP_SHA_256",
                           "kms:WrappingKeySpec": "RSA_4096"})
    );
    let ikm = by_sid("ImportKeyMaterialByArn");
    assert_eq!(
        ikm["Condition"]["StringEquals"]["kms:ExpirationModel"],
        "KEY_MATERIAL_EXPIRES"
    );
    // 2020-06-01T00:00:00Z
    assert_eq!(
        ikm["Condition"]["NumericLessThanEquals"]["kms:ValidTo"],
        1_590_969_600
    );
    let text = p.to_string();
    for absent in [
        "ResourceAliases",
        "kms:CreateKey",
        "kms:UpdateAlias",
        "kms:RotateKeyOnDemand",
    ] {
        assert!(!text.contains(absent), "{absent} in {text}");
    }
}
