//! Shared helpers: the byok binary, private SoftHSM tokens, LocalStack keys, ceremony files.
//!
//! Tests that need SoftHSM or LocalStack fail (never skip) when the environment from
//! `scripts/testenv up` is missing. Each test gets its own token directory; tests that load
//! the PKCS#11 module in-process rely on cargo-nextest's one-process-per-test model.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use tempfile::TempDir;

/// The environment variable, or a failure that says how to get it.
pub fn require_env(name: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!(
            "{name} is not set: this test needs SoftHSM and LocalStack; run it with scripts/test \
             (or eval \"$(scripts/testenv up)\" first)"
        ),
    }
}

/// The PKCS#11 token implementation the suite runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// SoftHSM2 (`BYOK_PKCS11_MODULE`), the default.
    SoftHsm,
    /// kryoptic (`BYOK_KRYOPTIC_MODULE`), with `BYOK_TEST_TOKEN=kryoptic`.
    Kryoptic,
}

impl TokenKind {
    /// From `BYOK_TEST_TOKEN` (`softhsm`, the default, or `kryoptic`); anything else fails.
    pub fn under_test() -> TokenKind {
        match std::env::var("BYOK_TEST_TOKEN").as_deref() {
            Err(_) | Ok("") | Ok("softhsm") => TokenKind::SoftHsm,
            Ok("kryoptic") => TokenKind::Kryoptic,
            Ok(other) => panic!("BYOK_TEST_TOKEN={other:?}: expected softhsm or kryoptic"),
        }
    }

    /// The variable naming this implementation's module.
    pub fn module_var(self) -> &'static str {
        match self {
            TokenKind::SoftHsm => "BYOK_PKCS11_MODULE",
            TokenKind::Kryoptic => "BYOK_KRYOPTIC_MODULE",
        }
    }

    /// This implementation's PKCS#11 module.
    pub fn module(self) -> String {
        require_env(self.module_var())
    }

    /// The variable pointing the module at its token store.
    pub fn conf_var(self) -> &'static str {
        match self {
            TokenKind::SoftHsm => "SOFTHSM2_CONF",
            TokenKind::Kryoptic => "KRYOPTIC_CONF",
        }
    }
}

/// The PKCS#11 module of the token implementation under test.
pub fn module() -> String {
    TokenKind::under_test().module()
}

/// Runs the reference verifier of `docs/transcript.md` Appendix A on `transcript`; fails
/// unless it says INVALID. Returns its message.
pub fn reference_rejects(transcript: &Path, audit_key_sha256: &str) -> String {
    reference_rejects_pinned(transcript, audit_key_sha256, &[])
}

/// [`reference_rejects`] with the reference verifier's other pins (`--custodian NAME=HEX`,
/// `--require-quorum M`, `--ceremony-file-sha256 HEX`) in `pins`.
pub fn reference_rejects_pinned(
    transcript: &Path,
    audit_key_sha256: &str,
    pins: &[&str],
) -> String {
    let out = reference_run(transcript, audit_key_sha256, pins);
    assert!(
        !out.status.success(),
        "the reference verifier of docs/transcript.md accepts {}: {}",
        transcript.display(),
        stdout(&out)
    );
    format!("{}{}", stdout(&out), stderr(&out))
}

/// Runs the reference verifier of `docs/transcript.md` Appendix A (Python and `openssl`, no
/// byok code) on `transcript`, pinning the audit key; fails unless it says valid.
pub fn reference_verify(transcript: &Path, audit_key_sha256: &str) -> String {
    let out = reference_run(transcript, audit_key_sha256, &[]);
    assert!(
        out.status.success(),
        "the reference verifier of docs/transcript.md rejects {}: {}{}",
        transcript.display(),
        stdout(&out),
        stderr(&out)
    );
    let text = stdout(&out);
    assert!(text.starts_with("valid: "), "{text}");
    text
}

fn reference_run(transcript: &Path, audit_key_sha256: &str, pins: &[&str]) -> Output {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/transcript.md"))
            .expect("read docs/transcript.md");
    let appendix = &doc[doc
        .find("## Appendix A")
        .expect("docs/transcript.md has Appendix A")..];
    let start = appendix
        .find("```python\n")
        .expect("Appendix A has a python block")
        + 10;
    let len = appendix[start..]
        .find("```")
        .expect("the python block ends");
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("verify_ref.py");
    std::fs::write(&script, &appendix[start..start + len]).expect("write verify_ref.py");
    Command::new("python3")
        .arg(&script)
        .arg(transcript)
        .arg(audit_key_sha256)
        .args(pins)
        .output()
        .expect("python3 must be installed")
}

/// Runs OpenSSL with `input` on stdin; fails with its stderr; returns stdout.
pub fn openssl(args: &[&str], input: Option<&[u8]>) -> Vec<u8> {
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl must be installed");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.unwrap_or_default())
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait for openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The byok binary under test.
pub fn byok() -> Command {
    Command::new(env!("CARGO_BIN_EXE_byok"))
}

/// Runs `cmd` with `stdin` text; returns the output.
pub fn run_with_stdin(mut cmd: Command, stdin: &str) -> Output {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn byok");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait for byok")
}

