//! Whole two-custodian ceremonies in a real pseudo-terminal (tmux), as a custodian sees it:
//! hidden PIN prompts, selection lists and confirmations, including a wrong PIN; and the same
//! with stdout and stderr going to a log, the prompts staying on the terminal.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{
    KmsProxy, SoftHsm, TestKms, assert_contains, byok, ceremony_for, module, require_env, stdout,
};

struct Tmux {
    socket: String,
}

impl Tmux {
    /// A detached tmux session `byok` (`width`x60) running `command` in its own server.
    fn start(command: &str) -> Tmux {
        Tmux::start_width(command, 250)
    }

    fn start_width(command: &str, width: u16) -> Tmux {
        let tmux = Tmux {
            socket: format!("byok-test-{}", std::process::id()),
        };
        let status = tmux
            .cmd()
            .args([
                "new-session",
                "-d",
                "-s",
                "byok",
                "-x",
                &width.to_string(),
                "-y",
                "60",
                command,
            ])
            .status()
            .expect("tmux must be installed (scripts/testenv install)");
        assert!(status.success());
        tmux
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.socket]);
        c
    }

    fn screen(&self) -> String {
        let out = self
            .cmd()
            .args(["capture-pane", "-p", "-J", "-S", "-5000", "-t", "byok"])
            .output()
            .expect("tmux must be installed (scripts/testenv install)");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until `text` appears at least `n` times on the screen.
    fn wait(&self, text: &str, n: usize) {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if screen.matches(text).count() >= n {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "timed out waiting for {text:?} (x{n}); screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn keys(&self, keys: &[&str]) {
        for k in keys {
            let status = self
                .cmd()
                .args(["send-keys", "-t", "byok", k])
                .status()
                .unwrap();
            assert!(status.success());
            std::thread::sleep(Duration::from_millis(60));
        }
    }

    fn type_line(&self, text: &str) {
        let status = self
            .cmd()
            .args(["send-keys", "-t", "byok", "-l", text])
            .status()
            .unwrap();
        assert!(status.success());
        self.keys(&["Enter"]);
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").status();
    }
}

/// `env VAR=… byok run FILE --transcript TRANSCRIPT`, for a shell command line.
fn byok_run(hsm: &SoftHsm, file: &Path, transcript: &Path) -> String {
    let envs = [
        "AWS_ENDPOINT_URL_KMS",
        "AWS_ENDPOINT_URL_STS",
        "AWS_REGION",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    ]
    .map(|k| format!("{k}={}", require_env(k)));
    format!(
        "env {}={} BYOK_PKCS11_MODULE={} {} {} run {} --transcript {}",
        hsm.kind.conf_var(),
        hsm.conf.display(),
        module(),
        envs.join(" "),
        env!("CARGO_BIN_EXE_byok"),
        file.display(),
        transcript.display()
    )
}

/// Ceremony day in a 120-column terminal: the plan in words above its hash, a wrong PIN asked
/// again, a custodian who fails three PINs and another who steps in, and a wrong name undone
/// with Escape, recording nothing.
#[test]
fn ceremony_day_in_a_real_terminal_hand_over_and_going_back() {
    let hsm = SoftHsm::new();
    let kms = TestKms::new();
    let (arn, alias) = kms.external_key();
    let file = ceremony_for(&hsm, "demo-softhsm.toml", &alias, &[]);
    let transcript = hsm.path("t.jsonl");
    let tmux = Tmux::start_width(
        &format!(
            "{}; echo BYOK-EXIT=$?; sleep 60",
            byok_run(&hsm, &file, &transcript)
        ),
        120,
    );
    let pin = |name: &str| hsm.custodian(name).pin.clone();
    tmux.wait("User PIN for HSM token", 1);
    tmux.type_line(&hsm.pin);

    // The plan screen: the plan in words, then the statement's SHA-256 on a line of its own.
    tmux.wait("Custodian approving the plan (1 of 2)", 1);
    let screen = tmux.screen();
    for line in [
        "What you approve (the plan):",
        "algorithm      RSAES_OAEP_SHA_1 with RSA_4096",
        "key material   AES-256 generated in the HSM, destroyed after the import",
        "wrap           inside the HSM (token label \"byok-hsm\")",
        "expiry         does not expire (KEY_MATERIAL_DOES_NOT_EXPIRE)",
        "quorum         2 of 3 custodians (Alice, Bob, Carol)",
        &format!("0  {alias}  us-east-1  {arn} (PendingImport)"),
    ] {
        assert_contains(&screen, line);
    }
    let lines: Vec<&str> = screen.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.contains("must approve this plan statement. Its SHA-256:"))
        .expect("the hash heading");
    let hash = lines[at + 1].trim();
    assert!(
        hash.len() == 64 && hash.chars().all(|c| c.is_ascii_hexdigit()),
        "{:?}",
        lines[at + 1]
    );
    // The hash and the question each fit on one line of the 120-column terminal.
    assert!(lines[at].chars().count() <= 120, "{}", lines[at]);

    // Alice: a wrong PIN, then the right one.
    tmux.keys(&["Enter"]);
    tmux.wait("Alice: approve the plan statement", 1);
    let question = tmux
        .screen()
        .lines()
        .find(|l| l.contains("Alice: approve the plan statement"))
        .unwrap()
        .to_string();
    assert!(question.chars().count() <= 120, "{question}");
    tmux.type_line("y");
    tmux.wait("PIN for Alice's token", 1);
    tmux.type_line("00000000");
    tmux.wait("is incorrect (attempt 1 of 3); try again", 1);
    tmux.wait("PIN for Alice's token", 2);
    tmux.type_line(&pin("Alice"));
    // Bob fails three times; Carol steps in. Alice is no longer offered.
    tmux.wait("Custodian approving the plan (2 of 2)", 1);
    tmux.keys(&["Enter"]);
    tmux.wait("Bob: approve the plan statement", 1);
    tmux.type_line("y");
    for attempt in 1..=3 {
        tmux.wait("PIN for Bob's token", attempt);
        tmux.type_line("11111111");
    }
    tmux.wait(
        "Another custodian may step in (1 of 2 approved; Carol remain)",
        1,
    );
    tmux.wait("Custodian approving the plan (2 of 2)", 2);
    tmux.keys(&["Enter"]);
    tmux.wait("Carol: approve the plan statement", 1);
    tmux.type_line("y");
    tmux.wait("PIN for Carol's token", 1);
    tmux.type_line(&pin("Carol"));

    // Import: Alice chosen by mistake, Escape goes back; then Bob and Carol.
    tmux.wait("Custodian approving the import (1 of 2)", 1);
    tmux.keys(&["Enter"]);
    tmux.wait("Alice: approve the import statement", 1);
    tmux.keys(&["Escape", "Enter"]);
    tmux.wait("back to the custodian list; nothing recorded for Alice", 1);
    tmux.wait("Custodian approving the import (1 of 2)", 2);
    tmux.keys(&["Down", "Enter"]);
    tmux.wait("Bob: approve the import statement", 1);
    tmux.type_line("y");
    tmux.wait("PIN for Bob's token", 4);
    tmux.type_line(&pin("Bob"));
    tmux.wait("Custodian approving the import (2 of 2)", 1);
    tmux.keys(&["Down", "Enter"]);
    tmux.wait("Carol: approve the import statement", 1);
    tmux.type_line("y");
    tmux.wait("PIN for Carol's token", 2);
    tmux.type_line(&pin("Carol"));

    tmux.wait("BYOK-EXIT=", 1);
    let screen = tmux.screen();
    assert_contains(&screen, "BYOK-EXIT=0");
    assert_contains(&screen, "plan     approved by Alice, Carol");
    assert_contains(&screen, "import   approved by Bob, Carol");
    // Each question was drawn once, not redrawn line after line.
    assert_eq!(
        screen.matches("Alice: approve the plan statement").count(),
        1
    );
    for name in ["Alice", "Bob", "Carol"] {
        assert!(
            !screen.contains(&pin(name)),
            "{name}'s PIN is on the screen"
        );
    }
    assert!(!screen.contains(&hsm.pin));
    assert_eq!(kms.state(&arn), "Enabled");

    let recs: Vec<serde_json::Value> = std::fs::read_to_string(&transcript)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let failed: Vec<&serde_json::Value> = recs
        .iter()
        .filter(|r| r["type"] == "approval_failed")
        .map(|r| &r["data"])
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["custodian"], "Bob");
    assert_eq!(failed[0]["pin_attempts"], 3);
    assert!(!recs.iter().any(|r| r["type"] == "declined"));
    let v = byok()
        .arg("verify")
        .arg(&transcript)
        .args(["--audit-key-sha256", &hsm.audit_sha256])
        .output()
        .unwrap();
    assert_eq!(v.status.code(), Some(0), "{}", stdout(&v));
    assert_contains(&stdout(&v), "approved        plan: Alice, Carol");
    assert_contains(&stdout(&v), "approved        import: Bob, Carol");
}

