//! The signed, hash-chained audit transcript: writing and verifying it.
//!
//! Each record is one line: the RFC 8785 serialization of an object with `v`, `seq`, `prev`,
//! `time`, `type`, `data` and `sig`, where `sig` is an ECDSA P-256 signature by the audit key
//! over the serialization of the record without `sig`, and `prev` the SHA-256 of the previous
//! line. The format is specified in `docs/transcript.md`.
//!
//! This module never sees a PIN or key material: callers pass only public data, and a record's
//! `data` is built by the ceremony from hashes, lengths and identifiers.

pub mod jcs;
pub mod record;
pub mod verify;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

pub use record::RecordType;

/// Signs transcript records. Implemented by the HSM's audit key.
pub trait RecordSigner {
    /// SubjectPublicKeyInfo DER of the audit key.
    fn public_key_spki_der(&self) -> &[u8];
    /// DER ECDSA P-256 signature over SHA-256(`message`).
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, crate::hsm::HsmError>;
}

/// Why a record could not be written.
#[derive(Debug, thiserror::Error)]
pub enum TranscriptError {
    #[error(
        "transcript {path} already exists; byok never overwrites a transcript: choose a new path with --transcript or move the old file away"
    )]
    Exists { path: PathBuf },
    #[error("cannot create transcript {path}")]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write record {seq} to transcript {path}")]
    Write {
        path: PathBuf,
        seq: u64,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot sign record {seq} with the audit key")]
    Sign {
        seq: u64,
        #[source]
        source: crate::hsm::HsmError,
    },
    #[error("record {seq} cannot be serialized")]
    Encode {
        seq: u64,
        #[source]
        source: jcs::JcsError,
    },
    #[error("transcript {path} is already closed by a {last} record")]
    Closed { path: PathBuf, last: RecordType },
}

/// What the writer reports after each append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    pub seq: u64,
    /// Hex SHA-256 of the line just written (without its newline).
    pub line_sha256: String,
}

/// Appends records to a transcript that it created itself; never overwrites.
pub struct TranscriptWriter {
    file: File,
    path: PathBuf,
    next_seq: u64,
    prev: String,
    closed_by: Option<RecordType>,
}

impl TranscriptWriter {
    /// Creates `path`; fails if anything exists there.
    pub fn create(path: &Path) -> Result<Self, TranscriptError> {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|source| {
                if source.kind() == std::io::ErrorKind::AlreadyExists {
                    TranscriptError::Exists {
                        path: path.to_path_buf(),
                    }
                } else {
                    TranscriptError::Create {
                        path: path.to_path_buf(),
                        source,
                    }
                }
            })?;
        // Make the new directory entry durable too, not only the records.
        if let Some(parent) = path.parent() {
            let dir = if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            };
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(TranscriptWriter {
            file,
            path: path.to_path_buf(),
            next_seq: 0,
            prev: record::GENESIS_PREV.to_string(),
            closed_by: None,
        })
    }

    /// Path of the transcript.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of records written so far.
    pub fn len(&self) -> u64 {
        self.next_seq
    }

    /// True before the first record.
    pub fn is_empty(&self) -> bool {
        self.next_seq == 0
    }

    /// Signs and appends one record, then syncs the file before returning.
    pub fn append(
        &mut self,
        signer: &dyn RecordSigner,
        kind: RecordType,
        data: Value,
    ) -> Result<Appended, TranscriptError> {
        if let Some(last) = self.closed_by {
            return Err(TranscriptError::Closed {
                path: self.path.clone(),
                last,
            });
        }
        let seq = self.next_seq;
        let line = encode_record(signer, seq, &self.prev, &now_rfc3339(), kind, data)?;
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        let write_err = |source| TranscriptError::Write {
            path: self.path.clone(),
            seq,
            source,
        };
        self.file.write_all(&bytes).map_err(write_err)?;
        self.file.sync_data().map_err(write_err)?;
        let line_sha256 = hex::encode(Sha256::digest(line.as_bytes()));
        self.prev.clone_from(&line_sha256);
        self.next_seq += 1;
        if kind.is_terminal() {
            self.closed_by = Some(kind);
        }
        Ok(Appended { seq, line_sha256 })
    }
}

/// Serializes and signs one record; returns the line without its newline.
///
/// Public so that benchmarks and tests can build transcripts without a file.
pub fn encode_record(
    signer: &dyn RecordSigner,
    seq: u64,
    prev: &str,
    time: &str,
    kind: RecordType,
    data: Value,
) -> Result<String, TranscriptError> {
    let mut record = Map::new();
    record.insert("v".into(), json!(record::FORMAT_VERSION));
    record.insert("seq".into(), json!(seq));
    record.insert("prev".into(), json!(prev));
    record.insert("time".into(), json!(time));
    record.insert("type".into(), json!(kind.as_str()));
    record.insert("data".into(), data);
    let mut record = Value::Object(record);
    let unsigned =
        jcs::to_vec(&record).map_err(|source| TranscriptError::Encode { seq, source })?;
    let sig = signer
        .sign(&unsigned)
        .map_err(|source| TranscriptError::Sign { seq, source })?;
    if let Value::Object(map) = &mut record {
        map.insert(
            "sig".into(),
            json!(base64::engine::general_purpose::STANDARD.encode(sig)),
        );
    }
    jcs::to_string(&record).map_err(|source| TranscriptError::Encode { seq, source })
}

/// Current time as RFC 3339 UTC with millisecond precision, e.g. `2026-11-23T19:04:08.123Z`.
pub fn now_rfc3339() -> String {
    format_rfc3339(time::OffsetDateTime::now_utc())
}

/// Formats a UTC time as the transcript writes it.
pub fn format_rfc3339(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}
