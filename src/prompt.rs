//! Talking to the people at the terminal: the [`Prompter`] trait and its implementations.
//!
//! - [`TerminalPrompter`]: prompts on the controlling terminal (`/dev/tty`), like sudo, ssh and
//!   gpg, when stdin is a terminal. Prompts, answers and progress never touch stdout or stderr,
//!   so both can go to a log (`byok run … 2>&1 | tee ceremony.log`).
//! - [`LinePrompter`]: the line protocol of `docs/runbook.md` when stdin is not a terminal: each
//!   prompt is announced on stderr as `byok? <kind> <id>: <text>` and answered by one line on
//!   stdin.
//! - [`ScriptedPrompter`]: fixed answers for tests; it fails on any prompt it did not expect.
//!
//! Secrets typed here are read into buffers that are wiped (`Zeroizing`), become
//! [`SecretString`] at once and are never echoed or logged. `say` and `warn` write to stderr and
//! must never be given a secret. Every prompt can be interrupted by Ctrl-C (see
//! [`crate::cancel`]), which returns [`PromptError::Cancelled`] so the ceremony can record its
//! abort.

#![allow(
    unsafe_code,
    reason = "termios, poll and read(2) on the terminal for hidden PIN entry; each block says why it is sound"
)]

use std::collections::VecDeque;
use std::fs::File;
use std::io::{IsTerminal, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use secrecy::SecretString;
use zeroize::{Zeroize, Zeroizing};

/// The longest answer byok accepts, in bytes, not counting the line end. A PIN or a custodian's
/// name is far shorter; the limit bounds the memory an answer may occupy and stops a stray paste
/// or a binary file on stdin from being read as answers. A longer line is one error, and the
/// rest of it is discarded, never taken as further answers.
pub const MAX_ANSWER_BYTES: usize = 1024;

/// How often a blocked prompt checks for Ctrl-C.
const POLL: Duration = Duration::from_millis(100);

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
    #[error(
        "answer to {id} is longer than {limit} bytes, the limit for one answer; the whole line was discarded"
    )]
    TooLong { id: String, limit: usize },
    #[error("answer to {id} is not valid UTF-8; answers must be UTF-8 text, one line each")]
    NotUtf8 { id: String },
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
    ///
    /// On the terminal every answer ends with Enter: `y` or `n`, then Enter, answers; Escape or
    /// `q`, then Enter, goes back, and so does Enter before `y` or `n` was pressed. A slip of
    /// a key therefore never approves or declines by itself.
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

/// A progress spinner or bar on the terminal, or nothing. Cheap to clone; finished when the
/// last clone is dropped. It holds only the texts it shows, never a secret.
#[derive(Clone, Default)]
pub struct Progress {
    bar: Option<Arc<ProgressInner>>,
}

/// One spinner or bar of a [`TerminalPrompter`]'s [`indicatif::MultiProgress`].
struct ProgressInner {
    bar: indicatif::ProgressBar,
    multi: indicatif::MultiProgress,
    /// Bars on the screen, shared with the prompter (which then keeps its output off them).
    live: Arc<AtomicUsize>,
    done: AtomicBool,
}

