//! Exec and attach over SPDY/3.1, as kubelet serves them behind
//! kube-apiserver to kubectl before 1.30 and to client libraries that default
//! to SPDY.
//!
//! The upgrade request carries `Upgrade: SPDY/3.1` and the channel protocols
//! the client speaks in `X-Stream-Protocol-Version` (`v4.channel.k8s.io`,
//! `v3.channel.k8s.io`, `v2.channel.k8s.io`, `channel.k8s.io`); the `101`
//! names the one picked, the client's first that the double speaks. The client
//! then opens one SPDY stream per channel with a SYN_STREAM whose header block
//! (zlib with the SPDY/3 dictionary) says `streamtype`: error, stdin, stdout,
//! stderr (not with a tty), resize (with a tty, v3 and later). Each is answered
//! with a SYN_REPLY; once all the request asks for are open, the program runs
//! as over WebSocket: output in DATA frames on stdout or stderr, stdin (closed
//! by a FIN) read by `cat` and the shell, resizes (one JSON object a line)
//! read by the shell and otherwise ignored. Then the status goes on
//! the error stream (v4: a `Status` object, success too; earlier: an error
//! message, only on failure), every stream is finished, a GOAWAY is sent and
//! the connection closed. PINGs are answered; SETTINGS, WINDOW_UPDATE and
//! other frames are read and ignored (as in moby/spdystream, there is no flow
//! control).

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use crate::exec::{parse_resize, status_message, Outcome, Program, Streams};
use crate::shell::{Output, Shell};
use crate::status::ApiError;

const PROTOCOL_HEADER: &str = "X-Stream-Protocol-Version";
const ACCEPTED_HEADER: &str = "X-Accepted-Stream-Protocol-Versions";

/// The channel protocols over SPDY, best first.
const SUPPORTED: [&str; 4] = [
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
];

/// The largest frame the double reads.
const MAX_FRAME_BYTES: usize = 1024 * 1024;
/// How long to wait for the client to leave after the GOAWAY.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const FLAG_FIN: u8 = 0x01;

/// The SPDY/3 header compression dictionary, in pieces: length-prefixed
/// header names and values, then text.
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

/// Answers a SPDY/3.1 upgrade of `pods/exec` or `pods/attach`.
pub(crate) fn serve(
    mut request: Request,
    program: Program,
    streams: Streams,
    tty: bool,
    shutdown: watch::Receiver<bool>,
) -> Result<Response, ApiError> {
    let offered: Vec<String> = request
        .headers()
        .get_all(PROTOCOL_HEADER)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .map(|value| value.trim().to_owned())
        .collect();
    if offered.is_empty() {
        return Err(ApiError::bad_request(format!(
            "unable to upgrade: {PROTOCOL_HEADER} is required"
        )));
    }
    let Some(chosen) = offered
        .iter()
        .find_map(|protocol| SUPPORTED.iter().find(|supported| *supported == protocol))
    else {
        let message = format!(
            "unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server accepts {SUPPORTED:?}"
        );
        let mut response = (StatusCode::FORBIDDEN, message).into_response();
        for protocol in SUPPORTED {
            response
                .headers_mut()
                .append(ACCEPTED_HEADER, HeaderValue::from_static(protocol));
        }
        return Ok(response);
    };
    let upgrade = hyper::upgrade::on(&mut request);
    let session = Session {
        version: chosen,
        program,
        streams,
        tty,
    };
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else {
            return;
        };
        tokio::select! {
            _ = session.run(TokioIo::new(upgraded)) => {}
            _ = crate::server::stopped(shutdown) => {}
        }
    });
    let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
    headers.insert(PROTOCOL_HEADER, HeaderValue::from_static(chosen));
    Ok(response)
}

/// One frame as read.
#[derive(Debug, PartialEq, Eq)]
enum Frame {
    Control {
        kind: u16,
        flags: u8,
        body: Vec<u8>,
    },
    Data {
        stream: u32,
        flags: u8,
        data: Vec<u8>,
    },
}