/// Fails with the whole text when `needle` is not in it.
#[track_caller]
pub fn assert_contains(text: &str, needle: &str) {
    assert!(text.contains(needle), "expected {needle:?} in:\n{text}");
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A private token store of the implementation under test ([`TokenKind::under_test`]) with the
/// ceremony token `byok-hsm` and its audit key, and one token per custodian with their approval
/// key. (Named after SoftHSM, the default; with `BYOK_TEST_TOKEN=kryoptic` it is kryoptic.)
pub struct SoftHsm {
    pub kind: TokenKind,
    pub dir: TempDir,
    /// The store's configuration: `SOFTHSM2_CONF` or `KRYOPTIC_CONF`.
    pub conf: PathBuf,
    pub label: String,
    pub pin: String,
    /// The Security Officer PIN of `byok-hsm` (a reimport asks for it).
    pub so_pin: String,
    pub audit_sha256: String,
    /// Alice, Bob and Carol, each with their own token and approval key.
    pub custodians: Vec<Custodian>,
}

/// A custodian's token.
pub struct Custodian {
    pub name: &'static str,
    pub token: String,
    pub pin: String,
    pub sha256: String,
}

/// The custodians of `ceremonies/demo-softhsm.toml`, in file order.
pub const CUSTODIANS: [&str; 3] = ["Alice", "Bob", "Carol"];

impl SoftHsm {
    /// Creates the tokens, the audit key (through `byok audit-key create`) and the custodians'
    /// approval keys (through `byok custodian enroll`).
    pub fn new() -> SoftHsm {
        SoftHsm::of_kind(TokenKind::under_test())
    }

    /// Like [`SoftHsm::new`], on `kind` whatever `BYOK_TEST_TOKEN` says.
    pub fn of_kind(kind: TokenKind) -> SoftHsm {
        let module = kind.module();
        let dir = tempfile::tempdir().expect("tempdir");
        let labels: Vec<String> = std::iter::once("byok-hsm".to_string())
            .chain(
                CUSTODIANS
                    .iter()
                    .map(|n| format!("cust-{}", n.to_lowercase())),
            )
            .collect();
        let pins: Vec<String> = labels.iter().map(|_| random_pin()).collect();
        let so_pins: Vec<String> = labels.iter().map(|_| random_pin()).collect();
        let conf = match kind {
            TokenKind::SoftHsm => init_softhsm(dir.path(), &labels, &pins, &so_pins),
            TokenKind::Kryoptic => init_kryoptic(&module, dir.path(), &labels, &pins, &so_pins),
        };
        let mut token = SoftHsm {
            kind,
            dir,
            conf,
            label: "byok-hsm".into(),
            pin: pins[0].clone(),
            so_pin: so_pins[0].clone(),
            audit_sha256: String::new(),
            custodians: Vec::new(),
        };
        let mut cmd = token.byok();
        cmd.args([
            "audit-key",
            "create",
            "--module",
            &module,
            "--token-label",
            "byok-hsm",
            "--label",
            "byok-audit",
        ]);
        let out = run_with_stdin(cmd, &format!("{}\n", token.pin));
        assert!(
            out.status.success(),
            "audit-key create failed: {}",
            stderr(&out)
        );
        token.audit_sha256 = stdout(&out).trim().to_string();
        assert_eq!(
            token.audit_sha256.len(),
            64,
            "fingerprint: {}",
            stdout(&out)
        );
        for (i, name) in CUSTODIANS.into_iter().enumerate() {
            let label = labels[i + 1].clone();
            let pin = pins[i + 1].clone();
            let mut cmd = token.byok();
            cmd.args([
                "custodian",
                "enroll",
                "--module",
                &module,
                "--token-label",
                &label,
                "--name",
                name,
            ]);
            let out = run_with_stdin(cmd, &format!("{pin}\n"));
            assert!(
                out.status.success(),
                "custodian enroll failed: {}",
                stderr(&out)
            );
            let snippet = stdout(&out);
            let sha256 = snippet
                .lines()
                .find_map(|l| l.strip_prefix("public_key_sha256 = \""))
                .map(|l| l.trim_end_matches('"').to_string())
                .expect("enroll prints public_key_sha256");
            assert!(snippet.contains(&format!("name = \"{name}\"")), "{snippet}");
            token.custodians.push(Custodian {
                name,
                token: label,
                pin,
                sha256,
            });
        }
        token
    }

    pub fn custodian(&self, name: &str) -> &Custodian {
        self.custodians
            .iter()
            .find(|c| c.name == name)
            .expect("known custodian")
    }

    /// Answer lines for one approval point: each custodian selected, approving, and their PIN.
    pub fn approve(&self, names: &[&str]) -> String {
        names
            .iter()
            .map(|n| format!("{n}\nyes\n{}\n", self.custodian(n).pin))
            .collect()
    }

    /// The HSM PIN and the plan approved by Alice and Bob.
    pub fn through_plan(&self) -> String {
        format!("{}\n{}", self.pin, self.approve(&["Alice", "Bob"]))
    }

    /// Every answer of a successful 2-of-3 ceremony (import approved by Alice and Carol).
    pub fn all_answers(&self) -> String {
        format!(
            "{}{}",
            self.through_plan(),
            self.approve(&["Alice", "Carol"])
        )
    }

    /// byok with this token store's configuration. Ceremony files name their module with
    /// `module_env = "BYOK_PKCS11_MODULE"`, so that variable names the module under test.
    pub fn byok(&self) -> Command {
        let mut cmd = byok();
        cmd.env(self.kind.conf_var(), &self.conf)
            .env("BYOK_PKCS11_MODULE", self.kind.module());
        cmd
    }

    /// Points this process at the token store (for in-process PKCS#11 tests, one per process).
    pub fn use_in_process(&self) {
        // SAFETY: (edition 2024 `set_var`) nextest runs each test in its own process and this
        // is called before any thread that reads the environment starts.
        unsafe { std::env::set_var(self.kind.conf_var(), &self.conf) };
    }

    /// Opens `byok-hsm` in this process (one per test process), not logged in.
    pub fn open_in_process(&self) -> byok::hsm::Pkcs11Hsm {
        self.use_in_process();
        byok::hsm::Pkcs11Hsm::open_path(
            Path::new(&self.kind.module()),
            &byok::hsm::TokenSelector::Label(self.label.clone()),
        )
        .expect("open byok-hsm in process")
    }

    /// Like [`SoftHsm::open_in_process`], logged in with the user PIN.
    pub fn open_logged_in(&self) -> byok::hsm::Pkcs11Hsm {
        let hsm = self.open_in_process();
        byok::hsm::Hsm::login(&hsm, &secrecy::SecretString::from(self.pin.clone()))
            .expect("log in to byok-hsm");
        hsm
    }

    /// Labels of the token objects visible after login (via OpenSC's pkcs11-tool).
    pub fn token_object_labels(&self) -> Vec<String> {
        let out = Command::new("pkcs11-tool")
            .args([
                "--module",
                &self.kind.module(),
                "--token-label",
                &self.label,
                "--login",
                "--pin",
                &self.pin,
                "--list-objects",
            ])
            .env(self.kind.conf_var(), &self.conf)
            .output()
            .expect("pkcs11-tool (opensc) must be installed");
        assert!(out.status.success(), "pkcs11-tool failed: {}", stderr(&out));
        let mut labels: Vec<String> = stdout(&out)
            .lines()
            .filter_map(|l| l.trim().strip_prefix("label:"))
            .map(|l| l.trim().to_string())
            .collect();
        labels.sort();
        labels
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn random_pin() -> String {
    format!("{:08}", rand_u32() % 100_000_000)
}

/// A SoftHSM2 store in `dir` with one token per label; returns its `SOFTHSM2_CONF`.
fn init_softhsm(dir: &Path, labels: &[String], pins: &[String], so_pins: &[String]) -> PathBuf {
    let tokens = dir.join("tokens");
    std::fs::create_dir(&tokens).expect("tokens dir");
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .expect("write conf");
    let util = std::env::var("BYOK_SOFTHSM_UTIL").unwrap_or_else(|_| "softhsm2-util".into());
    for ((label, pin), so_pin) in labels.iter().zip(pins).zip(so_pins) {
        let out = Command::new(&util)
            .args(["--init-token", "--free", "--label", label, "--pin", pin])
            .args(["--so-pin", so_pin])
            .env("SOFTHSM2_CONF", &conf)
            .output()
            .expect("softhsm2-util must be installed (scripts/testenv install)");
        assert!(out.status.success(), "init-token failed: {}", stderr(&out));
    }
    conf
}

/// A kryoptic store in `dir` with one token per label (scripts/kryoptic-tokens); returns its
/// `KRYOPTIC_CONF`.
fn init_kryoptic(
    module: &str,
    dir: &Path,
    labels: &[String],
    pins: &[String],
    so_pins: &[String],
) -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/kryoptic-tokens");
    let specs: Vec<String> = labels
        .iter()
        .zip(pins)
        .zip(so_pins)
        .map(|((l, p), so)| format!("{l}:{p}:{so}"))
        .collect();
    let store = dir.join("kryoptic");
    let out = Command::new(script)
        .arg(&store)
        .args(&specs)
        .env("BYOK_KRYOPTIC_MODULE", module)
        .output()
        .expect("run scripts/kryoptic-tokens");
    assert!(
        out.status.success(),
        "scripts/kryoptic-tokens failed: {}",
        stderr(&out)
    );
    PathBuf::from(stdout(&out).trim())
}

pub fn rand_u32() -> u32 {
    let mut b = [0u8; 4];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b).expect("random");
    u32::from_le_bytes(b)
}

/// A LocalStack KMS client for test setup.
pub struct TestKms {
    pub rt: tokio::runtime::Runtime,
    pub client: aws_sdk_kms::Client,
}

impl TestKms {
    pub fn new() -> TestKms {
        TestKms::in_region("us-east-1")
    }

    /// A client for `region` of the same LocalStack.
    pub fn in_region(region: &str) -> TestKms {
        require_env("AWS_ENDPOINT_URL_KMS");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let config = rt.block_on(
            aws_config::defaults(aws_config::BehaviorVersion::latest())
                .region(aws_config::Region::new(region.to_string()))
                .http_client(http)
                .load(),
        );
        TestKms {
            client: aws_sdk_kms::Client::new(&config),
            rt,
        }
    }

    /// Creates a symmetric key with the given origin and a fresh alias; returns (arn, alias).
    pub fn create_key(&self, origin: aws_sdk_kms::types::OriginType) -> (String, String) {
        let out = self
            .rt
            .block_on(self.client.create_key().origin(origin).send())
            .expect("CreateKey");
        let arn = out.key_metadata().unwrap().arn().unwrap().to_string();
        let alias = format!("alias/byok-test-{:08x}", rand_u32());
        self.rt
            .block_on(
                self.client
                    .create_alias()
                    .alias_name(&alias)
                    .target_key_id(&arn)
                    .send(),
            )
            .expect("CreateAlias");
        (arn, alias)
    }

    pub fn external_key(&self) -> (String, String) {
        self.create_key(aws_sdk_kms::types::OriginType::External)
    }

    pub fn state(&self, key: &str) -> String {
        let out = self
            .rt
            .block_on(self.client.describe_key().key_id(key).send())
            .expect("DescribeKey");
        out.key_metadata()
            .unwrap()
            .key_state()
            .unwrap()
            .as_str()
            .to_string()
    }

    /// DescribeKey's CurrentKeyMaterialId.
    pub fn current_material(&self, key: &str) -> Option<String> {
        let out = self
            .rt
            .block_on(self.client.describe_key().key_id(key).send())
            .expect("DescribeKey");
        out.key_metadata()
            .unwrap()
            .current_key_material_id()
            .map(str::to_string)
    }

    /// Encrypt under `key`'s current material.
    pub fn encrypt(&self, key: &str, plaintext: &[u8]) -> Vec<u8> {
        let out = self
            .rt
            .block_on(
                self.client
                    .encrypt()
                    .key_id(key)
                    .plaintext(aws_smithy_types::Blob::new(plaintext.to_vec()))
                    .send(),
            )
            .expect("Encrypt");
        out.ciphertext_blob().unwrap().as_ref().to_vec()
    }

    /// Decrypt a ciphertext of `key`.
    pub fn decrypt(&self, key: &str, ciphertext: &[u8]) -> Vec<u8> {
        let out = self
            .rt
            .block_on(
                self.client
                    .decrypt()
                    .key_id(key)
                    .ciphertext_blob(aws_smithy_types::Blob::new(ciphertext.to_vec()))
                    .send(),
            )
            .expect("Decrypt");
        out.plaintext().unwrap().as_ref().to_vec()
    }

    /// DisableKey.
    pub fn disable(&self, key: &str) {
        self.rt
            .block_on(self.client.disable_key().key_id(key).send())
            .expect("DisableKey");
    }

    /// Encrypt then decrypt through KMS with `key`.
    pub fn round_trip(&self, key: &str) -> bool {
        let pt = b"byok integration round trip".to_vec();
        let ct = self
            .rt
            .block_on(
                self.client
                    .encrypt()
                    .key_id(key)
                    .plaintext(aws_smithy_types::Blob::new(pt.clone()))
                    .send(),
            )
            .expect("Encrypt");
        let back = self
            .rt
            .block_on(
                self.client
                    .decrypt()
                    .ciphertext_blob(ct.ciphertext_blob().unwrap().clone())
                    .send(),
            )
            .expect("Decrypt");
        back.plaintext().unwrap().as_ref() == pt.as_slice()
    }
}

/// Writes a copy of `ceremonies/<template>` into `dir` with fields replaced
/// (`("hsm.audit_key_sha256", "\"…\"")`: TOML values).
pub fn ceremony_from(template: &str, dir: &Path, name: &str, set: &[(&str, &str)]) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("ceremonies")
        .join(template);
    let text = std::fs::read_to_string(&src).expect("read template");
    let mut doc: toml_edit::DocumentMut = text.parse().expect("template parses");
    // The ceremony names the LocalStack endpoint the environment points at: byok refuses an
    // endpoint override the ceremony file does not name.
    let endpoint = std::env::var("AWS_ENDPOINT_URL_KMS")
        .ok()
        .map(|e| format!("\"{e}\""));
    let mut set: Vec<(&str, &str)> = set.to_vec();
    if let Some(e) = &endpoint
        && !set.iter().any(|(k, _)| *k == "kms.endpoint")
    {
        set.insert(0, ("kms.endpoint", e.as_str()));
    }
    for (path, value) in &set {
        let (table, key) = path.split_once('.').expect("section.field");
        let value: toml_edit::Value = value.parse().expect("TOML value");
        match table.split_once('[') {
            Some((array, index)) => {
                let i: usize = index.trim_end_matches(']').parse().expect("index");
                let tables = doc[array]
                    .as_array_of_tables_mut()
                    .expect("array of tables");
                tables.get_mut(i).expect("entry")[key] = toml_edit::Item::Value(value);
            }
            None => doc[table][key] = toml_edit::Item::Value(value),
        }
    }
    let out = dir.join(name);
    std::fs::write(&out, doc.to_string()).expect("write ceremony");
    out
}

