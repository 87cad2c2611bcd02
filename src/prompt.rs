//! Talking to the people at the terminal: the [`Prompter`] trait and its implementations.
//!
//! - [`TerminalPrompter`]: dialoguer prompts when stdin is a terminal.
//! - [`LinePrompter`]: the line protocol of `docs/runbook.md` when stdin is not a terminal: each
//!   prompt is announced on stderr as `byok? <kind> <id>: <text>` and answered by one line on
//!   stdin.
//! - [`ScriptedPrompter`]: fixed answers for tests; it fails on any prompt it did not expect.
//!
//! Secrets typed here become [`SecretString`] at once and are never echoed or logged. Every
//! prompt can be interrupted by Ctrl-C (see [`crate::cancel`]), which returns
//! [`PromptError::Cancelled`] so the ceremony can record its abort.

use std::collections::VecDeque;
use std::io::{BufRead, IsTerminal, Write};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use secrecy::SecretString;
use zeroize::{Zeroize, Zeroizing};

/// Why a prompt got no answer.
#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    #[error("interrupted (Ctrl-C) while waiting for {id}")]
    Cancelled { id: String },
    #[error(
        "standard input closed while waiting for {id}; answer every prompt, one line each (see docs/runbook.md)"
    )]
    Eof { id: String },
    #[error("answer to {id} must be {expected}")]
    BadAnswer { id: String, expected: &'static str },
    #[error("terminal prompt for {id} failed: {detail}")]
    Terminal { id: String, detail: String },
    #[error("the test script did not expect prompt {id} ({kind}); it expected {expected}")]
    Unexpected {
        id: String,
        kind: &'static str,
        expected: String,
    },
}

/// The questions a ceremony asks. `id` is a stable name used by the line protocol and tests.
pub trait Prompter {
    /// A hidden answer, e.g. a PIN.
    fn secret(&mut self, id: &str, prompt: &str) -> Result<SecretString, PromptError>;
    /// Yes or no.
    fn confirm(&mut self, id: &str, prompt: &str) -> Result<bool, PromptError>;
    /// Yes (`Some(true)`), no (`Some(false)`) or back (`None`: Escape on the terminal,
    /// `back` in the line protocol), for a question the operator may have reached by mistake.
    fn confirm_or_back(&mut self, id: &str, prompt: &str) -> Result<Option<bool>, PromptError>;
    /// One of `options`; returns its index.
    fn select(&mut self, id: &str, prompt: &str, options: &[String]) -> Result<usize, PromptError>;
    /// Informational output (headings, summaries): stderr, never a secret.
    fn say(&mut self, text: &str);
    /// A warning the operator must see.
    fn warn(&mut self, text: &str);
    /// Whether a person answers each prompt after seeing it. Only then may a wrong PIN be asked
    /// for again: line-protocol answers may be written in advance, and a retry would take the
    /// next answer (a name, "yes") as a PIN.
    fn interactive(&self) -> bool;
    /// Progress of a long wait (`total` = None: a spinner with elapsed time; else a bar),
    /// drawn on the terminal only; a no-op elsewhere.
    fn progress(&mut self, what: &str, total: Option<u64>) -> Progress {
        let _ = (what, total);
        Progress::none()
    }
}

/// A progress spinner or bar on the terminal, or nothing. Cheap to clone; finished on drop.
#[derive(Clone, Default)]
pub struct Progress {
    bar: Option<std::sync::Arc<ProgressInner>>,
}

/// Placeholder for the terminal drawing state.
struct ProgressInner;

impl Progress {
    /// Progress that draws nothing.
    pub fn none() -> Self {
        Progress { bar: None }
    }
    /// What is being waited for now.
    pub fn message(&self, text: &str) {
        let _ = (text, &self.bar);
    }
    /// `n` more units done.
    pub fn inc(&self, n: u64) {
        let _ = n;
    }
    /// Removes the spinner or bar from the screen.
    pub fn finish(&self) {}
}

/// Picks the terminal prompter when stdin is a terminal, else the line protocol.
pub fn for_stdin() -> Box<dyn Prompter> {
    if std::io::stdin().is_terminal() {
        Box::new(TerminalPrompter::new())
    } else {
        Box::new(LinePrompter::new())
    }
}

/// Waits for `rx`, checking for Ctrl-C every 100 ms.
fn wait<T>(rx: &Receiver<T>, id: &str) -> Result<Option<T>, PromptError> {
    loop {
        if crate::cancel::is_cancelled() {
            return Err(PromptError::Cancelled { id: id.into() });
        }
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(v) => return Ok(Some(v)),
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return Ok(None),
        }
    }
}

/// dialoguer prompts on the terminal.
pub struct TerminalPrompter {
    saved: Option<libc::termios>,
}

