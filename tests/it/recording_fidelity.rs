//! Session recordings follow what real peers do: a stand-in kubelet that
//! reads SPDY frames as moby/spdystream does (so the recorder cannot be
//! shown one stream table while the kubelet uses another), output held back
//! until it is recorded (so nothing past the size limit reaches the user),
//! and the audit read permission's scope.

use std::collections::HashMap;
use std::time::Duration;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use kubeportal::audit::spdy::dictionary;
use kubeportal_tests::{
    double_cluster, register, spawn_app, start_double, ConfigSource, TestApp, TestDb,
};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

const REQUIRED: &str = r#"
recording:
  rules:
    - { clusters: ["dev"], mode: required }
permissions:
  rules:
    - { permission: "*", subjects: ["*"], decision: allow }
"#;

// ---------------------------------------------------------------- SPDY bits

fn control(kind: u16, flags: u8, body: &[u8]) -> Vec<u8> {
    let mut frame = vec![0x80, 3];
    frame.extend_from_slice(&kind.to_be_bytes());
    frame.push(flags);
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    frame.extend_from_slice(body);
    frame
}

fn data(stream: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = stream.to_be_bytes().to_vec();
    frame.push(flags);
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    frame.extend_from_slice(payload);
    frame
}

fn syn_stream(stream: u32, block: &[u8]) -> Vec<u8> {
    let mut body = stream.to_be_bytes().to_vec();
    body.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    body.extend_from_slice(block);
    control(1, 0, &body)
}

/// One direction's SPDY/3 header compression (zlib, the SPDY/3 dictionary).
struct Zlib {
    deflate: Compress,
    inflate: Decompress,
}

impl Zlib {
    fn new() -> Self {
        let mut deflate = Compress::new(Compression::default(), true);
        deflate.set_dictionary(&dictionary()).unwrap();
        Self {
            deflate,
            inflate: Decompress::new(true),
        }
    }

    fn block(&mut self, pairs: &[(&str, &str)]) -> Vec<u8> {
        self.compress(&raw_block(pairs))
    }

    /// Compresses `block` (any bytes) with a sync flush, as one header block.
    fn compress(&mut self, block: &[u8]) -> Vec<u8> {
        let mut output = Vec::with_capacity(block.len() + 1024);
        let mut input = block;
        loop {
            output.reserve(1024);
            let before = self.deflate.total_in();
            self.deflate
                .compress_vec(input, &mut output, FlushCompress::Sync)
                .unwrap();
            input = &input[(self.deflate.total_in() - before) as usize..];
            if input.is_empty() && output.capacity() > output.len() {
                return output;
            }
        }
    }

    fn inflate(&mut self, mut block: &[u8]) -> Vec<u8> {
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
            output.extend_from_slice(&piece[..produced]);
            match status {
                Ok(_) => {}
                Err(error) if error.needs_dictionary().is_some() => {
                    self.inflate.set_dictionary(&dictionary()).unwrap();
                    continue;
                }
                Err(error) => panic!("zlib: {error}"),
            }
            if block.is_empty() && produced < piece.len() {
                return output;
            }
        }
    }
}

/// A header block, uncompressed: a 32-bit count, then length-prefixed
/// names and values.
fn raw_block(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut block = (pairs.len() as u32).to_be_bytes().to_vec();
    for (name, value) in pairs {
        for part in [name.as_bytes(), value.as_bytes()] {
            block.extend_from_slice(&(part.len() as u32).to_be_bytes());
            block.extend_from_slice(part);
        }
    }
    block
}

/// How many bytes at the front of `bytes` one header block takes, if they
/// hold a whole one.
fn block_length(bytes: &[u8]) -> Option<usize> {
    let mut at = 0usize;
    let mut next = |length: usize| -> Option<Vec<u8>> {
        let taken = bytes.get(at..at + length)?.to_vec();
        at += length;
        Some(taken)
    };
    let count = u32::from_be_bytes(next(4)?.try_into().ok()?);
    for _ in 0..count * 2 {
        let length = u32::from_be_bytes(next(4)?.try_into().ok()?) as usize;
        next(length)?;
    }
    Some(at)
}

