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
    /// One of `options`; returns its index.
    fn select(&mut self, id: &str, prompt: &str, options: &[String]) -> Result<usize, PromptError>;
    /// Informational output (headings, summaries): stderr, never a secret.
    fn say(&mut self, text: &str);
    /// A warning the operator must see.
    fn warn(&mut self, text: &str);
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

    fn say(&mut self, text: &str) {
        eprintln!("{text}");
    }

    fn warn(&mut self, text: &str) {
        eprintln!(
            "{}",
            console::style(format!("WARNING: {text}")).yellow().bold()
        );
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

    fn say(&mut self, text: &str) {
        eprintln!("{text}");
    }

    fn warn(&mut self, text: &str) {
        eprintln!("WARNING: {text}");
    }
}

/// One scripted answer.
pub enum Answer {
    Secret(&'static str, String),
    Confirm(&'static str, bool),
    Select(&'static str, String),
}

/// Answers from a script, in order; anything unexpected is an error. For tests.
pub struct ScriptedPrompter {
    answers: VecDeque<Answer>,
    /// Everything said and warned, for assertions.
    pub transcript: Vec<String>,
}

impl ScriptedPrompter {
    /// A prompter that gives `answers` in order.
    pub fn new(answers: Vec<Answer>) -> Self {
        ScriptedPrompter {
            answers: answers.into(),
            transcript: Vec::new(),
        }
    }

    fn expected(&self) -> String {
        match self.answers.front() {
            Some(Answer::Secret(id, _)) => format!("secret {id}"),
            Some(Answer::Confirm(id, _)) => format!("confirm {id}"),
            Some(Answer::Select(id, choice)) => format!("select {id} ({choice})"),
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

    fn say(&mut self, text: &str) {
        self.transcript.push(text.to_string());
    }

    fn warn(&mut self, text: &str) {
        self.transcript.push(format!("WARNING: {text}"));
    }
}
