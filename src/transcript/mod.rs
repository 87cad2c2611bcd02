//! The signed, hash-chained audit transcript: writing and verifying it.
//!
//! Each record is one line: the RFC 8785 serialization of an object with `v`, `seq`, `prev`,
//! `time`, `type`, `data` and `sig`, where `sig` is an ECDSA P-256 signature by the audit key
//! over the serialization of the record without `sig`, and `prev` the SHA-256 of the previous
//! line. The format is specified in `docs/transcript.md`; the `data` of each record type is a
//! typed payload in [`payload`].
//!
//! This module never sees a PIN or key material: callers pass only public data. It depends on
//! no other part of byok but the leaf modules [`crate::jcs`] and [`crate::rfc3339`] (and, for
//! verification, the ceremony file rules and statements it re-checks).

pub mod payload;
pub mod record;
pub mod verify;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::jcs;
pub use payload::Payload;
pub use record::RecordType;

/// Why a signer could not sign (a PKCS#11 error, for the HSM's audit key).
pub type SignError = Box<dyn std::error::Error + Send + Sync>;

/// Signs transcript records. Implemented by the HSM's audit key ([`crate::audit`]).
pub trait RecordSigner {
    /// SubjectPublicKeyInfo DER of the audit key.
    fn public_key_spki_der(&self) -> &[u8];
    /// DER ECDSA P-256 signature over SHA-256(`message`).
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError>;
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
        source: SignError,
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

/// Appends records to a transcript that it creates itself; never overwrites.
///
/// The file appears only with its first record in it: record 0 is written to a temporary file
/// beside it, synced, then hard-linked to the final name (which fails if anything is there), so
/// a kill before record 0 leaves no empty file blocking the path.
pub struct TranscriptWriter {
    file: Option<File>,
    path: PathBuf,
    next_seq: u64,
    prev: String,
    closed_by: Option<RecordType>,
}

impl TranscriptWriter {
    /// A writer for `path`; fails if anything exists there. Nothing is created yet.
    pub fn create(path: &Path) -> Result<Self, TranscriptError> {
        if path.symlink_metadata().is_ok() {
            return Err(TranscriptError::Exists {
                path: path.to_path_buf(),
            });
        }
        Ok(TranscriptWriter {
            file: None,
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

    /// SHA-256 of the last line written (64 zeros before the first).
    pub fn last_line_sha256(&self) -> &str {
        &self.prev
    }

    /// Signs and appends one typed record, then syncs the file before returning.
    pub fn append<P: Payload>(
        &mut self,
        signer: &dyn RecordSigner,
        payload: &P,
    ) -> Result<Appended, TranscriptError> {
        let seq = self.next_seq;
        let data = serde_json::to_value(payload).map_err(|e| TranscriptError::Encode {
            seq,
            source: jcs::JcsError::Serialize(e.to_string()),
        })?;
        self.append_value(signer, P::TYPE, data)
    }

    /// Signs and appends one record with untyped `data` (tests build malformed transcripts
    /// with it; the ceremony uses [`TranscriptWriter::append`]).
    pub fn append_value(
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
        let line = encode_record(signer, seq, &self.prev, &crate::rfc3339::now(), kind, data)?;
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        let write_err = |source| TranscriptError::Write {
            path: self.path.clone(),
            seq,
            source,
        };
        match &mut self.file {
            Some(file) => {
                if let Some(full) = crate::failpoint::disk_full(kind.as_str()) {
                    return Err(write_err(full));
                }
                file.write_all(&bytes).map_err(write_err)?;
                file.sync_data().map_err(write_err)?;
            }
            None => self.file = Some(self.publish_first(&bytes)?),
        }
        let line_sha256 = hex::encode(Sha256::digest(line.as_bytes()));
        self.prev.clone_from(&line_sha256);
        self.next_seq += 1;
        if kind.is_terminal() {
            self.closed_by = Some(kind);
        }
        Ok(Appended { seq, line_sha256 })
    }

    /// Writes record 0 beside the final name, then links it into place (never replacing).
    fn publish_first(&self, bytes: &[u8]) -> Result<File, TranscriptError> {
        let create_err = |source| TranscriptError::Create {
            path: self.path.clone(),
            source,
        };
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = self
            .path
            .with_file_name(format!(".{name}.{}.partial", std::process::id()));
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(create_err)?;
        let written = file.write_all(bytes).and_then(|()| file.sync_all());
        let linked = written.and_then(|()| std::fs::hard_link(&tmp, &self.path));
        let _ = std::fs::remove_file(&tmp);
        if let Err(source) = linked {
            return Err(if source.kind() == std::io::ErrorKind::AlreadyExists {
                TranscriptError::Exists {
                    path: self.path.clone(),
                }
            } else {
                create_err(source)
            });
        }
        // Make the new directory entry durable too, not only the records.
        let dir = match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(create_err)
    }
}

/// Serializes and signs one record of the current format version; returns the line without
/// its newline.
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
    encode_record_version(signer, record::FORMAT_VERSION, seq, prev, time, kind, data)
}

/// [`encode_record`] with an explicit format version (tests build version-1 transcripts).
pub fn encode_record_version(
    signer: &dyn RecordSigner,
    version: u64,
    seq: u64,
    prev: &str,
    time: &str,
    kind: RecordType,
    data: Value,
) -> Result<String, TranscriptError> {
    let mut record = Map::new();
    record.insert("v".into(), json!(version));
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