/// One direction's header decompression as spdystream does it: one
/// `compress/zlib` reader over an `io.LimitedReader` that each header block
/// re-arms with its compressed length. `parseHeaderValueBlock` reads only
/// the bytes the block's count and lengths call for: what the zlib stream
/// produced beyond them stays in the reader and is the start of the next
/// block. A block must be read to its last compressed byte (flate's bufio
/// pulls all of it as soon as any of it is needed), else
/// `WrongCompressedPayloadSize`.
struct HeaderReader {
    zlib: Zlib,
    decompressed: Vec<u8>,
}

impl HeaderReader {
    fn new() -> Self {
        Self {
            zlib: Zlib::new(),
            decompressed: Vec::new(),
        }
    }

    fn next_block(&mut self, compressed: &[u8]) -> std::io::Result<Vec<u8>> {
        let before = self.decompressed.len();
        let inflated = self.zlib.inflate(compressed);
        self.decompressed.extend(inflated);
        let used = block_length(&self.decompressed)
            .ok_or_else(|| std::io::Error::other("EOF in a header block"))?;
        if used <= before && !compressed.is_empty() {
            return Err(std::io::Error::other("WrongCompressedPayloadSize"));
        }
        Ok(self.decompressed.drain(..used).collect())
    }
}

/// `streamtype` as the kubelet reads it: spdystream refuses names that are
/// not lowercase, splits values at NUL, `http.Header.Get` takes the first.
fn streamtype(block: &[u8]) -> Option<String> {
    let mut at = 0usize;
    let mut next = |length: usize| {
        let taken = block[at..at + length].to_vec();
        at += length;
        taken
    };
    let count = u32::from_be_bytes(next(4).try_into().unwrap());
    let mut found = None;
    for _ in 0..count {
        let length = u32::from_be_bytes(next(4).try_into().unwrap()) as usize;
        let name = next(length);
        let length = u32::from_be_bytes(next(4).try_into().unwrap()) as usize;
        let value = next(length);
        if name == b"streamtype" && found.is_none() {
            let first = value.split(|byte| *byte == 0).next().unwrap_or_default();
            found = Some(String::from_utf8_lossy(first).into_owned());
        }
    }
    found
}

enum Read {
    SynStream { stream: u32, block: Vec<u8> },
    Ping(u32),
    Other,
}

async fn read_vec<R: AsyncRead + Unpin>(reader: &mut R, length: usize) -> std::io::Result<Vec<u8>> {
    let mut bytes = vec![0u8; length];
    reader.read_exact(&mut bytes).await?;
    Ok(bytes)
}

/// A port of moby/spdystream's `Framer.ReadFrame` (spdy/read.go): each
/// control frame type reads its own fields, not the length the frame
/// declares (RST_STREAM 8 bytes, SETTINGS 4 + 8 per entry, PING 4 bytes;
/// only GOAWAY and WINDOW_UPDATE check the length). Unknown types end the
/// connection.
async fn spdystream_read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    headers: &mut HeaderReader,
) -> std::io::Result<Read> {
    let first = reader.read_u32().await?;
    if first & 0x8000_0000 == 0 {
        let word = reader.read_u32().await?;
        read_vec(reader, (word & 0xff_ffff) as usize).await?;
        return Ok(Read::Other);
    }
    let kind = (first & 0xffff) as u16;
    let length = (reader.read_u32().await? & 0xff_ffff) as usize;
    let invalid = || std::io::Error::other("InvalidControlFrame");
    match kind {
        1 => {
            let stream = reader.read_u32().await?;
            read_vec(reader, 6).await?;
            let block = read_vec(reader, length - 10).await?;
            Ok(Read::SynStream {
                stream,
                block: headers.next_block(&block)?,
            })
        }
        2 | 8 => {
            reader.read_u32().await?;
            let block = read_vec(reader, length - 4).await?;
            headers.next_block(&block)?;
            Ok(Read::Other)
        }
        3 => {
            read_vec(reader, 8).await?;
            Ok(Read::Other)
        }
        4 => {
            let count = reader.read_u32().await?;
            for _ in 0..count {
                read_vec(reader, 8).await?;
            }
            Ok(Read::Other)
        }
        6 => Ok(Read::Ping(reader.read_u32().await?)),
        7 | 9 if length == 8 => {
            read_vec(reader, 8).await?;
            Ok(Read::Other)
        }
        _ => Err(invalid()),
    }
}

