//! Recording of exec and attach sessions over SPDY/3.1, as older kubectl and
//! client libraries still open them: a passive reader of the SPDY framing of
//! both directions of the bridged connection.
//!
//! The client opens one stream per channel with a SYN_STREAM whose header
//! block (zlib with the SPDY/3 dictionary, one compression context per
//! direction) names it in `streamtype`: error, stdin, stdout, stderr or
//! resize. The cluster's DATA frames on stdout and stderr are the session's
//! output; the client's on resize are the terminal's size as JSON. Both go to
//! the same [`Recorder`] the WebSocket path writes to.
//!
//! Nothing a peer declares makes the reader hold more than one bounded control
//! frame, one bounded decompressed header block and one bounded piece of a
//! DATA frame. What it cannot read stops the recording (with a warning), never
//! the session, as for WebSocket frames.

use std::collections::HashMap;

use flate2::{Decompress, FlushDecompress};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::recording::Recorder;

/// The SPDY/3 header compression dictionary (draft-mbelshe-httpbis-spdy-00,
/// 2.6.10.1), in pieces: length-prefixed header names and values, then text.
const DICTIONARY_PARTS: &[&[u8]] = &[
    b"\0\0\0\x07options",
    b"\0\0\0\x04head",
    b"\0\0\0\x04post",
    b"\0\0\0\x03put",
    b"\0\0\0\x06delete",
    b"\0\0\0\x05trace",
    b"\0\0\0\x06accept",
    b"\0\0\0\x0eaccept-charset",
    b"\0\0\0\x0faccept-encoding",
    b"\0\0\0\x0faccept-language",
    b"\0\0\0\x0daccept-ranges",
    b"\0\0\0\x03age",
    b"\0\0\0\x05allow",
    b"\0\0\0\x0dauthorization",
    b"\0\0\0\x0dcache-control",
    b"\0\0\0\x0aconnection",
    b"\0\0\0\x0ccontent-base",
    b"\0\0\0\x10content-encoding",
    b"\0\0\0\x10content-language",
    b"\0\0\0\x0econtent-length",
    b"\0\0\0\x10content-location",
    b"\0\0\0\x0bcontent-md5",
    b"\0\0\0\x0dcontent-range",
    b"\0\0\0\x0ccontent-type",
    b"\0\0\0\x04date",
    b"\0\0\0\x04etag",
    b"\0\0\0\x06expect",
    b"\0\0\0\x07expires",
    b"\0\0\0\x04from",
    b"\0\0\0\x04host",
    b"\0\0\0\x08if-match",
    b"\0\0\0\x11if-modified-since",
    b"\0\0\0\x0dif-none-match",
    b"\0\0\0\x08if-range",
    b"\0\0\0\x13if-unmodified-since",
    b"\0\0\0\x0dlast-modified",
    b"\0\0\0\x08location",
    b"\0\0\0\x0cmax-forwards",
    b"\0\0\0\x06pragma",
    b"\0\0\0\x12proxy-authenticate",
    b"\0\0\0\x13proxy-authorization",
    b"\0\0\0\x05range",
    b"\0\0\0\x07referer",
    b"\0\0\0\x0bretry-after",
    b"\0\0\0\x06server",
    b"\0\0\0\x02te",
    b"\0\0\0\x07trailer",
    b"\0\0\0\x11transfer-encoding",
    b"\0\0\0\x07upgrade",
    b"\0\0\0\x0auser-agent",
    b"\0\0\0\x04vary",
    b"\0\0\0\x03via",
    b"\0\0\0\x07warning",
    b"\0\0\0\x10www-authenticate",
    b"\0\0\0\x06method",
    b"\0\0\0\x03get",
    b"\0\0\0\x06status",
    b"\0\0\0\x06200 OK",
    b"\0\0\0\x07version",
    b"\0\0\0\x08HTTP/1.1",
    b"\0\0\0\x03url",
    b"\0\0\0\x06public",
    b"\0\0\0\x0aset-cookie",
    b"\0\0\0\x0akeep-alive",
    b"\0\0\0\x06origin",
    b"1001012012022052063003023033043053063074024054064074084094104114",
    b"12413414415416417502504505203 Non-Authoritative Information204 N",
    b"o Content301 Moved Permanently400 Bad Request401 Unauthorized403",
    b" Forbidden404 Not Found500 Internal Server Error501 Not Implemen",
    b"ted503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept O",
    b"ct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunke",
    b"d,text/html,image/png,image/jpg,image/gif,application/xml,applic",
    b"ation/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=",
    b"gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
];

/// The SPDY/3 header compression dictionary.
pub fn dictionary() -> Vec<u8> {
    DICTIONARY_PARTS.concat()
}

/// The largest control frame read. SYN_STREAM, SYN_REPLY, SETTINGS, PING and
/// the rest are a few hundred bytes in an exec session.
const MAX_CONTROL_FRAME_BYTES: usize = 64 * 1024;
/// The largest header block, decompressed.
const MAX_HEADER_BLOCK_BYTES: usize = 64 * 1024;
/// A DATA frame's payload is handed on in pieces of at most this many bytes.
const MAX_DATA_PIECE_BYTES: usize = 64 * 1024;
/// How many streams of a session are followed (exec opens at most five).
const MAX_STREAMS: usize = 64;
/// The largest resize message (`{"Width":80,"Height":24}`).
const MAX_RESIZE_BYTES: usize = 4 * 1024;

