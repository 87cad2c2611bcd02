//! `byok report` of real ceremonies (token under test, LocalStack KMS): the HTML page rendered
//! in headless Chromium (Debian's `chromium`, installed by `scripts/testenv install`), the
//! JSON, the exit codes, and hostile names.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::common::{
    SoftHsm, TestKms, assert_contains, byok, ceremony_for, records, run_ceremony, stderr, stdout,
};

/// A finished 2-of-3 ceremony (plan: Alice, Bob; import: Alice, Carol) into a fresh
/// EXTERNAL key, with `extra` set in the ceremony file and `answers` on stdin.
struct Done {
    hsm: SoftHsm,
    arn: String,
    transcript: PathBuf,
    run: Output,
}

fn ceremony(extra: &[(&str, &str)], answers: impl FnOnce(&SoftHsm) -> String) -> Done {
    let hsm = SoftHsm::new();
    let kms = TestKms::new();
    let (arn, alias) = kms.external_key();
    let file = ceremony_for(&hsm, "demo-softhsm.toml", &alias, extra);
    let transcript = hsm.path("t.jsonl");
    let run = run_ceremony(&hsm, &file, &transcript, &answers(&hsm));
    Done {
        hsm,
        arn,
        transcript,
        run,
    }
}

/// The value of a `name: value` line of `byok run`'s stdout.
fn run_says(run: &Output, name: &str) -> String {
    stdout(run)
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .unwrap_or_else(|| panic!("byok run printed no `{name}:` line: {}", stdout(run)))
        .to_string()
}

fn report(transcript: &Path, args: &[&str]) -> Output {
    byok()
        .arg("report")
        .arg(transcript)
        .args(args)
        .output()
        .unwrap()
}

/// SHA-256 of the RFC 8785 form of `statement`, computed here, not read from the record.
fn statement_sha256(statement: &Value) -> String {
    hex::encode(Sha256::digest(byok::jcs::to_vec(statement).unwrap()))
}

/// Headless Chromium: `BYOK_CHROMIUM`, else `chromium` on PATH. Fails (never skips) when it
/// is missing.
fn chromium(args: &[&str], page: &Path) -> Output {
    let program = std::env::var("BYOK_CHROMIUM").unwrap_or_else(|_| "chromium".into());
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new(&program)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            "--disable-extensions",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {program} ({e}): the HTML report test needs Debian's chromium package; run scripts/testenv install"
            )
        });
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("{program} did not finish within 120 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{program} failed: {}", stderr(&out));
    out
}

/// The page's DOM as Chromium built it.
fn dom(page: &Path) -> String {
    stdout(&chromium(&["--dump-dom"], page))
}

/// The text of a DOM: tags dropped, the five entities decoded, white space collapsed.
fn text_of(dom: &str) -> String {
    let mut text = String::new();
    let mut in_tag = false;
    for c in dom.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                text.push(' ');
            }
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&nbsp;", " ")
        .replace("&amp;", "&")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Renders `page` to a PNG and decodes it: (width, height, RGBA pixels).