async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R) -> std::io::Result<Frame> {
    let mut header = [0u8; 8];
    reader.read_exact(&mut header).await?;
    let flags = header[4];
    let length = u32::from_be_bytes([0, header[5], header[6], header[7]]) as usize;
    if length > MAX_FRAME_BYTES {
        return Err(std::io::Error::other(format!(
            "a SPDY frame of {length} bytes"
        )));
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).await?;
    if header[0] & 0x80 != 0 {
        let version = u16::from_be_bytes([header[0] & 0x7f, header[1]]);
        if version != 3 {
            return Err(std::io::Error::other(format!("SPDY version {version}")));
        }
        Ok(Frame::Control {
            kind: u16::from_be_bytes([header[2], header[3]]),
            flags,
            body,
        })
    } else {
        Ok(Frame::Data {
            stream: u32::from_be_bytes([header[0], header[1], header[2], header[3]]) & 0x7fff_ffff,
            flags,
            data: body,
        })
    }
}

fn control_frame(kind: u16, flags: u8, body: &[u8]) -> Vec<u8> {
    let mut frame = vec![0x80, 3];
    frame.extend_from_slice(&kind.to_be_bytes());
    frame.push(flags);
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    frame.extend_from_slice(body);
    frame
}

fn data_frame(stream: u32, flags: u8, data: &[u8]) -> Vec<u8> {
    let mut frame = (stream & 0x7fff_ffff).to_be_bytes().to_vec();
    frame.push(flags);
    frame.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
    frame.extend_from_slice(data);
    frame
}

/// A header block, uncompressed: 32-bit count, then length-prefixed names
/// (lowercase) and values.
fn header_block(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut block = (pairs.len() as u32).to_be_bytes().to_vec();
    for (name, value) in pairs {
        for part in [name.to_ascii_lowercase().as_bytes(), value.as_bytes()] {
            block.extend_from_slice(&(part.len() as u32).to_be_bytes());
            block.extend_from_slice(part);
        }
    }
    block
}

fn parse_header_block(block: &[u8]) -> Option<HashMap<String, String>> {
    fn next<'a>(block: &mut &'a [u8]) -> Option<&'a [u8]> {
        let length = u32::from_be_bytes(block.get(..4)?.try_into().ok()?) as usize;
        let value = block.get(4..4 + length)?;
        *block = &block[4 + length..];
        Some(value)
    }
    let mut block = block;
    let count = u32::from_be_bytes(block.get(..4)?.try_into().ok()?);
    block = &block[4..];
    let mut headers = HashMap::new();
    for _ in 0..count {
        let name = String::from_utf8_lossy(next(&mut block)?).to_ascii_lowercase();
        let value = String::from_utf8_lossy(next(&mut block)?).into_owned();
        headers.insert(name, value);
    }
    Some(headers)
}

/// One direction's header compression: a zlib stream with the SPDY/3
/// dictionary, each block ending with a sync flush.
struct Zlib {
    deflate: Compress,
    inflate: Decompress,
}

impl Zlib {
    fn new() -> std::io::Result<Self> {
        let mut deflate = Compress::new(Compression::default(), true);
        deflate
            .set_dictionary(&DICTIONARY_PARTS.concat())
            .map_err(std::io::Error::other)?;
        Ok(Self {
            deflate,
            inflate: Decompress::new(true),
        })
    }

    fn compress(&mut self, block: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut output = Vec::with_capacity(block.len() + 64);
        let mut input = block;
        loop {
            if output.capacity() - output.len() < 64 {
                output.reserve(256);
            }
            let before = self.deflate.total_in();
            self.deflate
                .compress_vec(input, &mut output, FlushCompress::Sync)
                .map_err(std::io::Error::other)?;
            input = &input[(self.deflate.total_in() - before) as usize..];
            // A sync flush is complete when it left room in the output.
            if input.is_empty() && output.capacity() > output.len() {
                return Ok(output);
            }
        }
    }

    fn decompress(&mut self, block: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut output = Vec::new();
        let mut input = block;
        let mut piece = [0u8; 4096];
        loop {
            let (before_in, before_out) = (self.inflate.total_in(), self.inflate.total_out());
            let status = self
                .inflate
                .decompress(input, &mut piece, FlushDecompress::Sync);
            input = &input[(self.inflate.total_in() - before_in) as usize..];
            let produced = (self.inflate.total_out() - before_out) as usize;
            output.extend_from_slice(&piece[..produced]);
            if output.len() > MAX_FRAME_BYTES {
                return Err(std::io::Error::other("a header block too large"));
            }
            match status {
                Ok(_) => {}
                Err(error) if error.needs_dictionary().is_some() => {
                    self.inflate
                        .set_dictionary(&DICTIONARY_PARTS.concat())
                        .map_err(std::io::Error::other)?;
                    continue;
                }
                Err(error) => return Err(std::io::Error::other(error)),
            }
            if input.is_empty() && produced < piece.len() {
                return Ok(output);
            }
        }
    }
}