/// A stand-in for the kubelet's SPDY exec (`stdout=true`, v4): reads frames
/// as spdystream does; once the error and stdout streams are open, prints
/// `output` on stdout, a Success status, and goes away.
async fn serve_kubelet(output: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut socket = BufReader::new(socket);
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    if socket.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    if line == "\r\n" {
                        break;
                    }
                    head.push_str(&line.to_ascii_lowercase());
                }
                if !head.contains("upgrade: spdy/3.1") {
                    let _ = socket
                        .write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                        .await;
                    return;
                }
                socket
                    .write_all(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n")
                    .await
                    .unwrap();
                let (mut inflate, mut deflate) = (HeaderReader::new(), Zlib::new());
                let mut opened: HashMap<String, u32> = HashMap::new();
                // spdystream's validateStreamId: a stream id must grow, and
                // fit in 31 bits; any other SYN_STREAM is reset and ignored.
                let mut received_stream_id = 0u32;
                loop {
                    match spdystream_read_frame(&mut socket, &mut inflate).await {
                        Ok(Read::SynStream { stream, .. })
                            if stream > 0x7fff_ffff || stream < received_stream_id =>
                        {
                            let mut body = stream.to_be_bytes().to_vec();
                            body.extend_from_slice(&1u32.to_be_bytes());
                            socket.write_all(&control(3, 0, &body)).await.unwrap();
                        }
                        Ok(Read::SynStream { stream, block }) => {
                            received_stream_id = stream + 2;
                            let mut body = stream.to_be_bytes().to_vec();
                            body.extend(deflate.block(&[]));
                            socket.write_all(&control(2, 0, &body)).await.unwrap();
                            if let Some(kind) = streamtype(&block) {
                                opened.insert(kind, stream);
                            }
                            if let (Some(&error), Some(&stdout)) =
                                (opened.get("error"), opened.get("stdout"))
                            {
                                let mut bytes = data(stdout, 0, output.as_bytes());
                                bytes.extend(data(
                                    error,
                                    0,
                                    br#"{"metadata":{},"status":"Success"}"#,
                                ));
                                bytes.extend(data(stdout, 1, b""));
                                bytes.extend(data(error, 1, b""));
                                bytes.extend(control(7, 0, &[0; 8]));
                                socket.write_all(&bytes).await.unwrap();
                                socket.flush().await.unwrap();
                                tokio::time::sleep(Duration::from_millis(300)).await;
                                return;
                            }
                        }
                        Ok(Read::Ping(id)) => {
                            socket
                                .write_all(&control(6, 0, &id.to_be_bytes()))
                                .await
                                .unwrap();
                        }
                        Ok(Read::Other) => {}
                        Err(_) => return,
                    }
                }
            });
        }
    });
    url
}