impl TerminalPrompter {
    /// Remembers the terminal mode so an interrupted hidden prompt can restore echo.
    pub fn new() -> Self {
        let mut t = std::mem::MaybeUninit::<libc::termios>::uninit();
        // SAFETY: tcgetattr writes a termios into the provided buffer and we read it only
        // when it reports success.
        let saved = unsafe {
            if libc::tcgetattr(libc::STDIN_FILENO, t.as_mut_ptr()) == 0 {
                Some(t.assume_init())
            } else {
                None
            }
        };
        TerminalPrompter { saved }
    }

    fn run<T: Send + 'static>(
        &mut self,
        id: &str,
        f: impl FnOnce() -> Result<T, dialoguer::Error> + Send + 'static,
    ) -> Result<T, PromptError> {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        let result = wait(&rx, id);
        if result.is_err() {
            self.restore();
        }
        match result? {
            Some(Ok(v)) => Ok(v),
            Some(Err(dialoguer::Error::IO(e))) if e.kind() == std::io::ErrorKind::Interrupted => {
                Err(PromptError::Cancelled { id: id.into() })
            }
            Some(Err(e)) => Err(PromptError::Terminal {
                id: id.into(),
                detail: e.to_string(),
            }),
            None => Err(PromptError::Eof { id: id.into() }),
        }
    }

    fn restore(&self) {
        if let Some(t) = &self.saved {
            // SAFETY: t is a termios previously filled by tcgetattr for the same fd.
            unsafe {
                libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, t);
            }
        }
        let _ = console::Term::stderr().show_cursor();
        eprintln!();
    }
}

impl Default for TerminalPrompter {
    fn default() -> Self {
        Self::new()
    }
}

impl Prompter for TerminalPrompter {
    fn secret(&mut self, id: &str, prompt: &str) -> Result<SecretString, PromptError> {
        let prompt = prompt.to_string();
        self.run(id, move || {
            let mut typed = dialoguer::Password::new()
                .with_prompt(prompt)
                .allow_empty_password(false)
                .interact()?;
            let secret = SecretString::from(typed.as_str());
            typed.zeroize();
            Ok(secret)
        })
    }

    fn confirm(&mut self, id: &str, prompt: &str) -> Result<bool, PromptError> {
        let prompt = prompt.to_string();
        self.run(id, move || {
            dialoguer::Confirm::new()
                .with_prompt(prompt)
                .default(false)
                .wait_for_newline(true)
                .interact()
        })
    }

    fn select(&mut self, id: &str, prompt: &str, options: &[String]) -> Result<usize, PromptError> {
        let prompt = prompt.to_string();
        let items = options.to_vec();
        self.run(id, move || {
            dialoguer::Select::new()
                .with_prompt(prompt)
                .items(&items)
                .default(0)
                .interact()
        })
    }

    fn confirm_or_back(&mut self, id: &str, prompt: &str) -> Result<Option<bool>, PromptError> {
        let prompt = prompt.to_string();
        self.run(id, move || {
            dialoguer::Confirm::new()
                .with_prompt(prompt)
                .wait_for_newline(true)
                .interact_opt()
        })
    }

    fn say(&mut self, text: &str) {
        eprintln!("{text}");
    }

    fn warn(&mut self, text: &str) {
        eprintln!(
            "{}",
            console::style(format!("WARNING: {text}")).yellow().bold()
        );
    }

    fn interactive(&self) -> bool {
        true
    }
}

/// The line protocol for automation: one prompt announced on stderr, one line on stdin.
pub struct LinePrompter {
    lines: Receiver<Zeroizing<String>>,
}

impl LinePrompter {
    /// Starts a reader thread on stdin.
    pub fn new() -> Self {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let stdin = std::io::stdin();
            let mut lock = stdin.lock();
            loop {
                let mut line = Zeroizing::new(String::new());
                match lock.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        while line.ends_with('\n') || line.ends_with('\r') {
                            line.pop();
                        }
                        if tx.send(line).is_err() {
                            break;
                        }
                    }
                }
            }
        });
        LinePrompter { lines: rx }
    }

    fn ask(
        &mut self,
        kind: &str,
        id: &str,
        prompt: &str,
    ) -> Result<Zeroizing<String>, PromptError> {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "byok? {kind} {id}: {prompt}");
        let _ = err.flush();
        drop(err);
        wait(&self.lines, id)?.ok_or(PromptError::Eof { id: id.into() })
    }
}

impl Default for LinePrompter {
    fn default() -> Self {
        Self::new()
    }
}

impl Prompter for LinePrompter {
    fn secret(&mut self, id: &str, prompt: &str) -> Result<SecretString, PromptError> {
        let line = self.ask("secret", id, prompt)?;
        if line.is_empty() {
            return Err(PromptError::BadAnswer {
                id: id.into(),
                expected: "a non-empty line",
            });
        }
        Ok(SecretString::from(line.as_str()))
    }

    fn confirm(&mut self, id: &str, prompt: &str) -> Result<bool, PromptError> {
        let line = self.ask("confirm", id, &format!("{prompt} [yes/no]"))?;
        match line.trim() {
            "yes" | "y" => Ok(true),
            "no" | "n" => Ok(false),
            _ => Err(PromptError::BadAnswer {
                id: id.into(),
                expected: "yes or no",
            }),
        }
    }