const SYN_STREAM: u16 = 1;

/// Why a side of a SPDY session cannot be recorded any further.
#[derive(Debug, thiserror::Error)]
pub enum SpdyError {
    #[error("a SPDY control frame of {declared} bytes (more than {MAX_CONTROL_FRAME_BYTES} cannot be recorded)")]
    ControlFrameTooLarge { declared: usize },
    #[error("a SPDY control frame of version {0} (only SPDY/3 is read)")]
    Version(u16),
    #[error("a SPDY header block is not valid zlib: {0}")]
    Compression(String),
    #[error("a SPDY header block of more than {MAX_HEADER_BLOCK_BYTES} bytes decompressed")]
    HeaderBlockTooLarge,
    #[error("a malformed SPDY frame: {0}")]
    Malformed(&'static str),
    #[error("more than {MAX_STREAMS} SPDY streams")]
    TooManyStreams,
    #[error("a resize message of more than {MAX_RESIZE_BYTES} bytes")]
    ResizeTooLarge,
}

impl From<SpdyError> for std::io::Error {
    fn from(error: SpdyError) -> Self {
        std::io::Error::new(std::io::ErrorKind::InvalidData, error)
    }
}

/// One frame, or a piece of a DATA frame's payload.
#[derive(Debug, PartialEq, Eq)]
enum Frame {
    Control { kind: u16, body: Vec<u8> },
    Data { stream: u32, data: Vec<u8> },
}

enum State {
    /// Reading the 8-byte frame header.
    Header,
    Control {
        kind: u16,
        length: usize,
    },
    Data {
        stream: u32,
        remaining: usize,
    },
}

/// Reads SPDY/3 frames out of one direction's byte stream. After an error it
/// holds nothing and reads nothing more.
struct Framer {
    state: State,
    buffer: Vec<u8>,
    failed: bool,
}

impl Default for Framer {
    fn default() -> Self {
        Self {
            state: State::Header,
            buffer: Vec::new(),
            failed: false,
        }
    }
}

impl Framer {
    /// How many of the last bytes pushed are not yet handed on as frames
    /// (a frame, or a piece of DATA, in progress).
    fn withheld(&self) -> usize {
        if self.failed {
            0
        } else {
            self.buffer.len()
        }
    }

    fn push(&mut self, bytes: &[u8]) -> Result<Vec<Frame>, SpdyError> {
        if self.failed {
            return Ok(Vec::new());
        }
        let parsed = self.parse(bytes);
        if parsed.is_err() {
            self.failed = true;
            self.buffer = Vec::new();
        }
        parsed
    }

