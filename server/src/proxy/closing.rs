//! Upgraded sessions end cleanly when kubeportal shuts down.
//!
//! Each side of a bridged session is followed frame by frame (WebSocket or
//! SPDY/3.1 framing, as the cluster's `101` chose). Once the server is
//! stopping, a side reads as ended as soon as it is between two frames, so
//! nothing is cut mid-frame; the peer it was feeding then gets a goodbye
//! before its connection is shut: a WebSocket close frame (1001, going away)
//! or a SPDY `GOAWAY`, as an API server shutting down would send. A session
//! that cannot reach a frame boundary within [`CLOSE_GRACE`] is cut.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tokio_util::task::TaskTracker;

/// How long a session has, once shutdown begins, to reach the end of the
/// frames in flight in both directions before it is cut.
pub const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Why a session ends at shutdown, in its close frame and its recording.
pub const GOING_AWAY: &str = "kubeportal is shutting down";

/// The upgraded sessions this process bridges: told to end together, and
/// waited for.
#[derive(Clone)]
pub struct Sessions {
    stop: CancellationToken,
    tasks: TaskTracker,
}

impl Default for Sessions {
    fn default() -> Self {
        Self {
            stop: CancellationToken::new(),
            tasks: TaskTracker::new(),
        }
    }
}

impl Sessions {
    /// Runs one session's bridge.
    pub(super) fn spawn<F>(&self, session: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(session);
    }

    /// Resolves once shutdown has begun.
    pub(super) fn stopping(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Asks every session to end (a session starting after this ends at once).
    pub fn stop(&self) {
        self.stop.cancel();
        self.tasks.close();
    }

    /// Resolves when every session has ended, once [`Sessions::stop`] was called.
    pub async fn ended(&self) {
        self.tasks.wait().await;
    }
}

/// The framing of an upgraded connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    WebSocket,
    Spdy,
    /// Anything else: ended at once at shutdown, with no goodbye.
    Opaque,
}

impl Framing {
    /// The framing the cluster's `101` switched to (a WebSocket over HTTP/2
    /// is a WebSocket to the cluster too).
    pub(super) fn of(response: &http::HeaderMap, websocket_over_http2: bool) -> Self {
        let upgrade = response
            .get(http::header::UPGRADE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .trim();
        if websocket_over_http2 || upgrade.eq_ignore_ascii_case("websocket") {
            Self::WebSocket
        } else if upgrade
            .get(..6)
            .is_some_and(|prefix| prefix.eq_ignore_ascii_case("spdy/3"))
        {
            Self::Spdy
        } else {
            Self::Opaque
        }
    }
}

/// Which end a [`Closing`] connection is: whom kubeportal plays to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The client: kubeportal is its server (frames it sends are unmasked).
    Client,
    /// The cluster: kubeportal is its client (WebSocket frames are masked).
    Cluster,
}

/// Follows a byte stream's frame boundaries without keeping its payloads.
#[derive(Debug)]
struct Frames {
    framing: Framing,
    /// The frame header being read (a SYN_STREAM's stream id counted in).
    header: [u8; 14],
    have: usize,
    /// Payload bytes of the current frame still to come.
    left: u64,
    /// The highest stream id this side opened (SPDY), for the GOAWAY it is answered with.
    last_stream: u32,
}

const SPDY_SYN_STREAM: u16 = 1;

impl Frames {
    fn new(framing: Framing) -> Self {
        Self {
            framing,
            header: [0; 14],
            have: 0,
            left: 0,
            last_stream: 0,
        }
    }

    /// Whether the stream is between two frames.
    fn between(&self) -> bool {
        self.have == 0 && self.left == 0
    }

    fn spdy_length(&self) -> u64 {
        u64::from(u32::from_be_bytes([
            0,
            self.header[5],
            self.header[6],
            self.header[7],
        ]))
    }

    fn spdy_syn_stream(&self) -> bool {
        self.header[0] & 0x80 != 0
            && u16::from_be_bytes([self.header[2], self.header[3]]) == SPDY_SYN_STREAM
            && self.spdy_length() >= 4
    }