/// Points the ceremony file at another endpoint (`[kms] endpoint = url`, e.g. a
/// `scripts/kms-proxy` in front of LocalStack), and returns the environment a `byok run` of it
/// needs: both endpoint variables set to the same URL (byok refuses any other).
pub fn use_endpoint<'a>(file: &Path, url: &'a str) -> [(&'static str, &'a str); 2] {
    let text = std::fs::read_to_string(file).expect("read ceremony");
    let mut doc: toml_edit::DocumentMut = text.parse().expect("ceremony parses");
    doc["kms"]["endpoint"] = toml_edit::value(url);
    std::fs::write(file, doc.to_string()).expect("write ceremony");
    [("AWS_ENDPOINT_URL_KMS", url), ("AWS_ENDPOINT_URL_STS", url)]
}

/// A ceremony for `hsm` targeting `alias`, from a template in `ceremonies/`.
pub fn ceremony_for(hsm: &SoftHsm, template: &str, alias: &str, extra: &[(&str, &str)]) -> PathBuf {
    let key = format!("\"{alias}\"");
    let mut set = vec![("kms.key", key.as_str())];
    set.extend_from_slice(extra);
    ceremony_pinned(hsm, template, &set)
}

/// A ceremony from a template in `ceremonies/`, with `hsm`'s audit key and custodians pinned
/// and the fields in `extra` set.
pub fn ceremony_pinned(hsm: &SoftHsm, template: &str, extra: &[(&str, &str)]) -> PathBuf {
    ceremony_pinned_as(hsm, template, "ceremony.toml", extra)
}