    fn parse(&mut self, mut bytes: &[u8]) -> Result<Vec<Frame>, SpdyError> {
        let mut frames = Vec::new();
        loop {
            match self.state {
                State::Header => {
                    let wanted = 8 - self.buffer.len();
                    let taken = wanted.min(bytes.len());
                    self.buffer.extend_from_slice(&bytes[..taken]);
                    bytes = &bytes[taken..];
                    if self.buffer.len() < 8 {
                        return Ok(frames);
                    }
                    let header: [u8; 8] = self.buffer[..8].try_into().expect("eight bytes");
                    self.buffer.clear();
                    let length = u32::from_be_bytes([0, header[5], header[6], header[7]]) as usize;
                    if header[0] & 0x80 != 0 {
                        let version = u16::from_be_bytes([header[0] & 0x7f, header[1]]);
                        if version != 3 {
                            return Err(SpdyError::Version(version));
                        }
                        if length > MAX_CONTROL_FRAME_BYTES {
                            return Err(SpdyError::ControlFrameTooLarge { declared: length });
                        }
                        let kind = u16::from_be_bytes([header[2], header[3]]);
                        self.state = State::Control { kind, length };
                    } else {
                        let stream =
                            u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
                        if length == 0 {
                            // A FIN without data.
                            continue;
                        }
                        self.state = State::Data {
                            stream,
                            remaining: length,
                        };
                    }
                }
                State::Control { kind, length } => {
                    let taken = (length - self.buffer.len()).min(bytes.len());
                    self.buffer.extend_from_slice(&bytes[..taken]);
                    bytes = &bytes[taken..];
                    if self.buffer.len() < length {
                        return Ok(frames);
                    }
                    frames.push(Frame::Control {
                        kind,
                        body: std::mem::take(&mut self.buffer),
                    });
                    self.state = State::Header;
                }
                State::Data { stream, remaining } => {
                    let taken = remaining
                        .min(bytes.len())
                        .min(MAX_DATA_PIECE_BYTES - self.buffer.len());
                    self.buffer.extend_from_slice(&bytes[..taken]);
                    bytes = &bytes[taken..];
                    let remaining = remaining - taken;
                    if remaining > 0 && self.buffer.len() < MAX_DATA_PIECE_BYTES {
                        self.state = State::Data { stream, remaining };
                        return Ok(frames);
                    }
                    frames.push(Frame::Data {
                        stream,
                        data: std::mem::take(&mut self.buffer),
                    });
                    self.state = if remaining == 0 {
                        State::Header
                    } else {
                        State::Data { stream, remaining }
                    };
                }
            }
        }
    }
}

/// Decompresses one direction's header blocks, in order: they share one
/// zlib stream, primed with the SPDY/3 dictionary.
struct HeaderDecoder {
    inflate: Decompress,
}

impl Default for HeaderDecoder {
    fn default() -> Self {
        Self {
            inflate: Decompress::new(true),
        }
    }
}

impl HeaderDecoder {
    fn decompress(&mut self, mut block: &[u8]) -> Result<Vec<u8>, SpdyError> {
        let mut output = Vec::new();
        let mut piece = [0u8; 4096];
        loop {
            let (before_in, before_out) = (self.inflate.total_in(), self.inflate.total_out());
            let status = self
                .inflate
                .decompress(block, &mut piece, FlushDecompress::Sync);
            let consumed = (self.inflate.total_in() - before_in) as usize;
            let produced = (self.inflate.total_out() - before_out) as usize;
            block = &block[consumed..];
            if output.len() + produced > MAX_HEADER_BLOCK_BYTES {
                return Err(SpdyError::HeaderBlockTooLarge);
            }
            output.extend_from_slice(&piece[..produced]);
            match status {
                Ok(flate2::Status::StreamEnd) if !block.is_empty() => {
                    return Err(SpdyError::Compression("the zlib stream ended".into()))
                }
                Ok(_) => {}
                Err(error) if error.needs_dictionary().is_some() => {
                    self.inflate
                        .set_dictionary(&dictionary())
                        .map_err(|error| SpdyError::Compression(error.to_string()))?;
                    continue;
                }
                Err(error) => return Err(SpdyError::Compression(error.to_string())),
            }
            // Done when all input is read and the output had room to spare.
            if block.is_empty() && produced < piece.len() {
                return Ok(output);
            }
            if consumed == 0 && produced == 0 {
                return Err(SpdyError::Compression("no progress".into()));
            }
        }
    }
}

/// The value of `name` in a decompressed SPDY/3 header block (32-bit counts
/// and lengths; names are lowercase on the wire, compared without case), as
/// the kubelet reads it: spdystream splits every value at NUL bytes and adds
/// each piece under the name (a name given twice is not refused), and
/// `http.Header.Get` answers the first piece of the first occurrence.
fn header_value(block: &[u8], name: &str) -> Result<Option<String>, SpdyError> {
    fn take<'a>(block: &mut &'a [u8], length: usize) -> Result<&'a [u8], SpdyError> {
        if block.len() < length {
            return Err(SpdyError::Malformed(
                "a header block shorter than it declares",
            ));
        }
        let (taken, rest) = block.split_at(length);
        *block = rest;
        Ok(taken)
    }
    fn length(block: &mut &[u8]) -> Result<usize, SpdyError> {
        let bytes = take(block, 4)?;
        Ok(u32::from_be_bytes(bytes.try_into().expect("four bytes")) as usize)
    }
    let mut block = block;
    let count = length(&mut block)?;
    let mut found = None;
    for _ in 0..count {
        let key_length = length(&mut block)?;
        let key = take(&mut block, key_length)?;
        let value_length = length(&mut block)?;
        let value = take(&mut block, value_length)?;
        if found.is_none() && key.eq_ignore_ascii_case(name.as_bytes()) {
            let first = value.split(|byte| *byte == 0).next().unwrap_or_default();
            found = Some(String::from_utf8_lossy(first).into_owned());
        }
    }
    // spdystream reads every header block from one zlib stream: bytes left
    // after the headers would begin the next block for the kubelet, and
    // could name a stream the recorder never saw.
    if !block.is_empty() {
        return Err(SpdyError::Malformed(
            "a header block with bytes after its headers",
        ));
    }
    Ok(found)
}

/// Whether a control frame's length is the one its type's layout has, as
/// spdystream reads them (it reads fixed layouts whatever length a frame
/// declares, so a frame of another length would be read differently by the
/// kubelet than skipped here); unknown types end spdystream's connection.
fn control_frame_fits(kind: u16, body: &[u8]) -> bool {
    match kind {
        SYN_STREAM => body.len() >= 10,
        2 | 8 => body.len() >= 4,
        3 | 7 | 9 => body.len() == 8,
        6 => body.len() == 4,
        4 => {
            body.len() >= 4
                && u32::from_be_bytes(body[..4].try_into().expect("four bytes")) as usize
                    == (body.len() - 4) / 8
                && (body.len() - 4) % 8 == 0
        }
        _ => false,
    }
}

/// The streams of a session that carry something recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Channel {
    Output,
    Resize,
}

/// What the client's side of the session said, read for the recording.
#[derive(Default)]
struct ClientSide {
    framer: Framer,
    headers: HeaderDecoder,
    resize: Vec<u8>,
    /// The last stream the client opened: spdystream refuses one not above it.
    last_stream: u32,
}

/// What of the session concerns the recording.
#[derive(Debug, PartialEq)]
enum Observed {
    Output(Vec<u8>),
    Resize { width: u16, height: u16 },
}

