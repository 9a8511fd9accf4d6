//! The bytes of a snapshot as openraft moves them: a file, never a buffer in memory.
//!
//! A snapshot holds every row of the zone (about 1.2 GB at a million listings). Openraft reads
//! the one it sends in chunks (seek to an offset, read a chunk) and writes the one it receives
//! the same way, so both can stay on disk: the leader sends from its stored snapshot file
//! (whose data starts after a header and the meta, hence the `base` offset that positions are
//! counted from), and a follower receives into an unnamed temporary file in its data directory
//! (it goes when it is closed, or with the process).

use std::io::SeekFrom;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncSeek, AsyncWrite, ReadBuf};

/// A snapshot's data: the part of `file` from `base` to its end, positions counted from
/// `base`.
#[derive(Debug)]
pub struct SnapshotBytes {
    file: tokio::fs::File,
    base: u64,
    /// A seek was started and not yet completed. (tokio asks for a completion before each
    /// seek too; that one reports the position of the last seek made through tokio, 0 for a
    /// file just handed over, which may be before `base`.)
    seeking: bool,
}

impl SnapshotBytes {
    /// The data that runs from `base` to the end of `file`, which is positioned at `base`.
    pub fn new(file: std::fs::File, base: u64) -> Self {
        SnapshotBytes {
            file: tokio::fs::File::from_std(file),
            base,
            seeking: false,
        }
    }

    /// An empty unnamed file in `dir`, to receive a snapshot into. Blocking (one file
    /// creation).
    ///
    /// # Errors
    /// The file cannot be created.
    pub fn receive_in(dir: &Path) -> std::io::Result<Self> {
        Ok(SnapshotBytes::new(tempfile::tempfile_in(dir)?, 0))
    }

    /// The file, once every write made through it is done, and where the data starts in it.
    pub async fn into_file(self) -> (std::fs::File, u64) {
        (self.file.into_std().await, self.base)
    }

    /// The whole data, read into memory: for tests, which compare snapshots.
    #[cfg(test)]
    pub async fn read_all(&mut self) -> Vec<u8> {
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
        self.seek(SeekFrom::Start(0)).await.expect("seek");
        let mut data = Vec::new();
        self.read_to_end(&mut data).await.expect("read");
        data
    }

    /// `data` in an unnamed file: for tests, which install snapshots they made.
    #[cfg(test)]
    pub fn holding(data: &[u8]) -> Self {
        use std::io::Write as _;
        let mut file = tempfile::tempfile().expect("file");
        file.write_all(data).expect("write");
        SnapshotBytes::new(file, 0)
    }

    /// Another handle on the same file (sharing its position): for tests, which install one
    /// snapshot on two state machines.
    #[cfg(test)]
    pub async fn try_clone(&self) -> std::io::Result<Self> {
        Ok(SnapshotBytes {
            file: self.file.try_clone().await?,
            base: self.base,
            seeking: false,
        })
    }
}

impl AsyncRead for SnapshotBytes {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.file).poll_read(cx, buf)
    }
}

impl AsyncWrite for SnapshotBytes {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.file).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.file).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.file).poll_shutdown(cx)
    }
}

impl AsyncSeek for SnapshotBytes {
    fn start_seek(mut self: Pin<&mut Self>, position: SeekFrom) -> std::io::Result<()> {
        let position = match position {
            SeekFrom::Start(n) => SeekFrom::Start(self.base.checked_add(n).ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::InvalidInput, "seek beyond any file")
            })?),
            // The data runs to the end of the file; a move from here is a move in the file.
            other => other,
        };
        Pin::new(&mut self.file).start_seek(position)?;
        self.seeking = true;
        Ok(())
    }

    fn poll_complete(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<u64>> {
        let (base, seeking) = (self.base, self.seeking);
        let done = std::task::ready!(Pin::new(&mut self.file).poll_complete(cx));
        self.seeking = false;
        Poll::Ready(done.and_then(|at| match at.checked_sub(base) {
            Some(at) => Ok(at),
            None if !seeking => Ok(0),
            None => Err({
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "seek before the start of the snapshot's data",
                )
            }),
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

    use super::*;

    /// Openraft sends a snapshot as chunks it seeks to, and measures it by seeking to the end:
    /// both count from where the data starts, not from the file's start.
    #[tokio::test]
    async fn positions_count_from_where_the_data_starts() {
        let mut file = tempfile::tempfile().expect("file");
        file.write_all(b"headerDATA-0123456789").expect("write");
        let mut data = SnapshotBytes::new(file, 6);
        assert_eq!(data.seek(SeekFrom::End(0)).await.expect("end"), 15);
        assert_eq!(data.seek(SeekFrom::Start(5)).await.expect("start"), 5);
        let mut chunk = [0u8; 4];
        data.read_exact(&mut chunk).await.expect("read");
        assert_eq!(&chunk, b"0123");
        assert_eq!(data.read_all().await, b"DATA-0123456789");
        let e = data
            .seek(SeekFrom::Current(-100))
            .await
            .expect_err("before");
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    }

    /// A follower writes each chunk at the offset it was sent for, whatever the order.
    #[tokio::test]
    async fn a_received_snapshot_is_written_at_the_offsets_it_comes_with() {
        let dir = tempfile::tempdir().expect("dir");
        let mut data = SnapshotBytes::receive_in(dir.path()).expect("receive");
        data.seek(SeekFrom::Start(4)).await.expect("seek");
        data.write_all(b"5678").await.expect("write");
        data.seek(SeekFrom::Start(0)).await.expect("seek");
        data.write_all(b"1234").await.expect("write");
        data.shutdown().await.expect("shutdown");
        assert_eq!(data.read_all().await, b"12345678");
        assert_eq!(
            std::fs::read_dir(dir.path()).expect("dir").count(),
            0,
            "the file has no name"
        );
        let (file, base) = data.into_file().await;
        assert_eq!((file.metadata().expect("meta").len(), base), (8, 0));
    }
}
