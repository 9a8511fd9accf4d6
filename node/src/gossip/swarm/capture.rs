//! The capture file: a record of the bytes this node hands to the network, so a test can prove
//! that some strings never leave a node.

use std::fs::{File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};

/// An append-only file of records, each a `u32` big-endian length followed by that many bytes.
#[derive(Debug)]
pub(crate) struct Capture {
    path: PathBuf,
    file: File,
}

impl Capture {
    /// Opens (creating if needed) `path` for appending.
    pub(crate) fn open(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Capture {
            path: path.to_owned(),
            file,
        })
    }

    /// Appends one record and flushes it, so a reader sees it as soon as this returns.
    pub(crate) fn record(&mut self, bytes: &[u8]) {
        let Ok(length) = u32::try_from(bytes.len()) else {
            tracing::warn!(path = %self.path.display(), "capture record too long; skipped");
            return;
        };
        let mut record = Vec::with_capacity(4 + bytes.len());
        record.extend_from_slice(&length.to_be_bytes());
        record.extend_from_slice(bytes);
        if let Err(e) = self
            .file
            .write_all(&record)
            .and_then(|()| self.file.flush())
        {
            tracing::warn!(path = %self.path.display(), error = %e, "capture write failed");
        }
    }
}

/// Reads every record of a capture file.
///
/// # Errors
/// The file cannot be read, or it ends inside a record.
pub fn read_capture(path: &Path) -> io::Result<Vec<Vec<u8>>> {
    let mut bytes = Vec::new();
    File::open(path)?.read_to_end(&mut bytes)?;
    let mut records = Vec::new();
    let mut rest = bytes.as_slice();
    while !rest.is_empty() {
        let truncated = || io::Error::new(io::ErrorKind::UnexpectedEof, "truncated record");
        let (prefix, tail) = rest.split_first_chunk::<4>().ok_or_else(truncated)?;
        let length = u32::from_be_bytes(*prefix) as usize;
        if tail.len() < length {
            return Err(truncated());
        }
        let (record, tail) = tail.split_at(length);
        records.push(record.to_vec());
        rest = tail;
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_read_back_in_order_across_reopenings() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("capture");
        Capture::open(&path).expect("open").record(b"first");
        let mut capture = Capture::open(&path).expect("reopen");
        capture.record(b"");
        capture.record(b"third");
        let records = read_capture(&path).expect("read");
        assert_eq!(records, [b"first".to_vec(), Vec::new(), b"third".to_vec()]);
    }

    #[test]
    fn a_truncated_record_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("capture");
        std::fs::write(&path, [0, 0, 0, 9, b'x']).expect("write");
        assert!(read_capture(&path).is_err());
    }
}