/// Like [`ceremony_pinned`], written as `name` in the token store's directory.
pub fn ceremony_pinned_as(
    hsm: &SoftHsm,
    template: &str,
    name: &str,
    extra: &[(&str, &str)],
) -> PathBuf {
    // Every ceremony test talks to LocalStack: fail clearly, never reach real AWS.
    require_env("AWS_ENDPOINT_URL_KMS");
    let fp = format!("\"{}\"", hsm.audit_sha256);
    let mut set = vec![("hsm.audit_key_sha256", fp.as_str())];
    let template_text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("ceremonies")
            .join(template),
    )
    .expect("read template");
    let pins: Vec<(String, String)> = if template_text.contains("[[custodian]]") {
        hsm.custodians
            .iter()
            .enumerate()
            .map(|(i, c)| {
                (
                    format!("custodian[{i}].public_key_sha256"),
                    format!("\"{}\"", c.sha256),
                )
            })
            .collect()
    } else {
        Vec::new()
    };
    for (k, v) in &pins {
        set.push((k.as_str(), v.as_str()));
    }
    set.extend_from_slice(extra);
    ceremony_from(template, hsm.dir.path(), name, &set)
}

/// What the token says of a kept key, read with cryptoki directly (not through byok).
#[derive(Debug)]
pub struct KeptOnToken {
    pub token: bool,
    pub sensitive: bool,
    pub extractable: bool,
    pub wrap_with_trusted: bool,
    pub modifiable: bool,
    pub encrypt: bool,
    pub decrypt: bool,
    pub wrap: bool,
    /// What `C_EncryptInit` (AES-ECB) answers with the key.
    pub encrypt_init: Result<(), String>,
    /// What `C_WrapKey` answers when the user wraps it under a fresh session AES key.
    pub wrap_out: Result<(), String>,
}