/// Opens `path` on kubeportal as a SPDY/3.1 upgrade (as kubectl 1.27 does),
/// sends `frames`, and returns the DATA the client received per stream.
async fn spdy_session(app: &TestApp, path: &str, frames: &[u8]) -> HashMap<u32, Vec<u8>> {
    let socket = TcpStream::connect(app.addr).await.unwrap();
    let mut socket = BufReader::new(socket);
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\nContent-Length: 0\r\n\r\n",
        app.addr
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    let mut status = String::new();
    socket.read_line(&mut status).await.unwrap();
    assert!(status.contains(" 101 "), "{status}");
    loop {
        let mut line = String::new();
        socket.read_line(&mut line).await.unwrap();
        if line == "\r\n" {
            break;
        }
    }
    socket.write_all(frames).await.unwrap();
    let mut received: HashMap<u32, Vec<u8>> = HashMap::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let Ok(first) = socket.read_u32().await else {
                return;
            };
            let Ok(word) = socket.read_u32().await else {
                return;
            };
            // What arrives of a frame counts, the rest of it too if it never
            // comes: the user has seen it.
            let length = (word & 0xff_ffff) as usize;
            let mut body = Vec::with_capacity(length);
            let mut piece = vec![0u8; 16 * 1024];
            while body.len() < length {
                let wanted = (length - body.len()).min(piece.len());
                match socket.read(&mut piece[..wanted]).await {
                    Ok(0) | Err(_) => break,
                    Ok(read) => body.extend_from_slice(&piece[..read]),
                }
            }
            let whole = body.len() == length;
            if first & 0x8000_0000 == 0 {
                received.entry(first).or_default().extend(body);
            } else if first & 0xffff == 7 {
                return;
            }
            if !whole {
                return;
            }
        }
    })
    .await;
    received
}