    /// The current header's length, as far as its bytes so far tell.
    fn header_len(&self) -> usize {
        match self.framing {
            Framing::WebSocket if self.have < 2 => 2,
            Framing::WebSocket => {
                let extended = match self.header[1] & 0x7f {
                    126 => 2,
                    127 => 8,
                    _ => 0,
                };
                let mask = if self.header[1] & 0x80 != 0 { 4 } else { 0 };
                2 + extended + mask
            }
            Framing::Spdy if self.have >= 8 && self.spdy_syn_stream() => 12,
            Framing::Spdy => 8,
            Framing::Opaque => 0,
        }
    }

    fn payload_len(&self) -> u64 {
        match self.framing {
            Framing::WebSocket => match self.header[1] & 0x7f {
                126 => u64::from(u16::from_be_bytes([self.header[2], self.header[3]])),
                127 => {
                    let mut length = [0; 8];
                    length.copy_from_slice(&self.header[2..10]);
                    u64::from_be_bytes(length)
                }
                short => u64::from(short),
            },
            Framing::Spdy => self.spdy_length() - (self.header_len() as u64 - 8),
            Framing::Opaque => 0,
        }
    }

    /// How many of the next bytes, at most, belong to the frame in flight.
    fn wanted(&self) -> usize {
        if self.left > 0 {
            usize::try_from(self.left).unwrap_or(usize::MAX)
        } else {
            self.header_len() - self.have
        }
    }

    fn advance(&mut self, mut bytes: &[u8]) {
        if self.framing == Framing::Opaque {
            return;
        }
        while !bytes.is_empty() {
            if self.left > 0 {
                let skipped = usize::try_from(self.left)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                self.left -= skipped as u64;
                bytes = &bytes[skipped..];
                continue;
            }
            let taken = (self.header_len() - self.have).min(bytes.len());
            self.header[self.have..self.have + taken].copy_from_slice(&bytes[..taken]);
            self.have += taken;
            bytes = &bytes[taken..];
            // Reading a header's first bytes may make it longer.
            if self.have == self.header_len() {
                if self.framing == Framing::Spdy && self.have == 12 {
                    let stream = u32::from_be_bytes([
                        self.header[8],
                        self.header[9],
                        self.header[10],
                        self.header[11],
                    ]) & 0x7fff_ffff;
                    self.last_stream = self.last_stream.max(stream);
                }
                self.left = self.payload_len();
                self.have = 0;
            }
        }
    }
}

/// What a side is sent last when the session ends at shutdown.
fn goodbye(framing: Framing, end: End, last_stream: u32) -> Vec<u8> {
    match framing {
        Framing::WebSocket => {
            let mut payload = 1001u16.to_be_bytes().to_vec();
            payload.extend_from_slice(GOING_AWAY.as_bytes());
            let mut frame = vec![0x88];
            match end {
                End::Client => {
                    frame.push(payload.len() as u8);
                    frame.extend_from_slice(&payload);
                }
                End::Cluster => {
                    use aes_gcm::aead::rand_core::RngCore;
                    let mut mask = [0u8; 4];
                    aes_gcm::aead::OsRng.fill_bytes(&mut mask);
                    frame.push(0x80 | payload.len() as u8);
                    frame.extend_from_slice(&mask);
                    frame.extend(
                        payload
                            .iter()
                            .enumerate()
                            .map(|(index, byte)| byte ^ mask[index % 4]),
                    );
                }
            }
            frame
        }
        Framing::Spdy => {
            // GOAWAY: version 3, type 7, no flags, 8 bytes: the last stream
            // the other side opened that was served, and status OK.
            let mut frame = vec![0x80, 0x03, 0x00, 0x07, 0x00, 0x00, 0x00, 0x08];
            frame.extend_from_slice(&last_stream.to_be_bytes());
            frame.extend_from_slice(&0u32.to_be_bytes());
            frame
        }
        Framing::Opaque => Vec::new(),
    }
}