impl SoftHsm {
    /// Opens `byok-hsm` in this process with cryptoki, logs in, and reads the secret key
    /// labelled `label`: its attributes, and whether it can encrypt or be wrapped out with the
    /// user PIN alone. `None` when no such key exists.
    pub fn kept_on_token(&self, label: &str) -> Option<KeptOnToken> {
        use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
        use cryptoki::session::UserType;
        self.use_in_process();
        let ctx = Pkcs11::new(self.kind.module()).expect("load module");
        ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
            .expect("C_Initialize");
        let slot = ctx
            .get_slots_with_token()
            .unwrap()
            .into_iter()
            .find(|s| ctx.get_token_info(*s).unwrap().label().trim_end() == self.label)
            .expect("byok-hsm slot");
        let session = ctx.open_rw_session(slot).unwrap();
        session
            .login(
                UserType::User,
                Some(&secrecy::SecretString::from(self.pin.clone())),
            )
            .unwrap();
        let result = Self::read_kept(&session, label);
        drop(session);
        // Not finalized, the module stays initialized in this process (kryoptic is never
        // unloaded), and the next C_Initialize fails.
        ctx.finalize().expect("C_Finalize");
        result
    }

    fn read_kept(session: &cryptoki::session::Session, label: &str) -> Option<KeptOnToken> {
        use cryptoki::mechanism::Mechanism;
        use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass};
        let found = session
            .find_objects(&[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::Label(label.as_bytes().to_vec()),
            ])
            .unwrap();
        let key = *found.first()?;
        let attrs = session
            .get_attributes(
                key,
                &[
                    AttributeType::Token,
                    AttributeType::Sensitive,
                    AttributeType::Extractable,
                    AttributeType::WrapWithTrusted,
                    AttributeType::Modifiable,
                    AttributeType::Encrypt,
                    AttributeType::Decrypt,
                    AttributeType::Wrap,
                ],
            )
            .unwrap();
        let flag = |want: AttributeType| {
            attrs
                .iter()
                .find_map(|a| match (a, want) {
                    (Attribute::Token(v), AttributeType::Token)
                    | (Attribute::Sensitive(v), AttributeType::Sensitive)
                    | (Attribute::Extractable(v), AttributeType::Extractable)
                    | (Attribute::WrapWithTrusted(v), AttributeType::WrapWithTrusted)
                    | (Attribute::Modifiable(v), AttributeType::Modifiable)
                    | (Attribute::Encrypt(v), AttributeType::Encrypt)
                    | (Attribute::Decrypt(v), AttributeType::Decrypt)
                    | (Attribute::Wrap(v), AttributeType::Wrap) => Some(*v),
                    _ => None,
                })
                .expect("attribute reported")
        };
        let encrypt_init = session
            .encrypt(&Mechanism::AesEcb, key, &[0u8; 16])
            .map(|_| ())
            .map_err(|e| e.to_string());
        let wrapper = session
            .generate_key(
                &Mechanism::AesKeyGen,
                &[
                    Attribute::Class(ObjectClass::SECRET_KEY),
                    Attribute::KeyType(KeyType::AES),
                    Attribute::ValueLen(32.into()),
                    Attribute::Token(false),
                    Attribute::Wrap(true),
                ],
            )
            .unwrap();
        let wrap_out = [Mechanism::AesKeyWrapPad, Mechanism::AesKeyWrap]
            .iter()
            .map(|m| session.wrap_key(m, wrapper, key))
            .find(|r| {
                !matches!(
                    r,
                    Err(cryptoki::error::Error::Pkcs11(
                        cryptoki::error::RvError::MechanismInvalid,
                        _
                    ))
                )
            })
            .unwrap_or(Ok(Vec::new()))
            .map(|_| ())
            .map_err(|e| e.to_string());
        Some(KeptOnToken {
            token: flag(AttributeType::Token),
            sensitive: flag(AttributeType::Sensitive),
            extractable: flag(AttributeType::Extractable),
            wrap_with_trusted: flag(AttributeType::WrapWithTrusted),
            modifiable: flag(AttributeType::Modifiable),
            encrypt: flag(AttributeType::Encrypt),
            decrypt: flag(AttributeType::Decrypt),
            wrap: flag(AttributeType::Wrap),
            encrypt_init,
            wrap_out,
        })
    }
}

