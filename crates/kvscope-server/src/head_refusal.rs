//! The one refusal no handler can shape: a request head longer than the
//! HTTP layer reads (`limits::HARD_MAX_HEADER_BYTES`). hyper answers it
//! itself, before any of our code sees a request — a bare `431` with an
//! empty body — and closes the connection. Clients of an OpenAI-compatible
//! API parse every refusal as `{"error": {...}}`, so each connection's
//! writes are watched for exactly that answer, and it is sent as the same
//! status with an OpenAI-shaped body instead. Every other byte passes
//! through untouched (our own 431s, for heads between
//! `limits::MAX_HEADER_BYTES` and the hard cap, carry a body and never match).

use crate::error::ApiError;
use axum::http::StatusCode;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A connection whose bare 431 is replaced by an OpenAI-shaped one.
pub struct JsonHeadRefusal<S> {
    inner: S,
    /// The replacement being written, how much of it is out, and how many
    /// bytes of hyper's answer it stands for.
    replacing: Option<(Vec<u8>, usize, usize)>,
}

impl<S> JsonHeadRefusal<S> {
    pub fn new(inner: S) -> Self {
        JsonHeadRefusal { inner, replacing: None }
    }
}

/// hyper's automatic answer to an oversized head: status line, an empty
/// body, nothing else of ours.
fn is_bare_431(buf: &[u8]) -> bool {
    buf.starts_with(b"HTTP/1.1 431 ")
        && buf.ends_with(b"\r\n\r\n")
        && buf.windows(19).any(|w| w.eq_ignore_ascii_case(b"content-length: 0\r\n"))
}

fn replacement() -> Vec<u8> {
    let error = ApiError {
        status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        message: format!(
            "the request's start line and headers are longer than the {} bytes this server reads; send a shorter URI or fewer or smaller headers",
            crate::limits::HARD_MAX_HEADER_BYTES
        ),
        kind: "invalid_request_error",
        param: None,
    };
    // Not logged here: the listener logs the connection's end with hyper's
    // error ("request head too large"), one line per refusal as elsewhere.
    let body = error.body().to_string();
    let mut out = format!(
        "HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

impl<S: AsyncWrite + Unpin> JsonHeadRefusal<S> {
    /// Writes the rest of the replacement; ready with the bytes of hyper's
    /// answer it stands for once all of it is out.
    fn poll_replacement(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        while let Some((bytes, written, _)) = &mut self.replacing {
            if *written == bytes.len() {
                break;
            }
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &bytes[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
        }
        let (_, _, stands_for) = self.replacing.take().expect("a replacement is being written");
        Poll::Ready(Ok(stands_for))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for JsonHeadRefusal<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for JsonHeadRefusal<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if self.replacing.is_none() && is_bare_431(buf) {
            self.replacing = Some((replacement(), 0, buf.len()));
        }
        if self.replacing.is_some() {
            return self.poll_replacement(cx);
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        // hyper's answer is a head without a body: the first slice.
        if let Some(first) = bufs.iter().find(|b| !b.is_empty()) {
            if self.replacing.is_some() || is_bare_431(first) {
                return self.poll_write(cx, first);
            }
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hypers_empty_431_is_recognized() {
        assert!(is_bare_431(b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: x\r\n\r\n"));
        assert!(!is_bare_431(b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 120\r\n\r\n"));
        assert!(!is_bare_431(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"));
    }
}