/// One end of a bridged session that ends between frames at shutdown.
pub(super) struct Closing<T> {
    inner: T,
    end: End,
    frames: Frames,
    stop: Pin<Box<WaitForCancellationFutureOwned>>,
    stopping: bool,
    /// Set when this end's reading stopped between two frames at shutdown.
    ended_between_frames: Arc<AtomicBool>,
    /// The other end's flag: whether all that was written here was whole frames.
    peer_ended_between_frames: Arc<AtomicBool>,
    /// The goodbye being written, and how much of it is.
    goodbye: Option<(Vec<u8>, usize)>,
    said_goodbye: bool,
}

/// Wraps both ends of a session.
pub(super) fn pair<C, U>(
    client: C,
    cluster: U,
    framing: Framing,
    stop: &CancellationToken,
) -> (Closing<C>, Closing<U>) {
    let client_flag = Arc::new(AtomicBool::new(false));
    let cluster_flag = Arc::new(AtomicBool::new(false));
    let wrap = |end, flag: &Arc<AtomicBool>, peer: &Arc<AtomicBool>| {
        (
            end,
            Frames::new(framing),
            Box::pin(stop.clone().cancelled_owned()),
            flag.clone(),
            peer.clone(),
        )
    };
    let client_parts = wrap(End::Client, &client_flag, &cluster_flag);
    let cluster_parts = wrap(End::Cluster, &cluster_flag, &client_flag);
    (
        Closing::new(client, client_parts),
        Closing::new(cluster, cluster_parts),
    )
}

type Parts = (
    End,
    Frames,
    Pin<Box<WaitForCancellationFutureOwned>>,
    Arc<AtomicBool>,
    Arc<AtomicBool>,
);