/// `scripts/kms-proxy` in front of LocalStack, stopped on drop.
pub struct KmsProxy {
    child: std::process::Child,
    pub url: String,
    pub log: PathBuf,
    _dir: TempDir,
}

impl KmsProxy {
    /// Starts the proxy with `args` (e.g. `["--drop-response", "ImportKeyMaterial"]`), logging
    /// every request.
    pub fn start(args: &[&str]) -> KmsProxy {
        use std::io::BufRead;
        let upstream = require_env("AWS_ENDPOINT_URL_KMS");
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("proxy.log");
        let mut child = Command::new("python3")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/kms-proxy"))
            .args(["--upstream", &upstream, "--log"])
            .arg(&log)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start scripts/kms-proxy");
        let mut first = String::new();
        std::io::BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut first)
            .expect("read the proxy's address");
        let url = first
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("kms-proxy said {first:?}"))
            .to_string();
        KmsProxy {
            child,
            url,
            log,
            _dir: dir,
        }
    }

    /// How many requests of `op` the proxy saw, and their outcomes.
    pub fn calls(&self, op: &str) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let mut parts = l.split_whitespace();
                let _time = parts.next()?;
                (parts.next()? == op).then(|| parts.next().unwrap_or("").to_string())
            })
            .collect()
    }
}

impl Drop for KmsProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl TestKms {
    /// The key ARN DescribeKey reports for `key` (an alias names the key it points at).
    pub fn arn(&self, key: &str) -> String {
        let out = self
            .rt
            .block_on(self.client.describe_key().key_id(key).send())
            .expect("DescribeKey");
        out.key_metadata().unwrap().arn().unwrap().to_string()
    }

    /// The Origin DescribeKey reports for `key`.
    pub fn origin(&self, key: &str) -> String {
        let out = self
            .rt
            .block_on(self.client.describe_key().key_id(key).send())
            .expect("DescribeKey");
        out.key_metadata()
            .unwrap()
            .origin()
            .unwrap()
            .as_str()
            .to_string()
    }

    /// UpdateAlias, as someone outside the ceremony would (with the key id: LocalStack
    /// mishandles an ARN here).
    pub fn update_alias(&self, alias: &str, key: &str) {
        let key = key.rsplit_once(":key/").map_or(key, |(_, id)| id);
        self.rt
            .block_on(
                self.client
                    .update_alias()
                    .alias_name(alias)
                    .target_key_id(key)
                    .send(),
            )
            .expect("UpdateAlias");
    }

    /// The tags KMS reports for `key`.
    pub fn tags(&self, key: &str) -> Vec<(String, String)> {
        let out = self
            .rt
            .block_on(self.client.list_resource_tags().key_id(key).send())
            .expect("ListResourceTags");
        out.tags()
            .iter()
            .map(|t| (t.tag_key().to_string(), t.tag_value().to_string()))
            .collect()
    }
}

