//! Process hardening, observed from outside the process: no core dump of a running in-HSM
//! ceremony that holds the custodians' PINs, and a process the kernel treats as not dumpable.
//!
//! Each check first shows, on an ordinary process in the same conditions, that the kernel
//! would write a core file and would allow the access, so the check can fail.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;

use crate::common::{SoftHsm, TestKms, ceremony_for};

/// `program args…` started by bash after `ulimit -c unlimited`, in `dir`.
fn with_core_dumps(dir: &Path, program: &Command) -> Command {
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg("ulimit -c unlimited && exec \"$0\" \"$@\"")
        .arg(program.get_program())
        .args(program.get_args())
        .current_dir(dir);
    for (k, v) in program.get_envs() {
        if let Some(v) = v {
            cmd.env(k, v);
        }
    }
    cmd
}

fn cores(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("core"))
        .collect()
}

/// The owner of `/proc/PID/status` and the process's real uid from its `Uid:` line. The kernel
/// hands a non-dumpable process's /proc files to root, whatever the process's uid.
fn proc_owner_and_uid(pid: u32) -> (u32, u32) {
    use std::os::unix::fs::MetadataExt;
    let path = format!("/proc/{pid}/status");
    let owner = std::fs::metadata(&path).unwrap().uid();
    let status = std::fs::read_to_string(&path).unwrap();
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    (owner, uid)
}

fn core_limit(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/limits"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap()
        .to_string()
}

fn stderr_lines(child: &mut Child) -> Receiver<String> {
    let (tx, rx) = channel();
    let err = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn wait_for(rx: &Receiver<String>, text: &str) {
    let mut seen = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) if line.contains(text) => return,
            Ok(line) => seen.push(line),
            Err(e) => panic!("no {text:?} ({e}); stderr so far:\n{}", seen.join("\n")),
        }
    }
}

#[test]
fn a_sigquit_of_a_running_in_hsm_ceremony_writes_no_core() {
    let hsm = SoftHsm::new();
    let kms = TestKms::new();
    let (_arn, alias) = kms.external_key();
    let file = ceremony_for(&hsm, "demo-softhsm.toml", &alias, &[]);
    let dir = tempfile::tempdir().unwrap();

    // Control: an ordinary process here dumps core on SIGQUIT.
    let mut sleep = with_core_dumps(dir.path(), Command::new("sleep").arg("30"))
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(sleep.id() as i32, libc::SIGQUIT) }, 0);
    let status = sleep.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGQUIT));
    assert!(status.core_dumped(), "the control process dumped no core");
    let control = cores(dir.path());
    assert_eq!(control.len(), 1, "{control:?}");
    std::fs::remove_file(dir.path().join(&control[0])).unwrap();

    // The ceremony: the HSM PIN and two custodian PINs typed, waiting at the import approval.
    let mut run = hsm.byok();
    run.arg("run")
        .arg(&file)
        .arg("--transcript")
        .arg(dir.path().join("t.jsonl"));
    let mut child = with_core_dumps(dir.path(), &run)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rx = stderr_lines(&mut child);
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(hsm.through_plan().as_bytes()).unwrap();
    stdin.flush().unwrap();
    wait_for(&rx, "byok? select approver-import");
    let pid = child.id();
    assert_eq!(
        core_limit(pid).split_whitespace().collect::<Vec<_>>()[4..6],
        ["0", "0"],
        "{}",
        core_limit(pid)
    );
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGQUIT) }, 0);
    let status = child.wait().unwrap();
    drop(stdin);
    assert_eq!(status.signal(), Some(libc::SIGQUIT));
    assert!(!status.core_dumped());
    assert_eq!(cores(dir.path()), Vec::<String>::new());
}

const NOBODY: u32 = 65534;

/// byok run as an unprivileged user (so that /proc ownership tells), waiting at its first
/// prompt: the kernel reports it not dumpable.
#[test]
fn byok_is_not_dumpable_before_its_first_prompt() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    // SoftHSM on either pass: hardening is the process's, not the token's, and kryoptic's
    // module is built under root's home, which the unprivileged user cannot read.
    let hsm = SoftHsm::of_kind(crate::common::TokenKind::SoftHsm);
    let file = ceremony_for(&hsm, "demo-softhsm.toml", "alias/x", &[]);
    // The unprivileged user must read the token store and the ceremony file.
    let status = Command::new("chmod")
        .args(["-R", "a+rwX"])
        .arg(hsm.dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::set_permissions(hsm.dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();

    // Control: an ordinary process of that user owns its /proc files.
    let mut sleep = Command::new("sleep")
        .arg("30")
        .uid(NOBODY)
        .gid(NOBODY)
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(proc_owner_and_uid(sleep.id()), (NOBODY, NOBODY));
    sleep.kill().unwrap();
    sleep.wait().unwrap();

    let mut run = hsm.byok();
    run.arg("run")
        .arg(&file)
        .arg("--transcript")
        .arg(hsm.dir.path().join("t.jsonl"))
        .current_dir(hsm.dir.path())
        .uid(NOBODY)
        .gid(NOBODY)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = run.spawn().unwrap();
    let rx = stderr_lines(&mut child);
    wait_for(&rx, "byok? secret hsm-pin");
    let (owner, uid) = proc_owner_and_uid(child.id());
    assert_eq!(uid, NOBODY);
    assert_eq!(
        owner, 0,
        "byok's /proc files belong to its user: it is dumpable"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}