/// The SPDY streams of one session, by id, as the client named them.
#[derive(Default)]
struct Streams {
    channels: HashMap<u32, Channel>,
}

impl ClientSide {
    fn push(&mut self, streams: &mut Streams, bytes: &[u8]) -> Result<Vec<Observed>, SpdyError> {
        let parsed = self.parse(streams, bytes);
        if parsed.is_err() {
            self.framer.failed = true;
            self.framer.buffer = Vec::new();
            self.resize = Vec::new();
        }
        parsed
    }

    fn parse(&mut self, streams: &mut Streams, bytes: &[u8]) -> Result<Vec<Observed>, SpdyError> {
        let mut observed = Vec::new();
        for frame in self.framer.push(bytes)? {
            match frame {
                Frame::Control { kind, body } => {
                    if !control_frame_fits(kind, &body) {
                        return Err(SpdyError::Malformed(
                            "a control frame of an unknown type, or of another length than its type's",
                        ));
                    }
                    // SYN_STREAM, SYN_REPLY and HEADERS carry header blocks; every
                    // one is decompressed, in order, to keep the zlib context.
                    let block = match kind {
                        SYN_STREAM => &body[10..],
                        2 | 8 => &body[4..],
                        _ => continue,
                    };
                    let block = self.headers.decompress(block)?;
                    // Read whole, whatever the frame: nothing may be left over.
                    let streamtype = header_value(&block, "streamtype")?;
                    if kind != SYN_STREAM {
                        continue;
                    }
                    let stream = u32::from_be_bytes(body[..4].try_into().expect("four bytes"));
                    if stream == 0 || stream & 0x8000_0000 != 0 || stream <= self.last_stream {
                        return Err(SpdyError::Malformed(
                            "a stream opened with an id not above the last one",
                        ));
                    }
                    self.last_stream = stream;
                    let channel = match streamtype.as_deref() {
                        Some("stdout" | "stderr") => Channel::Output,
                        Some("resize") => Channel::Resize,
                        _ => continue,
                    };
                    if streams.channels.len() >= MAX_STREAMS
                        && !streams.channels.contains_key(&stream)
                    {
                        return Err(SpdyError::TooManyStreams);
                    }
                    streams.channels.insert(stream, channel);
                }
                Frame::Data { stream, data } => {
                    if streams.channels.get(&stream) != Some(&Channel::Resize) {
                        continue;
                    }
                    if self.resize.len() + data.len() > MAX_RESIZE_BYTES {
                        return Err(SpdyError::ResizeTooLarge);
                    }
                    self.resize.extend_from_slice(&data);
                    // One JSON object per line, as client-go encodes them.
                    while let Some(end) = self.resize.iter().position(|byte| *byte == b'\n') {
                        let line: Vec<u8> = self.resize.drain(..=end).collect();
                        #[derive(serde::Deserialize)]
                        #[serde(rename_all = "PascalCase")]
                        struct Size {
                            width: u16,
                            height: u16,
                        }
                        if let Ok(size) = serde_json::from_slice::<Size>(&line) {
                            observed.push(Observed::Resize {
                                width: size.width,
                                height: size.height,
                            });
                        }
                    }
                }
            }
        }
        Ok(observed)
    }
}

/// What the cluster's side of the session said, read for the recording. Its
/// header blocks (the replies) say nothing the recording needs and are not
/// decompressed.
#[derive(Default)]
struct ClusterSide {
    framer: Framer,
}

impl ClusterSide {
    fn push(&mut self, streams: &Streams, bytes: &[u8]) -> Result<Vec<Observed>, SpdyError> {
        Ok(self
            .framer
            .push(bytes)?
            .into_iter()
            .filter_map(|frame| match frame {
                Frame::Data { stream, data }
                    if streams.channels.get(&stream) == Some(&Channel::Output) =>
                {
                    Some(Observed::Output(data))
                }
                _ => None,
            })
            .collect())
    }
}

/// The recorder and what both sides have said, shared by both directions.
struct Session<'a> {
    recorder: &'a mut Recorder,
    streams: Streams,
    recording: bool,
}

impl Session<'_> {
    /// Stores the recording's pending output if it is due; an error when
    /// the session must end because it can be recorded no further.
    async fn store_due(&mut self) -> std::io::Result<()> {
        if !self.recording {
            return Ok(());
        }
        if let Err(error) = self.recorder.store_due().await {
            self.recording = false;
            self.recorder.stopped(error.to_string()).await?;
        }
        Ok(())
    }

    /// Records what was observed; an error when the session must end
    /// because it can be recorded no further.
    async fn record(&mut self, observed: Result<Vec<Observed>, SpdyError>) -> std::io::Result<()> {
        if !self.recording {
            return Ok(());
        }
        let written = async {
            for event in observed? {
                match event {
                    Observed::Output(data) => self.recorder.output(&data).await?,
                    Observed::Resize { width, height } => {
                        self.recorder.resize(width, height).await?
                    }
                }
            }
            Ok::<_, std::io::Error>(())
        }
        .await;
        if let Err(error) = written {
            self.recording = false;
            self.recorder.stopped(error.to_string()).await?;
        }
        Ok(())
    }
}