fn screenshot(page: &Path, dir: &Path) -> (u32, u32, Vec<[u8; 4]>) {
    let png_path = dir.join("report.png");
    chromium(
        &[
            &format!("--screenshot={}", png_path.display()),
            "--window-size=1000,1400",
        ],
        page,
    );
    let decoder = png::Decoder::new(std::fs::File::open(&png_path).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let bytes = &buf[..info.buffer_size()];
    let pixels: Vec<[u8; 4]> = match info.color_type {
        png::ColorType::Rgba => bytes
            .chunks_exact(4)
            .map(|p| [p[0], p[1], p[2], p[3]])
            .collect(),
        png::ColorType::Rgb => bytes
            .chunks_exact(3)
            .map(|p| [p[0], p[1], p[2], 255])
            .collect(),
        other => panic!("unexpected PNG colour type {other:?}"),
    };
    assert_eq!(pixels.len(), (info.width * info.height) as usize);
    (info.width, info.height, pixels)
}

#[test]
fn the_html_report_of_a_real_ceremony_renders_in_chromium_with_the_facts() {
    let c = ceremony(&[], SoftHsm::all_answers);
    assert!(c.run.status.success(), "byok run: {}", stderr(&c.run));
    // What KMS answered (CreateKey, before the ceremony) and what the token computed (the
    // KCV byok run printed at the end of the ceremony).
    let kcv = run_says(&c.run, "kcv");
    assert_eq!(run_says(&c.run, "key"), c.arn);
    let fingerprint = run_says(
        &c.run,
        "transcript fingerprint (SHA-256 of the last line; write it down)",
    );
    let recs = records(&c.transcript);
    let digests: Vec<(String, String)> = recs
        .iter()
        .filter(|r| r["type"] == "approval")
        .map(|r| {
            (
                r["data"]["point"].as_str().unwrap().to_string(),
                statement_sha256(&r["data"]["statement"]),
            )
        })
        .collect();
    assert_eq!(digests.len(), 4, "two approvals per point");

    let page = c.hsm.path("report.html");
    let out = report(
        &c.transcript,
        &[
            "--audit-key-sha256",
            &c.hsm.audit_sha256,
            "--html",
            page.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_contains(&stdout(&out), "valid (pinned)");
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(!html.contains("<script"), "the page has no script");
    // Nothing to fetch: no URL, no link, no source, no CSS url().
    for needle in ["http://", "https://", "src=", "href=", "url(", "@import"] {
        assert!(
            !html.contains(needle),
            "the page refers to something outside: {needle}"
        );
    }

    let text = text_of(&dom(&page));
    for fact in [
        "✔ VALID",
        "pinned and matching",
        c.arn.as_str(),
        kcv.as_str(),
        c.hsm.audit_sha256.as_str(),
        fingerprint.as_str(),
        "Alice",
        "Bob",
        "Carol",
        "The plan statement",
        "The import statement",
        "Paper record",
        "Import into KMS and verify",
    ] {
        assert!(
            text.contains(fact),
            "the page does not show {fact:?}:\n{text}"
        );
    }
    for (point, digest) in &digests {
        assert!(
            text.contains(digest),
            "the page does not show the {point} statement digest {digest}"
        );
    }
    for k in &c.hsm.custodians {
        assert!(text.contains(&k.sha256), "no fingerprint of {}", k.name);
    }
    assert!(!text.contains("NOT PINNED") && !text.contains("INVALID"));

    let (w, h, pixels) = screenshot(&page, c.hsm.dir.path());
    assert_eq!((w, h), (1000, 1400));
    let colours: HashSet<[u8; 4]> = pixels.iter().copied().collect();
    let non_white = pixels
        .iter()
        .filter(|p| p[0] < 240 || p[1] < 240 || p[2] < 240)
        .count();
    assert!(
        colours.len() >= 50,
        "the screenshot has only {} distinct colours: blank or unstyled",
        colours.len()
    );
    assert!(
        non_white * 20 >= pixels.len(),
        "only {non_white} of {} pixels are not white: the page looks blank",
        pixels.len()
    );
    // The verdict box's border, in the valid green of the page's CSS (#1b7a2f).
    assert!(
        pixels.iter().any(|p| p[..3] == [0x1b, 0x7a, 0x2f]),
        "no pixel of the valid verdict's green: the verdict box did not render"
    );
}

#[test]
fn json_report_exit_codes_and_refusals() {
    let c = ceremony(&[], SoftHsm::all_answers);
    assert!(c.run.status.success(), "byok run: {}", stderr(&c.run));
    let kcv = run_says(&c.run, "kcv");
    let recs = records(&c.transcript);

    let out = report(
        &c.transcript,
        &["--json", "--audit-key-sha256", &c.hsm.audit_sha256],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let j: Value = serde_json::from_str(&stdout(&out)).expect("--json prints one JSON document");
    assert_eq!(j["schema"], "byok-report/1");
    assert_eq!(j["verdict"]["status"], "valid");
    assert_eq!(j["verdict"]["exit_code"], 0);
    assert_eq!(j["pins"]["audit_key_pinned"], true);
    let cer = &j["ceremony"];
    assert_eq!(cer["outcome"], "finished");
    assert_eq!(cer["records"], recs.len());
    assert_eq!(cer["audit_key_sha256"], c.hsm.audit_sha256);
    assert_eq!(cer["dual_control"]["quorum"], 2);
    let names: Vec<&str> = cer["dual_control"]["custodians"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Alice", "Bob", "Carol"]);
    assert_eq!(cer["targets"][0]["key_arn"], c.arn);
    assert_eq!(cer["targets"][0]["kcv"], kcv);
    assert_eq!(cer["targets"][0]["status"], "imported");
    assert_eq!(cer["timeline"].as_array().unwrap().len(), recs.len());
    let points = cer["approval_points"].as_array().unwrap();
    assert_eq!(points.len(), 2);
    for (p, point, who) in [
        (&points[0], "plan", ["Alice", "Bob"]),
        (&points[1], "import", ["Alice", "Carol"]),
    ] {
        assert_eq!(p["point"], point);
        assert_eq!(p["statement_sha256"], statement_sha256(&p["statement"]));
        let signers: Vec<&str> = p["approvals"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["custodian"].as_str().unwrap())
            .collect();
        assert_eq!(signers, who);
    }
    assert_eq!(points[1]["confirmed"]["type"], "import_confirmed");

    // Not pinned: valid, exit 8, and the page says so.
    let page = c.hsm.path("unpinned.html");
    let out = report(&c.transcript, &["--html", page.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(8), "{}", stderr(&out));
    assert_contains(&stdout(&out), "valid but NOT PINNED");
    assert_contains(
        &std::fs::read_to_string(&page).unwrap(),
        "VALID, BUT NOT PINNED",
    );
    // The page is never overwritten.
    let out = report(&c.transcript, &["--html", page.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert_contains(
        &stderr(&out),
        "already exists: byok never overwrites a report",
    );

    // Another audit key: invalid, exit 1, line 1.
    let other = "ab".repeat(32);
    let out = report(&c.transcript, &["--json", "--audit-key-sha256", &other]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let j: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(j["verdict"]["status"], "invalid");
    assert_eq!(j["verdict"]["invalid"]["line"], 1);
    assert_contains(
        j["verdict"]["invalid"]["problem"].as_str().unwrap(),
        "wrong audit key",
    );
    assert_eq!(j["ceremony"], Value::Null);

    // An edited record: invalid at that line, and the page shows no content.
    let text = std::fs::read_to_string(&c.transcript).unwrap();
    let forged = text.replacen(&kcv, "000000", 1);
    assert_ne!(forged, text);
    let line = text.lines().position(|l| l.contains(&kcv)).unwrap() + 1;
    let forged_path = c.hsm.path("forged.jsonl");
    std::fs::write(&forged_path, forged).unwrap();
    let page = c.hsm.path("forged.html");
    let out = report(
        &forged_path,
        &[
            "--audit-key-sha256",
            &c.hsm.audit_sha256,
            "--html",
            page.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_contains(&stdout(&out), &format!("INVALID at line {line}: "));
    let html = std::fs::read_to_string(&page).unwrap();
    assert_contains(&html, "✘ INVALID");
    assert_contains(&html, &format!("First bad line: {line}."));
    // The bad line is quoted as found, marked untrusted; nothing else of the content is shown.
    assert_contains(&html, "That line as found (untrusted");
    for section in [
        "<h2>Ceremony</h2>",
        "<h2>Targets</h2>",
        "Key ARN",
        "Paper record",
    ] {
        assert!(
            !html.contains(section),
            "an invalid transcript's {section} is presented"
        );
    }

    // Bad input: exit 2.
    let out = report(&c.transcript, &["--audit-key-sha256", "not-hex"]);
    assert_eq!(out.status.code(), Some(2));
    assert_contains(&stderr(&out), "--audit-key-sha256 must be 64 hex digits");
    let out = report(&c.hsm.path("missing.jsonl"), &[]);
    assert_eq!(out.status.code(), Some(2));
    assert_contains(&stderr(&out), "cannot read transcript");
}

#[test]
fn an_aborted_ceremony_report_says_where_and_why_it_stopped() {
    // The import is approved by Alice alone; stdin closes while byok waits for a second.
    let c = ceremony(&[], |hsm| {
        format!("{}{}", hsm.through_plan(), hsm.approve(&["Alice"]))
    });
    assert_eq!(c.run.status.code(), Some(2), "{}", stderr(&c.run));
    let out = report(
        &c.transcript,
        &["--json", "--audit-key-sha256", &c.hsm.audit_sha256],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let j: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let cer = &j["ceremony"];
    assert_eq!(cer["outcome"], "aborted");
    assert_eq!(cer["stopped"]["step"], "confirm_import");
    assert_eq!(cer["stopped"]["error_class"], "input");
    assert_contains(
        cer["stopped"]["message"].as_str().unwrap(),
        "standard input closed while waiting for approver-import",
    );
    assert_eq!(cer["targets"][0]["status"], "not_started");
    let import = &cer["approval_points"][1];
    assert_eq!(import["point"], "import");
    assert_eq!(import["approvals"].as_array().unwrap().len(), 1);
    assert_eq!(import["confirmed"], Value::Null);

    let page = c.hsm.path("aborted.html");
    let out = report(
        &c.transcript,
        &[
            "--audit-key-sha256",
            &c.hsm.audit_sha256,
            "--html",
            page.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = text_of(&dom(&page));
    assert_contains(&text, "Where and why it stopped");
    assert_contains(&text, "STOPPED at step confirm_import");
    assert_contains(
        &text,
        "standard input closed while waiting for approver-import",
    );
}

#[test]
fn a_hostile_custodian_name_renders_as_text() {
    const NAME: &str = "<script>document.title='pwned'</script><b>Mallory</b> & \"Alice\"";
    let c = ceremony(&[("custodian[0].name", &format!("{NAME:?}"))], |hsm| {
        let alice = &hsm.custodian("Alice").pin;
        let bob = &hsm.custodian("Bob").pin;
        let carol = &hsm.custodian("Carol").pin;
        format!(
            "{}\n{NAME}\nyes\n{alice}\nBob\nyes\n{bob}\n{NAME}\nyes\n{alice}\nCarol\nyes\n{carol}\n",
            hsm.pin
        )
    });
    assert!(c.run.status.success(), "byok run: {}", stderr(&c.run));
    let page = c.hsm.path("hostile.html");
    let out = report(
        &c.transcript,
        &[
            "--audit-key-sha256",
            &c.hsm.audit_sha256,
            "--html",
            page.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // The text summary prints the name as it is (no control characters in it), once per
    // place it appears.
    assert_contains(&stdout(&out), NAME);
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(!html.contains("<script"), "raw markup from the transcript");
    assert!(
        !html.contains("<b>Mallory"),
        "raw markup from the transcript"
    );
    let dom = dom(&page);
    // Chromium built no element from the name: it is text, shown as written.
    assert!(!dom.contains("<script"), "{dom}");
    assert!(!dom.contains("<b>"), "{dom}");
    assert!(!dom.contains("pwned</title>"), "{dom}");
    let text = text_of(&dom);
    assert_contains(&text, NAME);
}

#[test]
fn a_fleet_rotation_reports_every_target_and_all_three_statements() {
    let hsm = SoftHsm::new();
    let key = format!(
        "\"alias/{:08x}-{{service}}-{{environment}}\"",
        crate::common::rand_u32()
    );
    let import = crate::common::ceremony_pinned_as(
        &hsm,
        "fleet-product.toml",
        "import.toml",
        &[("targets.key", key.as_str())],
    );
    let first = hsm.path("import.jsonl");
    let out = run_ceremony(&hsm, &import, &first, &hsm.all_answers());
    assert!(out.status.success(), "{}", stderr(&out));
    let rotate = crate::common::ceremony_pinned_as(
        &hsm,
        "fleet-rotate.toml",
        "rotate.toml",
        &[("targets.key", key.as_str())],
    );
    let t = hsm.path("rotate.jsonl");
    let answers = format!("{}{}", hsm.all_answers(), hsm.approve(&["Bob", "Carol"]));
    let out = run_ceremony(&hsm, &rotate, &t, &answers);
    assert!(out.status.success(), "{}", stderr(&out));

    let recs = records(&t);
    let out = report(&t, &["--json", "--audit-key-sha256", &hsm.audit_sha256]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let j: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let cer = &j["ceremony"];
    assert_eq!(cer["kind"], "rotate");
    let targets = cer["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 6);
    // Each target's ARN and KCV as its own records give them.
    for (i, target) in targets.iter().enumerate() {
        assert_eq!(target["index"], i);
        assert_eq!(target["status"], "rotated", "{target}");
        let generated = recs
            .iter()
            .find(|r| r["type"] == "key_generated" && r["data"]["target_index"] == i)
            .unwrap();
        assert_eq!(target["kcv"], generated["data"]["kcv"]);
        assert_eq!(target["key_arn"], generated["data"]["key_arn"]);
        let rotated = recs
            .iter()
            .find(|r| r["type"] == "key_rotated" && r["data"]["target_index"] == i)
            .unwrap();
        assert_eq!(
            target["key_material_id"],
            rotated["data"]["key_material_id"]
        );
    }
    let points: Vec<(&str, &str)> = cer["approval_points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["point"].as_str().unwrap(),
                p["confirmed"]["type"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    assert_eq!(
        points,
        [
            ("plan", "-"),
            ("import", "import_confirmed"),
            ("rotate", "rotate_confirmed")
        ]
    );
    let steps: Vec<&str> = cer["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    for step in [
        "approve_plan",
        "prepare",
        "confirm_import",
        "import",
        "confirm_rotate",
        "rotate",
    ] {
        assert!(steps.contains(&step), "no step {step} in {steps:?}");
    }

    let page = hsm.path("rotate.html");
    let out = report(
        &t,
        &[
            "--audit-key-sha256",
            &hsm.audit_sha256,
            "--html",
            page.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = text_of(&dom(&page));
    assert_contains(&text, "The rotate statement");
    for target in targets {
        assert_contains(&text, target["key_arn"].as_str().unwrap());
        assert_contains(&text, target["kcv"].as_str().unwrap());
    }
}