impl ProgressInner {
    fn finish(&self) {
        if !self.done.swap(true, Ordering::SeqCst) {
            self.bar.finish_and_clear();
            self.multi.remove(&self.bar);
            self.live.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Drop for ProgressInner {
    fn drop(&mut self) {
        self.finish();
    }
}

impl Progress {
    /// Progress that draws nothing.
    pub fn none() -> Self {
        Progress { bar: None }
    }

    /// What is being waited for now.
    pub fn message(&self, text: &str) {
        if let Some(p) = self.active() {
            p.bar.set_message(text.to_string());
        }
    }

    /// `n` more units done.
    pub fn inc(&self, n: u64) {
        if let Some(p) = self.active() {
            p.bar.inc(n);
        }
    }

    /// Removes the spinner or bar from the screen; later calls do nothing.
    pub fn finish(&self) {
        if let Some(p) = &self.bar {
            p.finish();
        }
    }

    fn active(&self) -> Option<&ProgressInner> {
        self.bar
            .as_deref()
            .filter(|p| !p.done.load(Ordering::SeqCst))
    }
}

/// Picks the terminal prompter when stdin is a terminal and the controlling terminal opens,
/// else the line protocol.
pub fn for_stdin() -> Box<dyn Prompter> {
    if std::io::stdin().is_terminal() {
        match TerminalPrompter::open() {
            Ok(t) => return Box::new(t),
            Err(e) => eprintln!(
                "WARNING: stdin is a terminal but /dev/tty cannot be opened ({e}); using the line protocol, which shows what is typed, PINs included"
            ),
        }
    }
    Box::new(LinePrompter::new())
}

/// Waits for `rx`, checking for Ctrl-C every 100 ms.
fn wait<T>(rx: &Receiver<T>, id: &str) -> Result<Option<T>, PromptError> {
    loop {
        if crate::cancel::is_cancelled() {
            return Err(PromptError::Cancelled { id: id.into() });
        }
        match rx.recv_timeout(POLL) {
            Ok(v) => return Ok(Some(v)),
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return Ok(None),
        }
    }
}

/// Prompts on the controlling terminal, `/dev/tty`: dialoguer for choices, a hidden read of
/// byok's own for secrets, indicatif for progress. Nothing of it reaches stdout or stderr.
pub struct TerminalPrompter {
    /// `/dev/tty`, read for secrets; its mode is what [`TerminalPrompter::restore`] restores.
    tty: File,
    /// The same terminal for dialoguer and indicatif to draw on.
    term: console::Term,
    /// The terminal mode at start, restored after an interrupted prompt.
    saved: Option<libc::termios>,
    progress: indicatif::MultiProgress,
    live: Arc<AtomicUsize>,
}

/// Redraw rate of progress on the terminal (per second).
const PROGRESS_HZ: u8 = 20;

impl TerminalPrompter {
    /// Opens `/dev/tty` and remembers its mode so an interrupted prompt can restore echo.
    pub fn open() -> std::io::Result<Self> {
        let tty = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/tty")?;
        let term = console::Term::read_write_pair(tty.try_clone()?, tty.try_clone()?);
        let saved = get_mode(tty.as_raw_fd());
        let progress = indicatif::MultiProgress::with_draw_target(
            indicatif::ProgressDrawTarget::term(term.clone(), PROGRESS_HZ),
        );
        Ok(TerminalPrompter {
            tty,
            term,
            saved,
            progress,
            live: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// Runs a dialoguer prompt on a helper thread so that Ctrl-C is noticed within 100 ms.
    fn run<T: Send + 'static>(
        &mut self,
        id: &str,
        f: impl FnOnce(console::Term) -> Result<T, dialoguer::Error> + Send + 'static,
    ) -> Result<T, PromptError> {
        let term = self.term.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        self.hide_progress();
        std::thread::spawn(move || {
            let _ = tx.send(f(term));
        });
        let result = wait(&rx, id);
        if result.is_err() {
            self.restore();
        }
        self.show_progress();
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

    /// Puts the terminal back as it was at start: echo on, cursor shown, a fresh line.
    fn restore(&self) {
        if let Some(t) = &self.saved {
            // SAFETY: t is a termios previously filled by tcgetattr for the same fd, which
            // self.tty keeps open.
            unsafe {
                libc::tcsetattr(self.tty.as_raw_fd(), libc::TCSANOW, t);
            }
        }
        let _ = self.term.show_cursor();
        let _ = self.term.write_line("");
    }

    /// Takes the progress off the screen while a prompt is drawn there.
    fn hide_progress(&self) {
        if self.live.load(Ordering::SeqCst) > 0 {
            let _ = self.progress.clear();
        }
        self.progress
            .set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }

    fn show_progress(&self) {
        self.progress
            .set_draw_target(indicatif::ProgressDrawTarget::term(
                self.term.clone(),
                PROGRESS_HZ,
            ));
    }

    /// Writes a line to stderr, taking any progress off the terminal meanwhile (stderr may be
    /// the same terminal).
    fn to_stderr(&self, line: &str) {
        let print = || {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "{line}");
            let _ = err.flush();
        };
        if self.live.load(Ordering::SeqCst) > 0 {
            self.progress.suspend(print);
        } else {
            print();
        }
    }

    /// One hidden line from the terminal: echo off, type-ahead discarded, then read into a
    /// wiped buffer. The mode is restored however the read ends.
    fn read_hidden(&self, id: &str, prompt: &str) -> Result<Zeroizing<String>, PromptError> {
        let fd = self.tty.as_raw_fd();
        let term_err = |e: std::io::Error| PromptError::Terminal {
            id: id.into(),
            detail: e.to_string(),
        };
        let echo_off = EchoOff::new(fd).map_err(term_err)?;
        // Anything typed before the prompt appears (say, right after a wrong PIN) must not be
        // taken as the PIN.
        // SAFETY: tcflush only acts on the open fd.
        unsafe {
            libc::tcflush(fd, libc::TCIFLUSH);
        }
        self.term
            .write_str(&format!("{prompt}: "))
            .map_err(term_err)?;
        let mut line = Zeroizing::new(Vec::with_capacity(MAX_ANSWER_BYTES + 1));
        let mut chunk = Zeroizing::new([0u8; 256]);
        let mut too_long = false;
        let ended = loop {
            if crate::cancel::is_cancelled() {
                break Err(PromptError::Cancelled { id: id.into() });
            }
            match poll_in(fd, POLL) {
                Ok(false) => continue,
                Ok(true) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => break Err(term_err(e)),
            }
            // SAFETY: reads at most chunk.len() bytes into the buffer we own.
            let n = unsafe { libc::read(fd, chunk.as_mut_ptr().cast(), chunk.len()) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                break Err(term_err(e));
            }
            if n == 0 {
                break Err(PromptError::Terminal {
                    id: id.into(),
                    detail: "the terminal closed (end of input)".into(),
                });
            }
            let got = &chunk[..n.unsigned_abs()];
            let (part, end) = match got.iter().position(|&b| b == b'\n') {
                Some(i) => (&got[..i], true),
                None => (got, false),
            };
            append_bounded(&mut line, part, &mut too_long);
            chunk.zeroize();
            if end {
                break Ok(());
            }
        };
        drop(echo_off);
        // Echo was off, so the operator's Enter did not move to a new line.
        let _ = self.term.write_line("");
        ended?;
        finish_line(line, too_long).map_err(|e| e.for_prompt(id))
    }
}

/// The terminal mode of `fd`, if it is a terminal.
fn get_mode(fd: RawFd) -> Option<libc::termios> {
    let mut t = std::mem::MaybeUninit::<libc::termios>::uninit();
    // SAFETY: tcgetattr writes a termios into the provided buffer and we read it only when it
    // reports success.
    unsafe {
        if libc::tcgetattr(fd, t.as_mut_ptr()) == 0 {
            Some(t.assume_init())
        } else {
            None
        }
    }
}

/// Echo turned off on a terminal until dropped, which restores the mode it found.
struct EchoOff {
    fd: RawFd,
    saved: libc::termios,
}

impl EchoOff {
    fn new(fd: RawFd) -> std::io::Result<Self> {
        let saved = get_mode(fd).ok_or_else(std::io::Error::last_os_error)?;
        let mut quiet = saved;
        quiet.c_lflag &= !(libc::ECHO | libc::ECHOE | libc::ECHOK);
        // Line editing (ICANON) and Ctrl-C (ISIG) stay as they are.
        // SAFETY: quiet is a valid termios derived from the one tcgetattr returned.
        if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &quiet) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(EchoOff { fd, saved })
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        // SAFETY: saved came from tcgetattr on the same fd, which the prompter keeps open.
        unsafe {
            libc::tcsetattr(self.fd, libc::TCSANOW, &self.saved);
        }
    }
}

/// Whether `fd` has input within `timeout`.
fn poll_in(fd: RawFd, timeout: Duration) -> std::io::Result<bool> {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: p is one valid pollfd that outlives the call.
    let r = unsafe { libc::poll(&mut p, 1, ms) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(r > 0 && p.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0)
}

impl Prompter for TerminalPrompter {
    fn secret(&mut self, id: &str, prompt: &str) -> Result<SecretString, PromptError> {
        self.hide_progress();
        let answer = loop {
            let line = self.read_hidden(id, prompt);
            match line {
                // Enter alone asks again, as dialoguer did: a PIN is never empty.
                Ok(l) if l.is_empty() => continue,
                other => break other,
            }
        };
        if answer.is_err() {
            let _ = self.term.show_cursor();
        }
        self.show_progress();
        Ok(SecretString::from(answer?.as_str()))
    }

    fn confirm(&mut self, id: &str, prompt: &str) -> Result<bool, PromptError> {
        let prompt = prompt.to_string();
        self.run(id, move |term| {
            dialoguer::Confirm::new()
                .with_prompt(prompt)
                .default(false)
                .wait_for_newline(true)
                .interact_on(&term)
        })
    }

    fn select(&mut self, id: &str, prompt: &str, options: &[String]) -> Result<usize, PromptError> {
        let prompt = prompt.to_string();
        let items = options.to_vec();
        self.run(id, move |term| {
            dialoguer::Select::new()
                .with_prompt(prompt)
                .items(&items)
                .default(0)
                .interact_on(&term)
        })
    }

    fn confirm_or_back(&mut self, id: &str, prompt: &str) -> Result<Option<bool>, PromptError> {
        let prompt = prompt.to_string();
        // No default: with wait_for_newline, dialoguer's interact_on_opt returns None for
        // Escape or q followed by Enter, and for Enter with no choice made.
        self.run(id, move |term| {
            dialoguer::Confirm::new()
                .with_prompt(prompt)
                .wait_for_newline(true)
                .interact_on_opt(&term)
        })
    }

    fn say(&mut self, text: &str) {
        self.to_stderr(text);
    }

    fn warn(&mut self, text: &str) {
        self.to_stderr(&format!(
            "{}",
            console::style(format!("WARNING: {text}")).yellow().bold()
        ));
    }

    fn interactive(&self) -> bool {
        true
    }

    fn progress(&mut self, what: &str, total: Option<u64>) -> Progress {
        let (bar, template) = match total {
            None => (
                indicatif::ProgressBar::new_spinner(),
                "{spinner} {prefix} {msg} ({elapsed})",
            ),
            Some(n) => (
                indicatif::ProgressBar::new(n),
                "{prefix} [{bar:30}] {pos}/{len} {msg} ({elapsed})",
            ),
        };
        // The templates are constants; should one not parse, indicatif's default still draws.
        if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
            bar.set_style(style);
        }
        bar.set_prefix(what.to_string());
        let bar = self.progress.add(bar);
        // Ticks from indicatif's own thread, so the spinner moves while byok's thread waits.
        bar.enable_steady_tick(POLL);
        self.live.fetch_add(1, Ordering::SeqCst);
        Progress {
            bar: Some(Arc::new(ProgressInner {
                bar,
                multi: self.progress.clone(),
                live: Arc::clone(&self.live),
                done: AtomicBool::new(false),
            })),
        }
    }
}

/// Appends `part` to `line` unless that would make it longer than an answer may be (one byte
/// more is allowed for the CR of a CR LF line end); then the line is wiped and `too_long` set,
/// and everything up to the line end is dropped. `line` never grows beyond its capacity, so it
/// is never reallocated, which would leave a copy behind.
fn append_bounded(line: &mut Zeroizing<Vec<u8>>, part: &[u8], too_long: &mut bool) {
    if *too_long {
        return;
    }
    if line.len() + part.len() > MAX_ANSWER_BYTES + 1 {
        line.zeroize();
        *too_long = true;
    } else {
        line.extend_from_slice(part);
    }
}

/// Why a line is not an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LineError {
    TooLong,
    NotUtf8,
}

impl LineError {
    fn for_prompt(self, id: &str) -> PromptError {
        match self {
            LineError::TooLong => PromptError::TooLong {
                id: id.into(),
                limit: MAX_ANSWER_BYTES,
            },
            LineError::NotUtf8 => PromptError::NotUtf8 { id: id.into() },
        }
    }
}

/// The answer in a complete line (its LF already removed): a trailing CR goes, then the length
/// and UTF-8 are checked. The bytes are wiped either way.
fn finish_line(
    mut line: Zeroizing<Vec<u8>>,
    too_long: bool,
) -> Result<Zeroizing<String>, LineError> {
    if too_long {
        return Err(LineError::TooLong);
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    if line.len() > MAX_ANSWER_BYTES {
        return Err(LineError::TooLong);
    }
    let text = std::str::from_utf8(&line).map_err(|_| LineError::NotUtf8)?;
    let mut answer = Zeroizing::new(String::with_capacity(text.len()));
    answer.push_str(text);
    Ok(answer)
}

/// Splits a byte stream into answers, one per line, without keeping a copy of what it read:
/// every buffer is wiped once its bytes are used. A line longer than [`MAX_ANSWER_BYTES`] is
/// one [`LineError::TooLong`], whatever its length.
struct LineReader<R> {
    src: R,
    chunk: Zeroizing<Vec<u8>>,
    /// The unread part of `chunk` is `start..end`.
    start: usize,
    end: usize,
    eof: bool,
}

impl<R: Read> LineReader<R> {
    fn new(src: R) -> Self {
        LineReader {
            src,
            chunk: Zeroizing::new(vec![0; 4096]),
            start: 0,
            end: 0,
            eof: false,
        }
    }

    /// The next line, or `None` at the end of the input (or when it cannot be read). A last
    /// line without a line end counts.
    fn next_line(&mut self) -> Option<Result<Zeroizing<String>, LineError>> {
        let mut line = Zeroizing::new(Vec::with_capacity(MAX_ANSWER_BYTES + 1));
        let mut too_long = false;
        let mut any = false;
        loop {
            if self.start == self.end && (self.eof || !self.fill()) {
                break;
            }
            any = true;
            let avail = &self.chunk[self.start..self.end];
            let (take, used, end) = match avail.iter().position(|&b| b == b'\n') {
                Some(i) => (i, i + 1, true),
                None => (avail.len(), avail.len(), false),
            };
            append_bounded(&mut line, &avail[..take], &mut too_long);
            self.chunk[self.start..self.start + used].zeroize();
            self.start += used;
            if end {
                return Some(finish_line(line, too_long));
            }
        }
        if any {
            Some(finish_line(line, too_long))
        } else {
            None
        }
    }

    /// Reads more input into the (empty) chunk; false at the end of the input.
    fn fill(&mut self) -> bool {
        loop {
            match self.src.read(&mut self.chunk) {
                Ok(0) => {}
                Ok(n) => {
                    self.start = 0;
                    self.end = n;
                    return true;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => {}
            }
            self.eof = true;
            return false;
        }
    }
}

/// File descriptor 0, read with `read(2)` directly: std's `Stdin` would keep what it read in
/// its own 8 KiB buffer, PINs included, and never wipe it.
struct RawStdin;

impl Read for RawStdin {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // SAFETY: reads at most buf.len() bytes into buf, which we borrow mutably.
        let n = unsafe { libc::read(libc::STDIN_FILENO, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(n.unsigned_abs())
        }
    }
}

/// The line protocol for automation: one prompt announced on stderr, one line on stdin.
pub struct LinePrompter {
    lines: Receiver<Result<Zeroizing<String>, LineError>>,
}

impl LinePrompter {
    /// Starts a reader thread on stdin.
    pub fn new() -> Self {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = LineReader::new(RawStdin);
            while let Some(line) = reader.next_line() {
                if tx.send(line).is_err() {
                    break;
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
        wait(&self.lines, id)?
            .ok_or(PromptError::Eof { id: id.into() })?
            .map_err(|e| e.for_prompt(id))
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
    /// The `what` of every [`Prompter::progress`] asked for, in order.
    pub progress: Vec<String>,
}

impl ScriptedPrompter {
    /// A prompter that gives `answers` in order.
    pub fn new(answers: Vec<Answer>) -> Self {
        ScriptedPrompter {
            answers: answers.into(),
            transcript: Vec::new(),
            interactive: true,
            progress: Vec::new(),
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

    fn progress(&mut self, what: &str, _total: Option<u64>) -> Progress {
        self.progress.push(what.to_string());
        Progress::none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hands out its input a few bytes per read, so lines cross read boundaries.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.step.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    /// Every line of `input`, read `step` bytes at a time, as `Ok(text)` or `Err(error)`.
    fn lines(input: &[u8], step: usize) -> Vec<Result<String, LineError>> {
        let mut r = LineReader::new(Trickle { data: input, step });
        let mut out = Vec::new();
        while let Some(line) = r.next_line() {
            out.push(line.map(|s| s.as_str().to_string()));
        }
        out
    }

    fn ok(s: &str) -> Result<String, LineError> {
        Ok(s.to_string())
    }

    #[test]
    fn lines_split_at_lf_and_lose_one_cr() {
        for step in [1, 3, 4096] {
            assert_eq!(
                lines(b"1234\r\nAlice\nyes\r\n\n \r\r\n", step),
                vec![ok("1234"), ok("Alice"), ok("yes"), ok(""), ok(" \r")],
                "step {step}"
            );
        }
    }

    #[test]
    fn the_last_line_counts_without_a_line_end_and_eof_ends() {
        assert_eq!(lines(b"a\nb", 1), vec![ok("a"), ok("b")]);
        assert_eq!(lines(b"a\n", 2), vec![ok("a")]);
        assert_eq!(lines(b"", 1), vec![]);
        let mut r = LineReader::new(Trickle {
            data: b"x\n",
            step: 9,
        });
        assert!(r.next_line().is_some());
        assert!(r.next_line().is_none());
        assert!(r.next_line().is_none(), "still the end when asked again");
    }

    #[test]
    fn an_over_long_line_is_one_error_and_the_next_line_is_the_next_answer() {
        let limit = "a".repeat(MAX_ANSWER_BYTES);
        let over = "b".repeat(MAX_ANSWER_BYTES + 1);
        let huge = "c".repeat(10 * MAX_ANSWER_BYTES + 7);
        let input = format!("{limit}\n{over}\nyes\n{limit}\r\n{huge}\r\nno\n{over}");
        for step in [1, 100, 4096] {
            assert_eq!(
                lines(input.as_bytes(), step),
                vec![
                    Ok(limit.clone()),
                    Err(LineError::TooLong),
                    ok("yes"),
                    Ok(limit.clone()),
                    Err(LineError::TooLong),
                    ok("no"),
                    Err(LineError::TooLong),
                ],
                "step {step}"
            );
        }
    }

    #[test]
    fn a_line_that_is_not_utf8_is_an_error_and_reading_goes_on() {
        let input = b"caf\xc3\xa9\n\xff\xfe\nAlice\ncaf\xc3\n";
        for step in [1, 4096] {
            assert_eq!(
                lines(input, step),
                vec![
                    ok("café"),
                    Err(LineError::NotUtf8),
                    ok("Alice"),
                    Err(LineError::NotUtf8)
                ],
                "step {step}"
            );
        }
    }

    #[test]
    fn read_buffers_are_wiped_once_used() {
        let mut r = LineReader::new(Trickle {
            data: b"1234\nAlice\n",
            step: 4096,
        });
        assert_eq!(r.next_line().map(|l| l.map(|s| s.len())), Some(Ok(4)));
        assert!(
            r.chunk[..5].iter().all(|&b| b == 0),
            "the PIN's bytes stay in the read buffer"
        );
        assert_eq!(&r.chunk[5..11], b"Alice\n", "unread input is kept");
    }

    #[test]
    fn line_errors_become_prompt_errors_that_say_what_to_do() {
        assert_eq!(
            LineError::TooLong.for_prompt("hsm-pin").to_string(),
            "answer to hsm-pin is longer than 1024 bytes, the limit for one answer; the whole line was discarded"
        );
        assert_eq!(
            LineError::NotUtf8.for_prompt("approver-plan").to_string(),
            "answer to approver-plan is not valid UTF-8; answers must be UTF-8 text, one line each"
        );
    }

    #[test]
    fn lines_come_through_a_pipe() {
        let mut fds = [0; 2];
        // SAFETY: pipe fills the two-element array we own.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: both fds are new and owned by nothing else.
        let (mut rd, mut wr) = unsafe {
            use std::os::fd::FromRawFd;
            (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1]))
        };
        let writer = std::thread::spawn(move || {
            wr.write_all(b"pin\r\n").unwrap();
            wr.write_all(&[b'x'; 3000]).unwrap();
            wr.write_all(b"\nback\n").unwrap();
        });
        let mut r = LineReader::new(&mut rd);
        assert_eq!(r.next_line(), Some(Ok(Zeroizing::new("pin".to_string()))));
        assert_eq!(r.next_line(), Some(Err(LineError::TooLong)));
        assert_eq!(r.next_line(), Some(Ok(Zeroizing::new("back".to_string()))));
        writer.join().unwrap();
        assert_eq!(r.next_line(), None);
    }

    #[test]
    fn scripted_prompter_records_progress_requests() {
        let mut p = ScriptedPrompter::new(vec![]);
        let bar = p.progress("waiting for KMS", None);
        bar.message("alias/a");
        bar.inc(1);
        bar.finish();
        let _ = p.progress("importing", Some(3));
        assert_eq!(p.progress, vec!["waiting for KMS", "importing"]);
    }

    #[test]
    fn progress_none_is_a_cheap_no_op() {
        let p = Progress::none();
        let q = p.clone();
        q.message("x");
        q.inc(5);
        q.finish();
        p.finish();
    }
}