    fn select(&mut self, id: &str, prompt: &str, options: &[String]) -> Result<usize, PromptError> {
        let line = self.ask("select", id, &format!("{prompt} [{}]", options.join("|")))?;
        options
            .iter()
            .position(|o| o == line.trim())
            .ok_or(PromptError::BadAnswer {
                id: id.into(),
                expected: "exactly one of the options shown in brackets",
            })
    }

    fn confirm_or_back(&mut self, id: &str, prompt: &str) -> Result<Option<bool>, PromptError> {
        let line = self.ask("confirm", id, &format!("{prompt} [yes/no/back]"))?;
        match line.trim() {
            "yes" | "y" => Ok(Some(true)),
            "no" | "n" => Ok(Some(false)),
            "back" => Ok(None),
            _ => Err(PromptError::BadAnswer {
                id: id.into(),
                expected: "yes, no or back",
            }),
        }
    }

    fn say(&mut self, text: &str) {
        eprintln!("{text}");
    }

    fn warn(&mut self, text: &str) {
        eprintln!("WARNING: {text}");
    }

    fn interactive(&self) -> bool {
        false
    }
}

/// One scripted answer.
pub enum Answer {
    Secret(&'static str, String),
    Confirm(&'static str, bool),
    Select(&'static str, String),
    /// "Back" at a `confirm_or_back` prompt with this id.
    Back(&'static str),
}

/// Answers from a script, in order; anything unexpected is an error. For tests.
pub struct ScriptedPrompter {
    answers: VecDeque<Answer>,
    /// Everything said and warned, for assertions.
    pub transcript: Vec<String>,
    /// What [`Prompter::interactive`] reports (default true: wrong PINs are asked again).
    pub interactive: bool,
}

impl ScriptedPrompter {
    /// A prompter that gives `answers` in order.
    pub fn new(answers: Vec<Answer>) -> Self {
        ScriptedPrompter {
            answers: answers.into(),
            transcript: Vec::new(),
            interactive: true,
        }
    }

    fn expected(&self) -> String {
        match self.answers.front() {
            Some(Answer::Secret(id, _)) => format!("secret {id}"),
            Some(Answer::Confirm(id, _)) => format!("confirm {id}"),
            Some(Answer::Select(id, choice)) => format!("select {id} ({choice})"),
            Some(Answer::Back(id)) => format!("back at {id}"),
            None => "no more prompts".into(),
        }
    }
}

impl Prompter for ScriptedPrompter {
    fn secret(&mut self, id: &str, _prompt: &str) -> Result<SecretString, PromptError> {
        match self.answers.front() {
            Some(Answer::Secret(want, _)) if *want == id => {}
            _ => {
                return Err(PromptError::Unexpected {
                    id: id.into(),
                    kind: "secret",
                    expected: self.expected(),
                });
            }
        }
        match self.answers.pop_front() {
            Some(Answer::Secret(_, value)) => Ok(SecretString::from(value)),
            _ => Err(PromptError::Eof { id: id.into() }),
        }
    }

    fn confirm(&mut self, id: &str, _prompt: &str) -> Result<bool, PromptError> {
        match self.answers.front() {
            Some(Answer::Confirm(want, yes)) if *want == id => {
                let yes = *yes;
                self.answers.pop_front();
                Ok(yes)
            }
            _ => Err(PromptError::Unexpected {
                id: id.into(),
                kind: "confirm",
                expected: self.expected(),
            }),
        }
    }

    fn select(
        &mut self,
        id: &str,
        _prompt: &str,
        options: &[String],
    ) -> Result<usize, PromptError> {
        let index = match self.answers.front() {
            Some(Answer::Select(want, choice)) if *want == id => {
                options.iter().position(|o| o == choice)
            }
            _ => None,
        };
        match index {
            Some(i) => {
                self.answers.pop_front();
                Ok(i)
            }
            None => Err(PromptError::Unexpected {
                id: id.into(),
                kind: "select",
                expected: self.expected(),
            }),
        }
    }

    fn confirm_or_back(&mut self, id: &str, _prompt: &str) -> Result<Option<bool>, PromptError> {
        let answer = match self.answers.front() {
            Some(Answer::Confirm(want, yes)) if *want == id => Some(*yes),
            Some(Answer::Back(want)) if *want == id => None,
            _ => {
                return Err(PromptError::Unexpected {
                    id: id.into(),
                    kind: "confirm",
                    expected: self.expected(),
                });
            }
        };
        self.answers.pop_front();
        Ok(answer)
    }

    fn interactive(&self) -> bool {
        self.interactive
    }

    fn say(&mut self, text: &str) {
        self.transcript.push(text.to_string());
    }

    fn warn(&mut self, text: &str) {
        self.transcript.push(format!("WARNING: {text}"));
    }
}
