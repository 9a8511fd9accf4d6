//! The catch-up request-response codec: each request and each response is one frame, a 4-byte
//! big-endian length followed by the body (PROTOCOL.md 7.5).

use std::io;

use futures::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use libp2p::StreamProtocol;
use libp2p::request_response;

use crate::gossip::{MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES};

/// The catch-up protocol name.
pub(crate) const CATCHUP_PROTOCOL: StreamProtocol = StreamProtocol::new("/xchg/catchup/1.0.0");

/// Length-prefixed frames of opaque bytes; the federation layer decodes the bodies.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct FrameCodec;

/// Reads one frame of at most `limit` bytes. The declared length is checked before anything is
/// allocated, so a peer cannot make us reserve memory by lying about it.
async fn read_frame<T: AsyncRead + Unpin + Send>(io: &mut T, limit: usize) -> io::Result<Vec<u8>> {
    let mut prefix = [0u8; 4];
    io.read_exact(&mut prefix).await?;
    let declared = u32::from_be_bytes(prefix) as usize;
    if declared > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {declared} bytes exceeds the limit of {limit}"),
        ));
    }
    let mut body = vec![0u8; declared];
    io.read_exact(&mut body).await?;
    Ok(body)
}

/// Writes one frame; refuses a body over `limit`, which the peer would refuse anyway.
async fn write_frame<T: AsyncWrite + Unpin + Send>(
    io: &mut T,
    body: &[u8],
    limit: usize,
) -> io::Result<()> {
    let length = u32::try_from(body.len())
        .ok()
        .filter(|&n| n as usize <= limit)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("frame of {} bytes exceeds the limit of {limit}", body.len()),
            )
        })?;
    io.write_all(&length.to_be_bytes()).await?;
    io.write_all(body).await?;
    io.close().await
}

impl request_response::Codec for FrameCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io, MAX_REQUEST_BYTES).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io, MAX_RESPONSE_BYTES).await
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        request: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &request, MAX_REQUEST_BYTES).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        response: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &response, MAX_RESPONSE_BYTES).await
    }
}

#[cfg(test)]
mod tests {
    use futures::io::Cursor;
    use libp2p::request_response::Codec as _;

    use super::*;

    fn frame(declared: u32, body: &[u8]) -> Vec<u8> {
        let mut bytes = declared.to_be_bytes().to_vec();
        bytes.extend_from_slice(body);
        bytes
    }

    #[tokio::test]
    async fn a_written_frame_reads_back_as_the_same_body() {
        let mut written = Cursor::new(Vec::new());
        FrameCodec
            .write_response(&CATCHUP_PROTOCOL, &mut written, b"digest".to_vec())
            .await
            .expect("write");
        assert_eq!(written.get_ref(), &frame(6, b"digest"));
        let mut reader = Cursor::new(written.into_inner());
        let body = FrameCodec
            .read_response(&CATCHUP_PROTOCOL, &mut reader)
            .await
            .expect("read");
        assert_eq!(body, b"digest");
    }

    #[tokio::test]
    async fn a_declared_length_over_the_limit_fails_before_the_body_is_read() {
        // Only the prefix is there: the read must fail on the length alone, not wait for (or
        // allocate) the announced bytes.
        let mut reader = Cursor::new(frame(MAX_REQUEST_BYTES as u32 + 1, &[]));
        let err = FrameCodec
            .read_request(&CATCHUP_PROTOCOL, &mut reader)
            .await
            .expect_err("oversized request accepted");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);

        let mut reader = Cursor::new(frame(u32::MAX, &[]));
        let err = FrameCodec
            .read_response(&CATCHUP_PROTOCOL, &mut reader)
            .await
            .expect_err("oversized response accepted");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[tokio::test]
    async fn a_frame_at_the_limit_is_accepted_and_one_byte_more_is_not_written() {
        let body = vec![7u8; MAX_REQUEST_BYTES];
        let mut reader = Cursor::new(frame(MAX_REQUEST_BYTES as u32, &body));
        let read = FrameCodec
            .read_request(&CATCHUP_PROTOCOL, &mut reader)
            .await
            .expect("request at the limit");
        assert_eq!(read.len(), MAX_REQUEST_BYTES);

        let mut written = Cursor::new(Vec::new());
        let err = FrameCodec
            .write_request(
                &CATCHUP_PROTOCOL,
                &mut written,
                vec![0; MAX_REQUEST_BYTES + 1],
            )
            .await
            .expect_err("oversized request written");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(written.get_ref().is_empty(), "nothing may reach the wire");
    }

    #[tokio::test]
    async fn a_truncated_body_is_an_error() {
        let mut reader = Cursor::new(frame(10, b"short"));
        let err = FrameCodec
            .read_response(&CATCHUP_PROTOCOL, &mut reader)
            .await
            .expect_err("truncated frame accepted");
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }
}