/// The usage attributes of one EC key pair, read with cryptoki directly (not through byok):
/// `(name, value)` for the private key's `CKA_SIGN`, `CKA_SIGN_RECOVER`, `CKA_DECRYPT`,
/// `CKA_UNWRAP`, `CKA_DERIVE` and the public key's `CKA_VERIFY`, `CKA_VERIFY_RECOVER`,
/// `CKA_ENCRYPT`, `CKA_WRAP`, `CKA_DERIVE`, in that order (`None`: not reported).
pub type PairUsage = Vec<(&'static str, Option<bool>)>;

/// What a token holds for the EC key pair labelled `key_label`, read with cryptoki directly.
pub struct PairOnToken {
    /// SHA-256 (hex) of the P-256 SPKI DER built from the public key's `CKA_EC_POINT`.
    pub public_key_sha256: String,
    pub usage: PairUsage,
}

impl SoftHsm {
    /// Loads this store's module in this process, logs in to the token labelled `token` with
    /// `pin`, reads the EC key pair labelled `key_label`, and finalises the module again.
    pub fn pair_on_token(&self, token: &str, pin: &str, key_label: &str) -> PairOnToken {
        use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
        use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass};
        use cryptoki::session::UserType;
        self.use_in_process();
        let ctx = Pkcs11::new(self.kind.module()).expect("load module");
        ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
            .expect("C_Initialize");
        let slot = ctx
            .get_slots_with_token()
            .unwrap()
            .into_iter()
            .find(|s| ctx.get_token_info(*s).unwrap().label().trim_end() == token)
            .unwrap_or_else(|| panic!("no token {token:?}"));
        let session = ctx.open_rw_session(slot).unwrap();
        session
            .login(
                UserType::User,
                Some(&secrecy::SecretString::from(pin.to_string())),
            )
            .unwrap();
        let one = |class: ObjectClass| {
            let found = session
                .find_objects(&[
                    Attribute::Class(class),
                    Attribute::KeyType(KeyType::EC),
                    Attribute::Label(key_label.as_bytes().to_vec()),
                ])
                .unwrap();
            assert_eq!(found.len(), 1, "one {class} labelled {key_label:?}");
            found[0]
        };
        let (private, public) = (one(ObjectClass::PRIVATE_KEY), one(ObjectClass::PUBLIC_KEY));
        let read = |object, asked: &[(&'static str, AttributeType)]| -> PairUsage {
            let types: Vec<AttributeType> = asked.iter().map(|(_, t)| *t).collect();
            let attrs = session.get_attributes(object, &types).unwrap();
            asked
                .iter()
                .map(|(name, want)| {
                    let value = attrs.iter().find_map(|a| match (a, want) {
                        (Attribute::Sign(v), AttributeType::Sign)
                        | (Attribute::SignRecover(v), AttributeType::SignRecover)
                        | (Attribute::Decrypt(v), AttributeType::Decrypt)
                        | (Attribute::Unwrap(v), AttributeType::Unwrap)
                        | (Attribute::Derive(v), AttributeType::Derive)
                        | (Attribute::Verify(v), AttributeType::Verify)
                        | (Attribute::VerifyRecover(v), AttributeType::VerifyRecover)
                        | (Attribute::Encrypt(v), AttributeType::Encrypt)
                        | (Attribute::Wrap(v), AttributeType::Wrap) => Some(*v),
                        _ => None,
                    });
                    (*name, value)
                })
                .collect()
        };
        let mut usage = read(
            private,
            &[
                ("private CKA_SIGN", AttributeType::Sign),
                ("private CKA_SIGN_RECOVER", AttributeType::SignRecover),
                ("private CKA_DECRYPT", AttributeType::Decrypt),
                ("private CKA_UNWRAP", AttributeType::Unwrap),
                ("private CKA_DERIVE", AttributeType::Derive),
            ],
        );
        usage.extend(read(
            public,
            &[
                ("public CKA_VERIFY", AttributeType::Verify),
                ("public CKA_VERIFY_RECOVER", AttributeType::VerifyRecover),
                ("public CKA_ENCRYPT", AttributeType::Encrypt),
                ("public CKA_WRAP", AttributeType::Wrap),
                ("public CKA_DERIVE", AttributeType::Derive),
            ],
        ));
        let point = session
            .get_attributes(public, &[AttributeType::EcPoint])
            .unwrap()
            .into_iter()
            .find_map(|a| match a {
                Attribute::EcPoint(p) => Some(p),
                _ => None,
            })
            .expect("CKA_EC_POINT");
        drop(session);
        ctx.finalize().expect("C_Finalize");
        // The uncompressed point 04||X||Y ends CKA_EC_POINT, whether or not the token wraps it
        // in a DER OCTET STRING; the SPKI of a P-256 key is a fixed prefix and the point.
        assert!(point.len() >= 65, "CKA_EC_POINT of {} bytes", point.len());
        let raw = &point[point.len() - 65..];
        assert_eq!(raw[0], 4, "uncompressed point");
        let mut spki = hex::decode("3059301306072a8648ce3d020106082a8648ce3d030107034200").unwrap();
        spki.extend_from_slice(raw);
        PairOnToken {
            public_key_sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&spki)),
            usage,
        }
    }
}

/// What a sign-only pair reads back as: sign and verify true, everything else false.
pub fn sign_only_usage() -> PairUsage {
    [
        ("private CKA_SIGN", true),
        ("private CKA_SIGN_RECOVER", false),
        ("private CKA_DECRYPT", false),
        ("private CKA_UNWRAP", false),
        ("private CKA_DERIVE", false),
        ("public CKA_VERIFY", true),
        ("public CKA_VERIFY_RECOVER", false),
        ("public CKA_ENCRYPT", false),
        ("public CKA_WRAP", false),
        ("public CKA_DERIVE", false),
    ]
    .into_iter()
    .map(|(n, v)| (n, Some(v)))
    .collect()
}

