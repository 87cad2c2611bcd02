//! A whole two-custodian ceremony in a real pseudo-terminal (tmux), as a custodian sees it:
//! dialoguer's hidden PIN prompts, selection lists and confirmations, including a wrong PIN.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{
    SoftHsm, TestKms, assert_contains, byok, ceremony_for, module, require_env, stdout,
};

struct Tmux {
    socket: String,
}

impl Tmux {
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

#[test]
fn a_two_custodian_ceremony_in_a_real_terminal_with_a_wrong_pin() {
    let hsm = SoftHsm::new();
    let kms = TestKms::new();
    let (arn, alias) = kms.external_key();
    let file = ceremony_for(&hsm, "demo-softhsm.toml", &alias, &[]);
    let transcript = hsm.path("t.jsonl");
    let envs = [
        "AWS_ENDPOINT_URL_KMS",
        "AWS_REGION",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    ]
    .map(|k| format!("{k}={}", require_env(k)));
    let command = format!(
        "env {}={} BYOK_PKCS11_MODULE={} {} {} run {} --transcript {}; echo BYOK-EXIT=$?; sleep 60",
        hsm.kind.conf_var(),
        hsm.conf.display(),
        module(),
        envs.join(" "),
        env!("CARGO_BIN_EXE_byok"),
        file.display(),
        transcript.display()
    );
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
            &command,
        ])
        .status()
        .expect("tmux must be installed (scripts/testenv install)");
    assert!(status.success());

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