struct Session {
    version: &'static str,
    program: Program,
    streams: Streams,
    tty: bool,
}

/// The streams the client opened, by type.
#[derive(Default)]
struct Opened {
    by_type: HashMap<String, u32>,
}

impl Session {
    async fn run<S: AsyncRead + AsyncWrite + Unpin>(self, io: S) {
        let (mut reader, mut writer) = tokio::io::split(io);
        if self.converse(&mut reader, &mut writer).await.is_ok() {
            let _ = writer
                .write_all(&control_frame(GOAWAY, 0, &[0, 0, 0, 0, 0, 0, 0, 0]))
                .await;
            let _ = writer.flush().await;
            let _ = writer.shutdown().await;
            // Let the client read everything and leave first.
            let _ = tokio::time::timeout(CLOSE_GRACE, async {
                while read_frame(&mut reader).await.is_ok() {}
            })
            .await;
        }
    }

    /// The stream types this request needs before the program runs.
    fn expected(&self) -> Vec<&'static str> {
        let mut expected = vec!["error"];
        if self.streams.stdin {
            expected.push("stdin");
        }
        if self.streams.stdout {
            expected.push("stdout");
        }
        if self.streams.stderr {
            expected.push("stderr");
        }
        if self.tty && self.version != "v2.channel.k8s.io" && self.version != "channel.k8s.io" {
            expected.push("resize");
        }
        expected
    }

    async fn converse<R, W>(&self, reader: &mut R, writer: &mut W) -> std::io::Result<()>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let mut zlib = Zlib::new()?;
        let mut opened = Opened::default();
        let expected = self.expected();
        let mut started = false;
        let mut pending_stdin: Vec<u8> = Vec::new();
        let mut pending_resize: Vec<u8> = Vec::new();
        let mut stdin_closed = false;
        let mut shell: Option<Shell> = None;
        loop {
            let frame = match read_frame(reader).await {
                Ok(frame) => frame,
                // The client left before the program ended.
                Err(_) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            };
            match frame {
                Frame::Control {
                    kind: SYN_STREAM,
                    flags,
                    body,
                } if body.len() >= 10 => {
                    let stream =
                        u32::from_be_bytes(body[..4].try_into().expect("four bytes")) & 0x7fff_ffff;
                    let headers = parse_header_block(&zlib.decompress(&body[10..])?)
                        .ok_or_else(|| std::io::Error::other("a malformed header block"))?;
                    let reply = zlib.compress(&header_block(&[]))?;
                    let mut body = stream.to_be_bytes().to_vec();
                    body.extend_from_slice(&reply);
                    writer
                        .write_all(&control_frame(SYN_REPLY, 0, &body))
                        .await?;
                    writer.flush().await?;
                    if let Some(kind) = headers.get("streamtype") {
                        if kind == "stdin" && flags & FLAG_FIN != 0 {
                            stdin_closed = true;
                        }
                        opened.by_type.insert(kind.clone(), stream);
                    }
                }
                Frame::Control {
                    kind: SYN_REPLY | 8,
                    body,
                    ..
                } if body.len() >= 4 => {
                    zlib.decompress(&body[4..])?;
                }
                Frame::Control {
                    kind: PING, body, ..
                } => {
                    writer.write_all(&control_frame(PING, 0, &body)).await?;
                    writer.flush().await?;
                }
                Frame::Control { kind: GOAWAY, .. } => {
                    return Err(std::io::ErrorKind::UnexpectedEof.into())
                }
                Frame::Control { .. } => {}
                Frame::Data {
                    stream,
                    flags,
                    data,
                } => {
                    if opened.by_type.get("stdin") == Some(&stream) {
                        pending_stdin.extend_from_slice(&data);
                        if flags & FLAG_FIN != 0 {
                            stdin_closed = true;
                        }
                    } else if opened.by_type.get("resize") == Some(&stream) {
                        pending_resize.extend_from_slice(&data);
                    }
                }
            }
            if !started
                && expected
                    .iter()
                    .all(|kind| opened.by_type.contains_key(*kind))
            {
                started = true;
            }
            if !started {
                continue;
            }
            let outcome = match &self.program {
                Program::Echo(arguments) => {
                    let line = format!("{}\n", arguments.join(" "));
                    self.write(writer, &opened, "stdout", line.as_bytes())
                        .await?;
                    Outcome::Success
                }
                Program::Cat => {
                    if !pending_stdin.is_empty() {
                        let data = std::mem::take(&mut pending_stdin);
                        self.write(writer, &opened, "stdout", &data).await?;
                    }
                    if !stdin_closed {
                        // Without stdin, cat waits for the client to leave.
                        continue;
                    }
                    Outcome::Success
                }
                Program::Shell { command, hostname } => {
                    let shell = match &mut shell {
                        Some(shell) => shell,
                        None => {
                            let started = shell.insert(Shell::new(command, hostname, self.tty));
                            let output = match &command.script {
                                Some(script) => started.run_script(script),
                                None => started.start(),
                            };
                            self.write_output(writer, &opened, output).await?;
                            started
                        }
                    };
                    // The resize stream carries one JSON object per line.
                    while let Some(end) = pending_resize.iter().position(|&byte| byte == b'\n') {
                        let line: Vec<u8> = pending_resize.drain(..=end).collect();
                        if let Some((width, height)) = parse_resize(&line) {
                            shell.resize(width, height);
                        }
                    }
                    if !pending_stdin.is_empty() {
                        let output = shell.input(&std::mem::take(&mut pending_stdin));
                        self.write_output(writer, &opened, output).await?;
                    }
                    if stdin_closed && shell.exited().is_none() {
                        let output = shell.end_of_input();
                        self.write_output(writer, &opened, output).await?;
                    }
                    match shell.exited() {
                        Some(status) => self.program.exited(status),
                        None => continue,
                    }
                }
                Program::Missing(command) => {
                    let message = format!(
                        "kube-double: {command}: executable file not found (only echo, cat, sh and bash are emulated)\n"
                    );
                    self.write(writer, &opened, "stderr", message.as_bytes())
                        .await?;
                    Outcome::ExitCode(
                        127,
                        format!("error executing command [{command}], exit code 127"),
                    )
                }
            };
            let v4 = self.version == "v4.channel.k8s.io";
            if let Some(status) = status_message(&outcome, v4) {
                self.write(writer, &opened, "error", &status).await?;
            }
            for kind in ["stdout", "stderr", "error"] {
                if let Some(stream) = opened.by_type.get(kind) {
                    writer
                        .write_all(&data_frame(*stream, FLAG_FIN, &[]))
                        .await?;
                }
            }
            writer.flush().await?;
            return Ok(());
        }
    }

    async fn write_output<W: AsyncWrite + Unpin>(
        &self,
        writer: &mut W,
        opened: &Opened,
        output: Output,
    ) -> std::io::Result<()> {
        if !output.stdout.is_empty() {
            self.write(writer, opened, "stdout", &output.stdout).await?;
        }
        if !output.stderr.is_empty() {
            self.write(writer, opened, "stderr", &output.stderr).await?;
        }
        Ok(())
    }

    async fn write<W: AsyncWrite + Unpin>(
        &self,
        writer: &mut W,
        opened: &Opened,
        kind: &str,
        data: &[u8],
    ) -> std::io::Result<()> {
        if let Some(stream) = opened.by_type.get(kind) {
            writer.write_all(&data_frame(*stream, 0, data)).await?;
            writer.flush().await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_blocks_round_trip_through_both_zlib_contexts() {
        let mut client = Zlib::new().unwrap();
        let mut server = Zlib::new().unwrap();
        for kind in ["error", "stdout", "stderr"] {
            let block = header_block(&[("streamType", kind)]);
            let compressed = client.compress(&block).unwrap();
            let headers = parse_header_block(&server.decompress(&compressed).unwrap()).unwrap();
            assert_eq!(headers["streamtype"], kind);
        }
    }

    #[test]
    fn the_dictionary_is_spdy3s() {
        let dictionary = DICTIONARY_PARTS.concat();
        assert_eq!(dictionary.len(), 1423);
        let mut deflate = Compress::new(Compression::default(), true);
        assert_eq!(deflate.set_dictionary(&dictionary).unwrap(), 3_821_447_106);
    }
}