/// Copies both ways between the client and the cluster until both ends are
/// done, recording the session. Each side's bytes are read before they are
/// passed on: a stream is named before the cluster can answer on it, and what
/// the user saw is in the recording. The recording's end is stored by the
/// caller, however the session ends.
pub async fn join_recorded<C, U>(
    client: C,
    upstream: U,
    recorder: &mut Recorder,
) -> std::io::Result<()>
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let (mut client_read, mut client_write) = tokio::io::split(client);
    let (mut upstream_read, mut upstream_write) = tokio::io::split(upstream);
    let session = tokio::sync::Mutex::new(Session {
        recorder,
        streams: Streams::default(),
        recording: true,
    });
    let to_cluster = async {
        let mut side = ClientSide::default();
        let mut buffer = vec![0u8; 16 * 1024];
        loop {
            let read = client_read.read(&mut buffer).await?;
            if read == 0 {
                break;
            }
            {
                let mut session = session.lock().await;
                let session = &mut *session;
                let observed = side.push(&mut session.streams, &buffer[..read]);
                session.record(observed).await?;
            }
            upstream_write.write_all(&buffer[..read]).await?;
        }
        upstream_write.shutdown().await
    };
    let to_client = async {
        let mut side = ClusterSide::default();
        let mut buffer = vec![0u8; 16 * 1024];
        // Bytes read but held back until the output they carry is recorded.
        let mut held = Vec::new();
        loop {
            let read = upstream_read.read(&mut buffer).await?;
            if read == 0 {
                break;
            }
            let withheld = {
                let mut session = session.lock().await;
                let observed = side.push(&session.streams, &buffer[..read]);
                session.record(observed).await?;
                if session.recording {
                    side.framer.withheld()
                } else {
                    0
                }
            };
            if held.is_empty() && withheld == 0 {
                client_write.write_all(&buffer[..read]).await?;
            } else {
                held.extend_from_slice(&buffer[..read]);
                let release = held.len().saturating_sub(withheld);
                client_write.write_all(&held[..release]).await?;
                held.drain(..release);
            }
        }
        client_write.shutdown().await.ok();
        Ok::<_, std::io::Error>(())
    };
    // Output followed by silence is stored within a chunk's age too.
    let stored = async {
        let mut due = tokio::time::interval(super::recording::CHUNK_AGE);
        due.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            due.tick().await;
            session.lock().await.store_due().await?;
        }
    };
    tokio::select! {
        copied = async { tokio::try_join!(to_cluster, to_client).map(|_| ()) } => copied,
        stopped = stored => stopped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Compress, Compression, FlushCompress};

    /// A client's header compression, as spdystream's framer does it.
    struct Deflate(Compress);

    impl Deflate {
        fn new() -> Self {
            let mut compress = Compress::new(Compression::default(), true);
            compress.set_dictionary(&dictionary()).unwrap();
            Self(compress)
        }

        fn block(&mut self, pairs: &[(&str, &str)]) -> Vec<u8> {
            let mut block = (pairs.len() as u32).to_be_bytes().to_vec();
            for (name, value) in pairs {
                for part in [name.as_bytes(), value.as_bytes()] {
                    block.extend_from_slice(&(part.len() as u32).to_be_bytes());
                    block.extend_from_slice(part);
                }
            }
            self.raw(&block)
        }

        /// Compresses `block` as given.
        fn raw(&mut self, block: &[u8]) -> Vec<u8> {
            let block = block.to_vec();
            let mut output = Vec::with_capacity(block.len() + 1024);
            let mut input = block.as_slice();
            loop {
                output.reserve(1024);
                let before = self.0.total_in();
                self.0
                    .compress_vec(input, &mut output, FlushCompress::Sync)
                    .unwrap();
                input = &input[(self.0.total_in() - before) as usize..];
                if input.is_empty() && output.capacity() > output.len() {
                    return output;
                }
            }
        }
    }

    fn control(kind: u16, body: &[u8]) -> Vec<u8> {
        let mut frame = vec![0x80, 3];
        frame.extend_from_slice(&kind.to_be_bytes());
        frame.push(0);
        frame.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        frame.extend_from_slice(body);
        frame
    }

    fn syn_stream(stream: u32, block: &[u8]) -> Vec<u8> {
        let mut body = stream.to_be_bytes().to_vec();
        body.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        body.extend_from_slice(block);
        control(SYN_STREAM, &body)
    }

    fn data(stream: u32, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mut frame = stream.to_be_bytes().to_vec();
        frame.push(u8::from(fin));
        frame.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
        frame.extend_from_slice(payload);
        frame
    }

    /// What kubectl sends for `exec -t`: error, stdout, stderr and resize
    /// streams (with the headers kubectl sets), a resize, a ping.
    fn client_bytes() -> Vec<u8> {
        let mut deflate = Deflate::new();
        let mut bytes = Vec::new();
        for (stream, kind) in [(1, "error"), (3, "stdout"), (5, "stderr"), (7, "resize")] {
            let block = deflate.block(&[("streamtype", kind)]);
            bytes.extend(syn_stream(stream, &block));
        }
        bytes.extend(control(6, &1u32.to_be_bytes()));
        bytes.extend(data(7, false, b"{\"Width\":100,\"Height\":30}\n"));
        bytes
    }

    /// What the cluster answers: replies (their header blocks not read), output
    /// on stdout and stderr, a status on the error stream, FINs, a GOAWAY.
    fn cluster_bytes() -> Vec<u8> {
        let mut deflate = Deflate::new();
        let mut bytes = Vec::new();
        for stream in [1u32, 3, 5, 7] {
            let mut body = stream.to_be_bytes().to_vec();
            body.extend(deflate.block(&[]));
            bytes.extend(control(2, &body));
        }
        bytes.extend(data(3, false, b"hello "));
        bytes.extend(data(5, false, b"warning\n"));
        bytes.extend(data(3, false, b"world\n"));
        bytes.extend(data(1, false, br#"{"status":"Success"}"#));
        for stream in [1, 3, 5] {
            bytes.extend(data(stream, true, b""));
        }
        bytes.extend(control(7, &[0; 8]));
        bytes
    }

    /// A client that makes its session unrecordable (a resize message past
    /// the bound, which Go's decoder would still read) ends the session where
    /// recording is required; elsewhere the session goes on, and the
    /// recording says where it stopped.
    #[tokio::test]
    async fn a_required_session_ends_when_the_client_makes_it_unrecordable() {
        use crate::audit::recording::{
            RecordMode, RecordingConfig, RecordingPolicy, RecordingRule,
        };
        use tokio::io::AsyncWriteExt;
        for (mode, ends) in [
            (RecordMode::Required, true),
            (RecordMode::BestEffort, false),
        ] {
            let store = std::sync::Arc::new(crate::audit::store::memory::MemoryStore::default());
            let policy = RecordingPolicy::new(
                &RecordingConfig {
                    rules: vec![RecordingRule {
                        clusters: vec!["dev".into()],
                        mode,
                    }],
                    ..RecordingConfig::default()
                },
                store,
            )
            .unwrap();
            let recorder = policy
                .start(
                    "dev",
                    "/api/v1/namespaces/a/pods/p/exec",
                    "user:default/alice",
                    "spdy",
                )
                .await
                .unwrap();
            let id = recorder.name.clone();
            let (client, mut client_peer) = tokio::io::duplex(1 << 20);
            let (upstream, _upstream_peer) = tokio::io::duplex(1 << 20);
            let session = tokio::spawn(async move {
                let mut recorder = recorder;
                let joined = join_recorded(client, upstream, &mut recorder).await;
                recorder.finish().await.unwrap();
                joined
            });
            let mut deflate = Deflate::new();
            for (stream, kind) in [(1, "error"), (3, "stdout"), (5, "stdin"), (7, "resize")] {
                let block = deflate.block(&[("streamtype", kind)]);
                client_peer
                    .write_all(&syn_stream(stream, &block))
                    .await
                    .unwrap();
            }
            let mut resize = vec![b' '; 5_000];
            resize.extend_from_slice(b"{\"Width\":80,\"Height\":24}\n");
            client_peer
                .write_all(&data(7, false, &resize))
                .await
                .unwrap();
            let outcome = tokio::time::timeout(std::time::Duration::from_secs(2), session).await;
            if ends {
                assert!(matches!(outcome, Ok(Ok(Err(_)))), "{mode:?}: {outcome:?}");
            } else {
                assert!(outcome.is_err(), "{mode:?}: the session goes on");
            }
            let (_, text) = policy.read(&id).await.unwrap().unwrap();
            let text = String::from_utf8(text).unwrap();
            assert!(
                text.contains(r#""m","recording stopped: "#),
                "{mode:?}: {text}"
            );
        }
    }

    /// Feeds both sides in the given pieces; returns what was observed.
    fn observe(client: &[&[u8]], cluster: &[&[u8]]) -> Vec<Observed> {
        let mut streams = Streams::default();
        let mut client_side = ClientSide::default();
        let mut cluster_side = ClusterSide::default();
        let mut observed = Vec::new();
        for piece in client {
            observed.extend(client_side.push(&mut streams, piece).unwrap());
        }
        for piece in cluster {
            observed.extend(cluster_side.push(&streams, piece).unwrap());
        }
        observed
    }

    fn output(observed: &[Observed]) -> String {
        observed
            .iter()
            .filter_map(|event| match event {
                Observed::Output(data) => Some(String::from_utf8_lossy(data).into_owned()),
                Observed::Resize { .. } => None,
            })
            .collect()
    }

    #[test]
    fn the_dictionary_is_spdy3s() {
        let dictionary = dictionary();
        assert_eq!(dictionary.len(), 1423);
        // Its Adler-32, the dictionary id of every SPDY/3 header stream.
        let mut deflate = Compress::new(Compression::default(), true);
        assert_eq!(deflate.set_dictionary(&dictionary).unwrap(), 3_821_447_106);
    }

    #[test]
    fn output_and_resizes_are_read_from_both_sides() {
        let observed = observe(&[&client_bytes()], &[&cluster_bytes()]);
        assert_eq!(
            observed,
            vec![
                Observed::Resize {
                    width: 100,
                    height: 30
                },
                Observed::Output(b"hello ".to_vec()),
                Observed::Output(b"warning\n".to_vec()),
                Observed::Output(b"world\n".to_vec()),
            ]
        );
    }

    #[test]
    fn frames_split_at_every_byte_boundary_are_read_alike() {
        let (client, cluster) = (client_bytes(), cluster_bytes());
        let whole = observe(&[&client], &[&cluster]);
        for at in 0..=client.len() {
            let (first, second) = client.split_at(at);
            assert_eq!(
                observe(&[first, second], &[&cluster]),
                whole,
                "client at {at}"
            );
        }
        for at in 0..=cluster.len() {
            let (first, second) = cluster.split_at(at);
            let observed = observe(&[&client], &[first, second]);
            assert_eq!(output(&observed), output(&whole), "cluster at {at}");
        }
        let bytewise = observe(
            &client.chunks(1).collect::<Vec<_>>(),
            &cluster.chunks(1).collect::<Vec<_>>(),
        );
        assert_eq!(output(&bytewise), "hello warning\nworld\n");
        assert!(bytewise.contains(&Observed::Resize {
            width: 100,
            height: 30
        }));
    }

    /// A stream named as the kubelet reads names is recorded, however
    /// the client writes the name: a value with NUL-separated pieces, or
    /// the name given twice (spdystream does not refuse it), count by
    /// their first piece.
    #[test]
    fn stream_names_are_read_as_the_kubelet_reads_them() {
        for pairs in [
            &[("streamtype", "stdout\0x")][..],
            &[("streamtype", "stdout"), ("streamtype", "x")],
            &[("streamtype", "stdout"), ("StreamType", "stdin")],
            &[("other", "y"), ("streamtype", "stderr\0stdin\0")],
        ] {
            let mut deflate = Deflate::new();
            let client = syn_stream(1, &deflate.block(pairs));
            let cluster = data(1, false, b"secret output");
            assert_eq!(
                output(&observe(&[&client], &[&cluster])),
                "secret output",
                "{pairs:?}"
            );
        }
        // Whose first piece names no output stream: not output.
        let mut deflate = Deflate::new();
        let client = syn_stream(1, &deflate.block(&[("streamtype", "stdin\0stdout")]));
        assert!(observe(&[&client], &[&data(1, false, b"typed")]).is_empty());
    }

    #[test]
    fn data_on_streams_the_client_did_not_name_is_not_output() {
        let mut deflate = Deflate::new();
        let client = syn_stream(1, &deflate.block(&[("streamtype", "stdin")]));
        let cluster = data(1, false, b"not output");
        let mut other = data(9, false, b"nor this");
        other.extend(data(3, false, b"nor that"));
        assert!(observe(&[&client], &[&cluster, &other]).is_empty());
    }

    #[test]
    fn the_clients_frames_are_read_as_spdystream_reads_them() {
        // Well-formed control frames of every kind the client sends are
        // read past; the cluster's unknown frames are skipped.
        let mut deflate = Deflate::new();
        let mut client = control(4, &[0, 0, 0, 0]);
        client.extend(control(6, &[0, 0, 0, 1]));
        client.extend(syn_stream(1, &deflate.block(&[("streamtype", "stdout")])));
        client.extend(control(9, &[0, 0, 0, 1, 0, 0, 0x10, 0]));
        let mut cluster = control(0x7abd, &[1; 300]);
        cluster.extend(data(1, false, b"still read"));
        let observed = observe(&[&client], &[&cluster]);
        assert_eq!(output(&observed), "still read");

        // What spdystream would read otherwise than skipping it by its
        // declared length, or refuse, stops the client's side.
        let stdout =
            |deflate: &mut Deflate| syn_stream(3, &deflate.block(&[("streamtype", "stdout")]));
        let mut deflate = Deflate::new();
        let mut ping_hiding_streams = vec![0u8, 0, 0, 1];
        ping_hiding_streams.extend(stdout(&mut deflate));
        let mut deflate = Deflate::new();
        let renamed = [
            stdout(&mut deflate),
            syn_stream(3, &deflate.block(&[("streamtype", "resize")])),
        ]
        .concat();
        let mut deflate = Deflate::new();
        let top_bit = [
            stdout(&mut deflate),
            syn_stream(0x8000_0003, &deflate.block(&[("streamtype", "resize")])),
        ]
        .concat();
        // A block whose headers are followed by more bytes.
        let mut raw = 1u32.to_be_bytes().to_vec();
        for part in [&b"streamtype"[..], b"stdout"] {
            raw.extend_from_slice(&(part.len() as u32).to_be_bytes());
            raw.extend_from_slice(part);
        }
        raw.extend_from_slice(&[0, 0, 0, 0]);
        let trailing = Deflate::new().raw(&raw);
        for (what, client) in [
            (
                "an unknown control frame",
                control(0x7abc, b"whatever this is"),
            ),
            (
                "a PING longer than 4 bytes",
                control(6, &ping_hiding_streams),
            ),
            (
                "a SETTINGS of another length than its count",
                control(4, &[0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]),
            ),
            ("an RST_STREAM of 12 bytes", control(3, &[0; 12])),
            ("a stream opened twice", renamed),
            ("a stream id with its top bit set", top_bit),
            (
                "a header block with trailing bytes",
                syn_stream(3, &trailing),
            ),
        ] {
            let mut side = ClientSide::default();
            let mut streams = Streams::default();
            assert!(side.push(&mut streams, &client).is_err(), "{what}");
        }
    }

    #[test]
    fn hostile_control_frame_lengths_stop_the_reader_and_keep_nothing() {
        for declared in [MAX_CONTROL_FRAME_BYTES + 1, 0xff_ffff] {
            let mut framer = Framer::default();
            let mut frame = vec![0x80, 3, 0, 1, 0];
            frame.extend_from_slice(&(declared as u32).to_be_bytes()[1..]);
            let error = framer.push(&frame).unwrap_err();
            assert!(
                matches!(error, SpdyError::ControlFrameTooLarge { declared: found } if found == declared),
                "{error}"
            );
            for _ in 0..64 {
                assert!(framer.push(&[b'y'; 16 * 1024]).unwrap().is_empty());
            }
            assert_eq!(framer.buffer.capacity(), 0);
        }
        let mut framer = Framer::default();
        assert!(matches!(
            framer.push(&[0x80, 2, 0, 1, 0, 0, 0, 0]),
            Err(SpdyError::Version(2))
        ));
    }

    #[test]
    fn the_largest_data_frame_is_read_in_bounded_pieces() {
        let mut framer = Framer::default();
        let declared = 0xff_ffff;
        let mut header = 3u32.to_be_bytes().to_vec();
        header.push(0);
        header.extend_from_slice(&(declared as u32).to_be_bytes()[1..]);
        let mut frames = framer.push(&header).unwrap();
        let chunk = vec![b'x'; 16 * 1024];
        let mut fed = 0;
        while fed < declared {
            let piece = &chunk[..chunk.len().min(declared - fed)];
            frames.extend(framer.push(piece).unwrap());
            fed += piece.len();
            assert!(framer.buffer.len() <= MAX_DATA_PIECE_BYTES);
        }
        let mut total = 0;
        for frame in &frames {
            let Frame::Data { stream: 3, data } = frame else {
                panic!("{frame:?}")
            };
            assert!(data.len() <= MAX_DATA_PIECE_BYTES);
            total += data.len();
        }
        assert_eq!(total, declared);
        // The next frame is read from where this one ended.
        assert_eq!(
            framer.push(&data(5, false, b"next")).unwrap(),
            vec![Frame::Data {
                stream: 5,
                data: b"next".to_vec()
            }]
        );
    }

    #[test]
    fn a_header_block_that_is_not_zlib_stops_the_client_side() {
        let mut streams = Streams::default();
        let mut side = ClientSide::default();
        let error = side
            .push(&mut streams, &syn_stream(1, b"this is not zlib at all"))
            .unwrap_err();
        assert!(matches!(error, SpdyError::Compression(_)), "{error}");
        // Nothing after it is read, even a valid stream.
        let valid = syn_stream(3, &Deflate::new().block(&[("streamtype", "stdout")]));
        assert!(side.push(&mut streams, &valid).unwrap().is_empty());
        assert!(streams.channels.is_empty());
        assert_eq!(side.framer.buffer.capacity(), 0);
    }

    #[test]
    fn header_blocks_that_inflate_too_far_or_lie_about_lengths_are_refused() {
        let mut streams = Streams::default();
        let mut side = ClientSide::default();
        let huge = "a".repeat(MAX_HEADER_BLOCK_BYTES + 1);
        let block = Deflate::new().block(&[("streamtype", "stdout"), ("x-padding", &huge)]);
        assert!(block.len() < MAX_CONTROL_FRAME_BYTES);
        let error = side.push(&mut streams, &syn_stream(1, &block)).unwrap_err();
        assert!(matches!(error, SpdyError::HeaderBlockTooLarge), "{error}");

        // A count and lengths beyond the block.
        let mut side = ClientSide::default();
        let raw = [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1, b'a'];
        let mut compress = Compress::new(Compression::default(), true);
        compress.set_dictionary(&dictionary()).unwrap();
        let mut lying = Vec::with_capacity(1024);
        compress
            .compress_vec(&raw, &mut lying, FlushCompress::Sync)
            .unwrap();
        let error = side.push(&mut streams, &syn_stream(1, &lying)).unwrap_err();
        assert!(matches!(error, SpdyError::Malformed(_)), "{error}");
        assert!(streams.channels.is_empty());
    }

    #[test]
    fn a_client_opening_endless_streams_is_refused() {
        let mut streams = Streams::default();
        let mut side = ClientSide::default();
        let mut deflate = Deflate::new();
        let mut refused = false;
        for stream in (1..).step_by(2).take(MAX_STREAMS + 1) {
            let frame = syn_stream(stream, &deflate.block(&[("streamtype", "stdout")]));
            if let Err(error) = side.push(&mut streams, &frame) {
                assert!(matches!(error, SpdyError::TooManyStreams), "{error}");
                refused = true;
            }
        }
        assert!(refused);
        assert!(streams.channels.len() <= MAX_STREAMS);
    }
}