/// The newest recording once its session has ended.
async fn ended_recording(app: &TestApp) -> (kubeportal::audit::RecordingInfo, String) {
    for _ in 0..50 {
        let listed = app
            .state
            .recording
            .store()
            .list_recordings(&Default::default(), None, 1)
            .await
            .unwrap();
        if let Some(info) = listed.into_iter().next() {
            let (info, text) = app.state.recording.read(&info.id).await.unwrap().unwrap();
            if info.ended_at.is_some() {
                return (info, String::from_utf8(text).unwrap());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no ended recording");
}

const PRINTED: &str = "kubelet-output-the-user-sees\n";

/// Frames the kubelet (moby/spdystream) would read otherwise than a
/// recorder skipping them: control frames whose declared length hides the
/// SYN_STREAMs after them (PING, SETTINGS and RST_STREAM are read by their
/// fields), a stream opened again under its id or with the top bit set, and
/// a header block whose leftover bytes would begin the next block's. Under
/// `required` none of them may show the user output the recording lacks.
#[tokio::test]
async fn spdy_frames_the_kubelet_reads_otherwise_leave_no_output_unrecorded() {
    let mut leaked = Vec::new();
    for wrapper in [
        "none (control)",
        "PING",
        "SETTINGS",
        "RST_STREAM",
        "stdout renamed resize by a second SYN_STREAM of its id",
        "stdout renamed resize by a SYN_STREAM of its id with the top bit set",
        "stdout named by the bytes an earlier header block left in the zlib stream",
    ] {
        let db = TestDb::sqlite();
        let app = spawn_app(&db, ConfigSource::Yaml(REQUIRED)).await;
        let url = serve_kubelet(PRINTED).await;
        register(
            &app,
            json!({"name": "dev", "url": url, "authProvider": "serviceAccount", "serviceAccountToken": "t"}),
        )
        .await;
        let mut zlib = Zlib::new();
        let mut hidden = syn_stream(1, &zlib.block(&[("streamtype", "error")]));
        hidden.extend(syn_stream(3, &zlib.block(&[("streamtype", "stdout")])));
        let frames = match wrapper {
            "PING" => control(6, 0, &[&[0, 0, 0, 1][..], &hidden].concat()),
            "SETTINGS" => control(4, 0, &[&[0, 0, 0, 0][..], &hidden].concat()),
            "RST_STREAM" => control(3, 0, &[&[0, 0, 0, 99, 0, 0, 0, 5][..], &hidden].concat()),
            // The kubelet refuses a SYN_STREAM whose id does not grow (or
            // does not fit in 31 bits) and keeps stream 3 as stdout; the
            // recorder takes it as a new name for stream 3.
            "stdout renamed resize by a second SYN_STREAM of its id" => [
                hidden,
                syn_stream(3, &zlib.block(&[("streamtype", "resize")])),
            ]
            .concat(),
            "stdout renamed resize by a SYN_STREAM of its id with the top bit set" => [
                hidden,
                syn_stream(0x8000_0003, &zlib.block(&[("streamtype", "resize")])),
            ]
            .concat(),
            // Stream 1's block inflates to a whole block (error) followed
            // by the start of another: `streamtype`, a 11-byte value,
            // "stdout\0". Stream 3's block inflates to four zero bytes.
            // The recorder reads each block from its own start: 1 is
            // `error` (the rest ignored), 3 has no headers. The kubelet reads
            // 3's headers from where 1's stopped: the value's last four
            // bytes are 3's zeros, and its first NUL-separated piece is
            // "stdout".
            "stdout named by the bytes an earlier header block left in the zlib stream" => {
                let mut zlib = Zlib::new();
                let mut first = raw_block(&[("streamtype", "error")]);
                first.extend_from_slice(&1u32.to_be_bytes());
                first.extend_from_slice(&10u32.to_be_bytes());
                first.extend_from_slice(b"streamtype");
                first.extend_from_slice(&11u32.to_be_bytes());
                first.extend_from_slice(b"stdout\0");
                let mut frames = syn_stream(1, &zlib.compress(&first));
                frames.extend(syn_stream(3, &zlib.compress(&[0, 0, 0, 0])));
                frames
            }
            _ => hidden,
        };
        let received = spdy_session(
            &app,
            "/api/kubernetes/clusters/dev/proxy/api/v1/namespaces/default/pods/api-0/exec?command=id&stdout=true",
            &frames,
        )
        .await;
        let shown =
            String::from_utf8_lossy(received.get(&3).map(Vec::as_slice).unwrap_or_default())
                .into_owned();
        let (info, text) = ended_recording(&app).await;
        assert_eq!(info.protocol, "spdy");
        if wrapper == "none (control)" {
            // The stand-in kubelet and the recorder work: shown, and recorded.
            assert_eq!(shown, PRINTED, "{wrapper}");
        }
        // Whatever the frames, what the user was shown is in the recording
        // (where the recorder cannot read the client as the kubelet does,
        // the required session ends before the kubelet's answer is shown).
        if shown.contains("kubelet-output-the-user-sees")
            && !text.contains("kubelet-output-the-user-sees")
        {
            leaked.push(format!("{wrapper}: recording = {text}"));
        }
        app.stop().await;
    }
    assert!(
        leaked.is_empty(),
        "output delivered to the user but not recorded under `required`:\n{}",
        leaked.join("\n")
    );
}

// ----------------------------------------------------------- WebSocket bits

/// A raw WebSocket handshake (no client library: the test reads the bytes
/// the client receives, partial frames too).
async fn websocket(app: &TestApp, path: &str, protocol: &str) -> BufReader<TcpStream> {
    let socket = TcpStream::connect(app.addr).await.unwrap();
    let mut socket = BufReader::new(socket);
    let head = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: {protocol}\r\n\r\n",
        app.addr
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    let mut status = String::new();
    socket.read_line(&mut status).await.unwrap();
    assert!(status.contains(" 101 "), "{status}");
    loop {
        let mut line = String::new();
        socket.read_line(&mut line).await.unwrap();
        if line == "\r\n" {
            break;
        }
    }
    socket
}

/// A masked binary frame, as clients send them.
fn client_frame(payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut frame = vec![0x82, 0x80 | 127];
    frame.extend_from_slice(&(payload.len() as u64).to_be_bytes());
    frame.extend_from_slice(&mask);
    frame.extend(
        payload
            .iter()
            .enumerate()
            .map(|(at, byte)| byte ^ mask[at % 4]),
    );
    frame
}

async fn read_all<S: AsyncRead + AsyncWrite + Unpin>(socket: &mut S) -> Vec<u8> {
    let mut received = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut received)).await;
    received
}

/// Under `required` with `maxBytes`, a large output frame is held back
/// until it is recorded: the session ends at the limit, and the user has
/// seen no more than the recording holds.
#[tokio::test]
async fn output_past_the_size_limit_never_reaches_the_user_over_websocket() {
    let db = TestDb::sqlite();
    let config = format!(
        "recording:\n  maxBytes: 4096\n{}",
        REQUIRED.trim_start_matches("\nrecording:\n")
    );
    let app = spawn_app(&db, ConfigSource::Yaml(&config)).await;
    let double = start_double().await;
    double.put_object(
        "v1",
        "pods",
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "api-0", "namespace": "default"},
               "spec": {"containers": [{"name": "app", "image": "x"}]}, "status": {"phase": "Running"}}),
    );
    register(&app, double_cluster("dev", &double)).await;
    let mut socket = websocket(
        &app,
        "/api/kubernetes/clusters/dev/proxy/api/v1/namespaces/default/pods/api-0/exec?command=cat&stdin=true&stdout=true",
        "v4.channel.k8s.io",
    )
    .await;
    let mut payload = vec![0u8];
    payload.extend(std::iter::repeat_n(b'Y', 200_000));
    socket.write_all(&client_frame(&payload)).await.unwrap();
    let received = read_all(&mut socket).await;
    let shown = received.iter().filter(|byte| **byte == b'Y').count();
    let (info, text) = ended_recording(&app).await;
    let recorded = text.matches('Y').count();
    assert!(info.truncated, "{info:?}");
    assert!(
        shown <= recorded,
        "the user received {shown} bytes of output, the recording holds {recorded}: {text}"
    );
}