/// The records of a transcript file, parsed (the test fails on a line that is not JSON).
pub fn records(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// How many of `recs` are of type `kind`.
pub fn count(recs: &[serde_json::Value], kind: &str) -> usize {
    recs.iter().filter(|r| r["type"] == kind).count()
}

/// `byok run FILE --transcript TRANSCRIPT` on `hsm`'s tokens, with `stdin` as the answers.
pub fn run_ceremony(
    hsm: &SoftHsm,
    file: &Path,
    transcript: &Path,
    stdin: &str,
) -> std::process::Output {
    let mut cmd = hsm.byok();
    cmd.arg("run").arg(file).arg("--transcript").arg(transcript);
    run_with_stdin(cmd, stdin)
}

/// Inside `impl Kms for X`, where `X` has a field `real` that is a `Kms` (LocalStack): the
/// named methods, each forwarded to `self.real` unchanged. A test double writes out only the
/// calls it changes.
macro_rules! forward_kms {
    ($($method:ident),* $(,)?) => { $( crate::common::forward_kms!(@one $method); )* };
    (@one whereabouts) => {
        fn whereabouts(&self, probe_key: &str) -> Result<byok::kms::Whereabouts, byok::kms::KmsError> {
            self.real.whereabouts(probe_key)
        }
    };
    (@one describe_key) => {
        fn describe_key(&self, key: &str) -> Result<byok::kms::KeyInfo, byok::kms::KmsError> {
            self.real.describe_key(key)
        }
    };
    (@one create_key) => {
        fn create_key(
            &self,
            description: &str,
            tags: &std::collections::BTreeMap<String, String>,
        ) -> Result<byok::kms::KeyInfo, byok::kms::KmsError> {
            self.real.create_key(description, tags)
        }
    };
    (@one create_alias) => {
        fn create_alias(&self, alias: &str, key_arn: &str) -> Result<(), byok::kms::KmsError> {
            self.real.create_alias(alias, key_arn)
        }
    };
    (@one update_alias) => {
        fn update_alias(&self, alias: &str, key_arn: &str) -> Result<(), byok::kms::KmsError> {
            self.real.update_alias(alias, key_arn)
        }
    };
    (@one list_resource_tags) => {
        fn list_resource_tags(
            &self,
            key_arn: &str,
        ) -> Result<std::collections::BTreeMap<String, String>, byok::kms::KmsError> {
            self.real.list_resource_tags(key_arn)
        }
    };
    (@one find_tagged_keys) => {
        fn find_tagged_keys(
            &self,
            key: &str,
            value: &str,
        ) -> Result<Vec<String>, byok::kms::KmsError> {
            self.real.find_tagged_keys(key, value)
        }
    };
    (@one get_parameters_for_import) => {
        fn get_parameters_for_import(
            &self,
            key_arn: &str,
            algorithm: byok::wrap::WrappingAlgorithm,
            spec: byok::wrap::WrappingKeySpec,
        ) -> Result<byok::kms::ImportParameters, byok::kms::KmsError> {
            self.real.get_parameters_for_import(key_arn, algorithm, spec)
        }
    };
    (@one import_key_material) => {
        fn import_key_material(
            &self,
            key_arn: &str,
            token: &byok::kms::ImportToken,
            blob: &[u8],
            expiration: byok::kms::Expiration,
            import_type: byok::kms::ImportType,
            description: Option<&str>,
        ) -> Result<Option<String>, byok::kms::KmsError> {
            self.real
                .import_key_material(key_arn, token, blob, expiration, import_type, description)
        }
    };
    (@one rotate_key_on_demand) => {
        fn rotate_key_on_demand(&self, key_arn: &str) -> Result<(), byok::kms::KmsError> {
            self.real.rotate_key_on_demand(key_arn)
        }
    };
    (@one list_key_materials) => {
        fn list_key_materials(
            &self,
            key_arn: &str,
        ) -> Result<Vec<byok::kms::KeyMaterialInfo>, byok::kms::KmsError> {
            self.real.list_key_materials(key_arn)
        }
    };
    (@one encrypt) => {
        fn encrypt(&self, key_arn: &str, plaintext: &[u8]) -> Result<Vec<u8>, byok::kms::KmsError> {
            self.real.encrypt(key_arn, plaintext)
        }
    };
    (@one decrypt) => {
        fn decrypt(
            &self,
            key_arn: &str,
            ciphertext: &[u8],
        ) -> Result<(Vec<u8>, String), byok::kms::KmsError> {
            self.real.decrypt(key_arn, ciphertext)
        }
    };
}
pub(crate) use forward_kms;

/// The scripted answers of one approval point (`plan`, `import`, `rotate` or `swap`) given by
/// `names`, in order: each custodian selected, approving, and their PIN.
pub fn approve_answers(token: &SoftHsm, point: &str, names: &[&str]) -> Vec<byok::prompt::Answer> {
    use byok::prompt::Answer;
    let (select, confirm): (&'static str, &'static str) = match point {
        "plan" => ("approver-plan", "approve-plan"),
        "import" => ("approver-import", "approve-import"),
        "rotate" => ("approver-rotate", "approve-rotate"),
        "swap" => ("approver-swap", "approve-swap"),
        other => panic!("unknown approval point {other}"),
    };
    names
        .iter()
        .flat_map(|n| {
            [
                Answer::Select(select, n.to_string()),
                Answer::Confirm(confirm, true),
                Answer::Secret("custodian-pin", token.custodian(n).pin.clone()),
            ]
        })
        .collect()
}

/// Runs `file` in-process on `token`'s HSM against `kms`, answering with `answers`; returns
/// the result, what byok said, and the transcript's records (none when it was never started).
pub fn run_in_process(
    token: &SoftHsm,
    file: &Path,
    transcript: &Path,
    kms: &dyn byok::kms::Kms,
    answers: Vec<byok::prompt::Answer>,
) -> (
    Result<byok::ceremony::Outcome, byok::Error>,
    Vec<String>,
    Vec<serde_json::Value>,
) {
    token.use_in_process();
    let c = byok::spec::load(file, time::OffsetDateTime::now_utc()).unwrap();
    let hsm = byok::hsm::Pkcs11Hsm::open_path(
        Path::new(&token.kind.module()),
        &byok::hsm::TokenSelector::Label("byok-hsm".into()),
    )
    .unwrap();
    let mut prompter = byok::prompt::ScriptedPrompter::new(answers);
    let custodians = byok::hsm::Pkcs11Custodians::for_hsm(&hsm);
    let clock = time::OffsetDateTime::now_utc;
    let result = byok::ceremony::run(
        &c,
        byok::ceremony::Env {
            hsm: &hsm,
            kms,
            custodians: &custodians,
            prompter: &mut prompter,
            now: &clock,
        },
        transcript,
        &byok::ceremony::RunOptions::default(),
    );
    drop(custodians);
    drop(hsm);
    let recs = if transcript.exists() {
        records(transcript)
    } else {
        Vec::new()
    };
    (result, prompter.transcript, recs)
}
