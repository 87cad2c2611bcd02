//! Whole two-custodian ceremonies in a real pseudo-terminal (tmux), as a custodian sees it:
//! hidden PIN prompts, selection lists and confirmations, including a wrong PIN; and the same
//! with stdout and stderr going to a log, the prompts staying on the terminal.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{
    SoftHsm, TestKms, assert_contains, byok, ceremony_for, module, require_env, stdout,
};

struct Tmux {
    socket: String,
}

impl Tmux {
    /// A detached tmux session `byok` (250x60) running `command` in its own server.
    fn start(command: &str) -> Tmux {
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
                "250",
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

#[test]
fn a_two_custodian_ceremony_in_a_real_terminal_with_a_wrong_pin() {
    let hsm = SoftHsm::new();
    let kms = TestKms::new();
    let (arn, alias) = kms.external_key();
    let file = ceremony_for(&hsm, "demo-softhsm.toml", &alias, &[]);
    let transcript = hsm.path("t.jsonl");
    let tmux = Tmux::start(&format!(
        "{}; echo BYOK-EXIT=$?; sleep 60",
        byok_run(&hsm, &file, &transcript)
    ));

    let pin = |name: &str| hsm.custodian(name).pin.clone();
    tmux.wait("User PIN for HSM token", 1);
    tmux.type_line(&hsm.pin);

    // Plan: Alice (first in the list) with a wrong PIN first, then Bob.
    tmux.wait("Custodian approving the plan (1 of 2)", 1);
    tmux.keys(&["Enter"]);
    tmux.wait("Alice, do you approve this plan statement", 1);
    tmux.type_line("y");
    tmux.wait("PIN for Alice's token", 1);
    tmux.type_line("00000000");
    tmux.wait("is incorrect (attempt 1 of 3); try again", 1);
    tmux.wait("PIN for Alice's token", 2);
    tmux.type_line(&pin("Alice"));
    tmux.wait("Custodian approving the plan (2 of 2)", 1);
    tmux.keys(&["Down", "Enter"]);
    tmux.wait("Bob, do you approve this plan statement", 1);
    tmux.type_line("y");
    tmux.wait("PIN for Bob's token", 1);
    tmux.type_line(&pin("Bob"));

    // Import: Alice and Carol.
    tmux.wait("Custodian approving the import (1 of 2)", 1);
    tmux.keys(&["Enter"]);
    tmux.wait("Alice, do you approve this import statement", 1);
    tmux.type_line("y");
    tmux.wait("PIN for Alice's token", 3);
    tmux.type_line(&pin("Alice"));
    tmux.wait("Custodian approving the import (2 of 2)", 1);
    tmux.keys(&["Down", "Down", "Enter"]);
    tmux.wait("Carol, do you approve this import statement", 1);
    tmux.type_line("y");
    tmux.wait("PIN for Carol's token", 1);
    tmux.type_line(&pin("Carol"));

    tmux.wait("BYOK-EXIT=", 1);
    let screen = tmux.screen();
    assert_contains(&screen, "BYOK-EXIT=0");
    assert_contains(&screen, "plan     approved by Alice, Bob");
    assert_contains(&screen, "import   approved by Alice, Carol");
    // No PIN was echoed.
    for name in ["Alice", "Bob", "Carol"] {
        assert!(
            !screen.contains(&pin(name)),
            "{name}'s PIN appeared on the screen"
        );
    }
    assert!(!screen.contains(&hsm.pin));
    assert_eq!(kms.state(&arn), "Enabled");

    let v = byok()
        .arg("verify")
        .arg(&transcript)
        .args(["--audit-key-sha256", &hsm.audit_sha256])
        .output()
        .unwrap();
    assert_eq!(v.status.code(), Some(0), "{}", stdout(&v));
    assert_contains(&stdout(&v), "approved        plan: Alice, Bob");
    assert_contains(&stdout(&v), "approved        import: Alice, Carol");
}

#[test]
fn a_ceremony_logged_with_tee_keeps_its_prompts_and_pins_out_of_the_log() {
    let hsm = SoftHsm::new();
    let kms = TestKms::new();
    let (arn, alias) = kms.external_key();
    let file = ceremony_for(&hsm, "demo-softhsm.toml", &alias, &[]);
    let transcript = hsm.path("t.jsonl");
    let log = hsm.path("ceremony.log");
    // stdin stays the terminal; stdout and stderr both go through tee into the log.
    let tmux = Tmux::start(&format!(
        "({}; echo BYOK-EXIT=$?) 2>&1 | tee {}; sleep 60",
        byok_run(&hsm, &file, &transcript),
        log.display()
    ));

    let pin = |name: &str| hsm.custodian(name).pin.clone();
    tmux.wait("User PIN for HSM token", 1);
    tmux.type_line(&hsm.pin);
    for (point, second) in [("plan", "Bob"), ("import", "Carol")] {
        tmux.wait(&format!("Custodian approving the {point} (1 of 2)"), 1);
        tmux.keys(&["Enter"]);
        tmux.wait(&format!("Alice, do you approve this {point} statement"), 1);
        tmux.type_line("y");
        tmux.wait("PIN for Alice's token", if point == "plan" { 1 } else { 2 });
        tmux.type_line(&pin("Alice"));
        tmux.wait(&format!("Custodian approving the {point} (2 of 2)"), 1);
        let downs = if second == "Bob" { 1 } else { 2 };
        let mut keys = vec!["Down"; downs];
        keys.push("Enter");
        tmux.keys(&keys);
        tmux.wait(
            &format!("{second}, do you approve this {point} statement"),
            1,
        );
        tmux.type_line("y");
        tmux.wait(&format!("PIN for {second}'s token"), 1);
        tmux.type_line(&pin(second));
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
    assert!(!log.contains(&hsm.pin), "the HSM PIN is in the log");
    for name in ["Alice", "Bob", "Carol"] {
        assert!(!log.contains(&pin(name)), "{name}'s PIN is in the log");
    }
}