/// The same over SPDY (the double's SPDY `cat`, as kubectl 1.27 opens it):
/// a 200 KB DATA frame on stdout reaches the user only as far as it is
/// recorded.
#[tokio::test]
async fn output_past_the_size_limit_never_reaches_the_user_over_spdy() {
    let db = TestDb::sqlite();
    let config = format!(
        "recording:\n  maxBytes: 4096\n{}",
        REQUIRED.trim_start_matches("\nrecording:\n")
    );
    let app = spawn_app(&db, ConfigSource::Yaml(&config)).await;
    let double = start_double().await;
    double.put_object(
        "v1",
        "pods",
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "api-0", "namespace": "default"},
               "spec": {"containers": [{"name": "app", "image": "x"}]}, "status": {"phase": "Running"}}),
    );
    register(&app, double_cluster("dev", &double)).await;
    let mut zlib = Zlib::new();
    let mut frames = syn_stream(1, &zlib.block(&[("streamtype", "error")]));
    frames.extend(syn_stream(3, &zlib.block(&[("streamtype", "stdin")])));
    frames.extend(syn_stream(5, &zlib.block(&[("streamtype", "stdout")])));
    frames.extend(data(3, 0, &vec![b'Y'; 200_000]));
    let received = spdy_session(
        &app,
        "/api/kubernetes/clusters/dev/proxy/api/v1/namespaces/default/pods/api-0/exec?command=cat&stdin=true&stdout=true",
        &frames,
    )
    .await;
    let shown = received
        .values()
        .flatten()
        .filter(|byte| **byte == b'Y')
        .count();
    let (info, text) = ended_recording(&app).await;
    let recorded = text.matches('Y').count();
    assert!(info.truncated, "{info:?}");
    assert!(
        shown <= recorded,
        "the user received {shown} bytes of output, the recording holds {recorded}: {text}"
    );
}

/// A deny of `kubernetes.audit.read` scoped to clusters would never apply
/// (the audit trail and recordings are read whole), and the next allow
/// would hand every cluster's recordings out: such a rule is refused at
/// start-up, as the proxy-only keys are on rules for other permissions.
#[test]
fn a_cluster_scoped_rule_for_audit_read_is_refused_at_start_up() {
    let config = r#"
permissions:
  rules:
    - { permission: kubernetes.audit.read, subjects: ["*"], clusters: ["dev"], decision: deny, description: "dev's sessions are private" }
    - { permission: "*", subjects: ["*"], decision: allow }
"#;
    let mut env = std::collections::BTreeMap::new();
    env.insert(
        "KUBEPORTAL_SECRET_KEY".to_owned(),
        kubeportal_tests::test_secret_key(),
    );
    let Err(error) = kubeportal::config::Config::from_parts(Some(config), &env) else {
        panic!("the rule is refused");
    };
    assert!(
        format!("{error}").contains("not judged per cluster"),
        "{error}"
    );
}