#[test]
fn a_ceremony_logged_with_tee_keeps_its_prompts_and_pins_out_of_the_log() {
    let hsm = SoftHsm::new();
    let kms = TestKms::new();
    let (arn, alias) = kms.external_key();
    let file = ceremony_for(&hsm, "demo-softhsm.toml", &alias, &[]);
    let transcript = hsm.path("t.jsonl");
    let log = hsm.path("ceremony.log");
    // A slow KMS: every answer waits 1.5 s in the proxy.
    let proxy = KmsProxy::start(&["--delay-ms", "1500"]);
    // stdin stays the terminal; stdout and stderr both go through tee into the log.
    let tmux = Tmux::start(&format!(
        "({}; echo BYOK-EXIT=$?) 2>&1 | tee {}; sleep 60",
        {
            let mut command = byok_run(&hsm, &file, &transcript);
            for (var, url) in crate::common::use_endpoint(&file, &proxy.url) {
                command = command.replace(
                    &format!("{var}={}", require_env(var)),
                    &format!("{var}={url}"),
                );
            }
            command
        },
        log.display()
    ));

    let pin = |name: &str| hsm.custodian(name).pin.clone();
    tmux.wait("User PIN for HSM token", 1);
    tmux.type_line(&hsm.pin);
    for (point, second) in [("plan", "Bob"), ("import", "Carol")] {
        tmux.wait(&format!("Custodian approving the {point} (1 of 2)"), 1);
        tmux.keys(&["Enter"]);
        tmux.wait(&format!("Alice: approve the {point} statement"), 1);
        tmux.type_line("y");
        tmux.wait("PIN for Alice's token", if point == "plan" { 1 } else { 2 });
        tmux.type_line(&pin("Alice"));
        tmux.wait(&format!("Custodian approving the {point} (2 of 2)"), 1);
        // Alice is no longer offered: Bob is first, Carol second.
        let downs = if second == "Bob" { 0 } else { 1 };
        let mut keys = vec!["Down"; downs];
        keys.push("Enter");
        tmux.keys(&keys);
        tmux.wait(&format!("{second}: approve the {point} statement"), 1);
        tmux.type_line("y");
        tmux.wait(&format!("PIN for {second}'s token"), 1);
        tmux.type_line(&pin(second));
        if point == "plan" {
            // KMS answers slowly (the proxy waits 1.5 s): the wait shows on the terminal.
            tmux.wait("waiting for KMS: GetParametersForImport for 1 target(s)", 1);
        }
    }

    tmux.wait("BYOK-EXIT=", 1);
    assert_contains(&tmux.screen(), "BYOK-EXIT=0");
    assert_eq!(kms.state(&arn), "Enabled");

    let log = std::fs::read_to_string(&log).unwrap();
    // The run finished, and the log has its headings, approvals and summary...
    assert_contains(&log, "Approve the plan (dual control)");
    assert_contains(&log, "Import into KMS and verify");
    assert_contains(&log, "plan     approved by Alice, Bob");
    assert_contains(&log, "import   approved by Alice, Carol");
    assert_contains(&log, "transcript fingerprint");
    assert_contains(&log, "BYOK-EXIT=0");
    // ...but no prompt (they were drawn on the terminal) and no PIN.
    assert!(
        !log.contains("User PIN for HSM token") && !log.contains("PIN for Alice's token"),
        "a prompt reached the log:\n{log}"
    );
    // Progress was drawn on the terminal only.
    assert!(
        !log.contains("waiting for KMS"),
        "progress reached the log:\n{log}"
    );
    assert!(!proxy.calls("GetParametersForImport").is_empty());
    assert!(!log.contains(&hsm.pin), "the HSM PIN is in the log");
    for name in ["Alice", "Bob", "Carol"] {
        assert!(!log.contains(&pin(name)), "{name}'s PIN is in the log");
    }
}