impl<T> Closing<T> {
    fn new(inner: T, (end, frames, stop, flag, peer): Parts) -> Self {
        Self {
            inner,
            end,
            frames,
            stop,
            stopping: false,
            ended_between_frames: flag,
            peer_ended_between_frames: peer,
            goodbye: None,
            said_goodbye: false,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Closing<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if !this.stopping && this.stop.as_mut().poll(context).is_ready() {
            this.stopping = true;
        }
        if !this.stopping {
            let before = buffer.filled().len();
            ready!(Pin::new(&mut this.inner).poll_read(context, buffer))?;
            this.frames.advance(&buffer.filled()[before..]);
            return Poll::Ready(Ok(()));
        }
        if this.frames.framing == Framing::Opaque || this.frames.between() {
            // The end of this side's stream, between two frames.
            this.ended_between_frames
                .store(this.frames.framing != Framing::Opaque, Ordering::Release);
            return Poll::Ready(Ok(()));
        }
        // Only what completes the frame in flight is read.
        let mut scratch = [0u8; 8 * 1024];
        let wanted = this
            .frames
            .wanted()
            .min(buffer.remaining())
            .min(scratch.len());
        let mut limited = ReadBuf::new(&mut scratch[..wanted]);
        ready!(Pin::new(&mut this.inner).poll_read(context, &mut limited))?;
        let read = limited.filled();
        this.frames.advance(read);
        buffer.put_slice(read);
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Closing<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(context, bytes)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffers: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(context, buffers)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(context)
    }

    /// Says goodbye first when what this end was sent stopped between two
    /// frames at shutdown.
    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if !this.said_goodbye
            && this.goodbye.is_none()
            && this.peer_ended_between_frames.load(Ordering::Acquire)
        {
            // The stream id a GOAWAY names is the last one this end opened.
            let frame = goodbye(this.frames.framing, this.end, this.frames.last_stream);
            this.goodbye = Some((frame, 0));
        }
        if let Some((frame, written)) = &mut this.goodbye {
            while *written < frame.len() {
                let wrote =
                    ready!(Pin::new(&mut this.inner).poll_write(context, &frame[*written..]))?;
                if wrote == 0 {
                    return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
                }
                *written += wrote;
            }
            ready!(Pin::new(&mut this.inner).poll_flush(context))?;
            this.goodbye = None;
            this.said_goodbye = true;
        }
        Pin::new(&mut this.inner).poll_shutdown(context)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn websocket(payload: &[u8], masked: bool) -> Vec<u8> {
        let mut frame = vec![0x82];
        let mask_bit = if masked { 0x80 } else { 0 };
        match payload.len() {
            length @ 0..=125 => frame.push(mask_bit | length as u8),
            length @ 126..=65535 => {
                frame.push(mask_bit | 126);
                frame.extend_from_slice(&(length as u16).to_be_bytes());
            }
            length => {
                frame.push(mask_bit | 127);
                frame.extend_from_slice(&(length as u64).to_be_bytes());
            }
        }
        if masked {
            frame.extend_from_slice(&[1, 2, 3, 4]);
        }
        frame.extend_from_slice(payload);
        frame
    }

    fn spdy_syn_stream(stream: u32) -> Vec<u8> {
        let mut frame = vec![0x80, 3, 0, 1, 0, 0, 0, 10];
        frame.extend_from_slice(&stream.to_be_bytes());
        frame.extend_from_slice(&[0; 6]);
        frame
    }

    fn spdy_data(stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut frame = stream.to_be_bytes().to_vec();
        frame.push(0);
        frame.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
        frame.extend_from_slice(payload);
        frame
    }

    /// Feeds `stream` in pieces of `piece` bytes and notes where it is between frames.
    fn boundaries(framing: Framing, stream: &[u8], piece: usize) -> Vec<usize> {
        let mut frames = Frames::new(framing);
        let mut found = Vec::new();
        let mut at = 0;
        for chunk in stream.chunks(piece) {
            for byte in chunk.chunks(1) {
                frames.advance(byte);
                at += 1;
                if frames.between() {
                    found.push(at);
                }
            }
        }
        found
    }

    #[test]
    fn websocket_frames_of_every_length_form_are_followed() {
        let frames = [
            websocket(b"", false),
            websocket(&[7; 125], true),
            websocket(&[7; 126], false),
            websocket(&[7; 70_000], true),
        ];
        let stream = frames.concat();
        let mut expected = Vec::new();
        let mut at = 0;
        for frame in &frames {
            at += frame.len();
            expected.push(at);
        }
        assert_eq!(boundaries(Framing::WebSocket, &stream, 3), expected);
        // Whole, too.
        let mut whole = Frames::new(Framing::WebSocket);
        whole.advance(&stream);
        assert!(whole.between());
        whole.advance(&stream[..stream.len() - 1]);
        assert!(!whole.between());
        assert_eq!(whole.wanted(), 1);
    }

    #[test]
    fn spdy_frames_are_followed_and_the_last_stream_opened_is_kept() {
        let frames = [
            spdy_syn_stream(1),
            spdy_data(1, b"hello"),
            spdy_syn_stream(7),
            spdy_data(7, &[0; 300]),
            spdy_syn_stream(3),
        ];
        let stream = frames.concat();
        let mut expected = Vec::new();
        let mut at = 0;
        for frame in &frames {
            at += frame.len();
            expected.push(at);
        }
        assert_eq!(boundaries(Framing::Spdy, &stream, 5), expected);
        let mut followed = Frames::new(Framing::Spdy);
        followed.advance(&stream);
        assert_eq!(followed.last_stream, 7);
        assert_eq!(
            goodbye(Framing::Spdy, End::Client, followed.last_stream),
            [0x80, 3, 0, 7, 0, 0, 0, 8, 0, 0, 0, 7, 0, 0, 0, 0]
        );
    }

    /// A client mid-frame at shutdown: its frame is finished, then it reads
    /// as ended; what the bridge passed on is whole, and the cluster is
    /// told goodbye with a masked close frame.
    #[tokio::test]
    async fn at_shutdown_a_side_ends_after_its_frame_in_flight() {
        let stop = CancellationToken::new();
        let (client, mut client_peer) = tokio::io::duplex(1 << 16);
        let (cluster, mut cluster_peer) = tokio::io::duplex(1 << 16);
        let (mut client, mut cluster) = pair(client, cluster, Framing::WebSocket, &stop);
        let first = websocket(&[1; 1000], true);
        let second = websocket(b"after", true);
        client_peer.write_all(&first[..500]).await.unwrap();
        let mut passed = vec![0u8; 4096];
        let read = client.read(&mut passed).await.unwrap();
        assert_eq!(read, 500);
        stop.cancel();
        // The rest of the frame, and the next one, are sent.
        client_peer.write_all(&first[500..]).await.unwrap();
        client_peer.write_all(&second).await.unwrap();
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.unwrap();
        assert_eq!(
            rest,
            first[500..],
            "exactly the frame in flight, then the end"
        );
        cluster.shutdown().await.unwrap();
        let mut told = Vec::new();
        cluster_peer.read_to_end(&mut told).await.unwrap();
        let (header, payload) = told.split_at(6);
        assert_eq!(&header[..2], &[0x88, 0x80 | (2 + GOING_AWAY.len()) as u8]);
        let unmasked: Vec<u8> = payload
            .iter()
            .enumerate()
            .map(|(index, byte)| byte ^ header[2 + index % 4])
            .collect();
        assert_eq!(&unmasked[..2], &1001u16.to_be_bytes());
        assert_eq!(&unmasked[2..], GOING_AWAY.as_bytes());
        // The cluster was silent, between frames: it reads as ended at
        // once, and the client gets an unmasked close frame.
        let mut nothing = Vec::new();
        cluster.read_to_end(&mut nothing).await.unwrap();
        assert!(nothing.is_empty());
        client.shutdown().await.unwrap();
        let mut told = Vec::new();
        client_peer.read_to_end(&mut told).await.unwrap();
        assert_eq!(
            &told[..4],
            &[0x88, (2 + GOING_AWAY.len()) as u8, 0x03, 0xE9]
        );
        assert_eq!(&told[4..], GOING_AWAY.as_bytes());
    }

    /// Without shutdown nothing is added: a side that closes mid-frame
    /// gets its peer no goodbye, and neither does one that ends on its own.
    #[tokio::test]
    async fn without_shutdown_nothing_is_added() {
        let stop = CancellationToken::new();
        let (client, mut client_peer) = tokio::io::duplex(1 << 16);
        let (cluster, mut cluster_peer) = tokio::io::duplex(1 << 16);
        let (mut client, mut cluster) = pair(client, cluster, Framing::WebSocket, &stop);
        let frame = websocket(b"hi", true);
        client_peer.write_all(&frame).await.unwrap();
        drop(client_peer);
        let mut read = Vec::new();
        client.read_to_end(&mut read).await.unwrap();
        assert_eq!(read, frame);
        cluster.shutdown().await.unwrap();
        let mut told = Vec::new();
        cluster_peer.read_to_end(&mut told).await.unwrap();
        assert!(told.is_empty());
        // An opaque upgrade ends at once at shutdown, with no goodbye.
        let (opaque, _peer) = tokio::io::duplex(64);
        let (other, mut other_peer) = tokio::io::duplex(64);
        let (mut opaque, mut other) = pair(opaque, other, Framing::Opaque, &stop);
        stop.cancel();
        let mut nothing = Vec::new();
        opaque.read_to_end(&mut nothing).await.unwrap();
        other.shutdown().await.unwrap();
        other_peer.read_to_end(&mut nothing).await.unwrap();
        assert!(nothing.is_empty());
    }

    #[test]
    fn the_framing_is_the_one_the_cluster_switched_to() {
        let headers = |upgrade: &str| {
            let mut headers = http::HeaderMap::new();
            headers.insert(http::header::UPGRADE, upgrade.parse().unwrap());
            headers
        };
        assert_eq!(
            Framing::of(&headers("WebSocket"), false),
            Framing::WebSocket
        );
        assert_eq!(Framing::of(&headers("SPDY/3.1"), false), Framing::Spdy);
        assert_eq!(Framing::of(&headers("h2c"), false), Framing::Opaque);
        assert_eq!(
            Framing::of(&http::HeaderMap::new(), true),
            Framing::WebSocket
        );
    }
}
