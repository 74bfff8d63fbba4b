//! Exec and attach session recording: the cluster's stdout and stderr frames
//! of a WebSocket (`*.channel.k8s.io`) session, written as an asciicast v2
//! file with timing, per the `recording` policy of the cluster. The proxy
//! records; the audit trail names each recording and serves it back.
//!
//! `required` refuses a session whose recording cannot be set up; what the
//! user types (stdin) is not recorded.

use std::path::{Path, PathBuf};
use std::time::Instant;

use globset::{Glob, GlobMatcher};
use serde::Deserialize;
use tokio::fs::File;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};

/// Whether sessions on a cluster are recorded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RecordMode {
    #[default]
    Off,
    /// Record when possible; sessions go on if the recording cannot be written.
    BestEffort,
    /// Refuse sessions that cannot be recorded.
    Required,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RecordingRule {
    /// Cluster name globs.
    pub clusters: Vec<String>,
    pub mode: RecordMode,
}

/// `recording:` in the configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RecordingConfig {
    /// Where asciicast files are written.
    pub directory: Option<PathBuf>,
    /// First matching rule wins; clusters matching none are not recorded.
    #[serde(default)]
    pub rules: Vec<RecordingRule>,
}

/// What is wrong with `recording:`, naming the key.
#[derive(Debug, thiserror::Error)]
pub enum RecordingConfigError {
    #[error("recording.rules[{index}].clusters: {error}")]
    Clusters { index: usize, error: globset::Error },
    #[error("recording.directory: required when a rule records sessions")]
    NoDirectory,
}

impl RecordingConfig {
    /// Checks that the policy compiles.
    pub fn validate(&self) -> Result<(), RecordingConfigError> {
        RecordingPolicy::new(self).map(drop)
    }
}

/// The compiled recording policy.
#[derive(Debug, Clone, Default)]
pub struct RecordingPolicy {
    directory: Option<PathBuf>,
    rules: Vec<(Vec<GlobMatcher>, RecordMode)>,
}

impl RecordingPolicy {
    pub fn new(config: &RecordingConfig) -> Result<Self, RecordingConfigError> {
        let rules = config
            .rules
            .iter()
            .enumerate()
            .map(|(index, rule)| {
                let globs = rule
                    .clusters
                    .iter()
                    .map(|pattern| {
                        Glob::new(&pattern.to_ascii_lowercase())
                            .map(|glob| glob.compile_matcher())
                            .map_err(|error| RecordingConfigError::Clusters { index, error })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok((globs, rule.mode))
            })
            .collect::<Result<Vec<_>, RecordingConfigError>>()?;
        if config.directory.is_none() && rules.iter().any(|(_, mode)| *mode != RecordMode::Off) {
            return Err(RecordingConfigError::NoDirectory);
        }
        Ok(Self {
            directory: config.directory.clone(),
            rules,
        })
    }

    pub fn mode(&self, cluster: &str) -> RecordMode {
        let cluster = cluster.to_ascii_lowercase();
        self.rules
            .iter()
            .find(|(globs, _)| globs.iter().any(|glob| glob.is_match(&cluster)))
            .map_or(RecordMode::Off, |(_, mode)| *mode)
    }

    /// Creates the recording file and writes its header.
    pub async fn start(
        &self,
        cluster: &str,
        target: &str,
        subject: &str,
    ) -> std::io::Result<Recorder> {
        let directory = self
            .directory
            .as_deref()
            .ok_or_else(|| std::io::Error::other("no recording directory is configured"))?;
        let name = format!(
            "{}-{}-{}.cast",
            chrono::Utc::now().format("%Y%m%dT%H%M%SZ"),
            cluster,
            uuid::Uuid::new_v4().simple()
        );
        let path = directory.join(&name);
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await?;
        let mut writer = BufWriter::new(file);
        let header = serde_json::json!({
            "version": 2,
            "width": 120,
            "height": 40,
            "timestamp": chrono::Utc::now().timestamp(),
            "title": format!("{subject} on {cluster}: {target}"),
            "env": {"TERM": "xterm-256color"},
        });
        writer.write_all(header.to_string().as_bytes()).await?;
        writer.write_all(b"\n").await?;
        writer.flush().await?;
        Ok(Recorder {
            name,
            writer,
            started: Instant::now(),
            frames: FrameParser::default(),
        })
    }

    /// Reads a recording by its file name (as the audit record names it).
    pub async fn read(&self, name: &str) -> std::io::Result<Vec<u8>> {
        let valid = !name.is_empty()
            && name.ends_with(".cast")
            && name
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.'))
            && !name.contains("..");
        let directory = self
            .directory
            .as_deref()
            .filter(|_| valid)
            .ok_or(std::io::ErrorKind::NotFound)?;
        tokio::fs::read(directory.join(Path::new(name))).await
    }
}

/// Writes one session's output as asciicast events.
pub struct Recorder {
    pub name: String,
    writer: BufWriter<File>,
    started: Instant,
    frames: FrameParser,
}

impl Recorder {
    /// Feeds bytes the cluster sent; complete stdout/stderr messages become events.
    async fn observe(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        for payload in self.frames.push(bytes)? {
            // channel.k8s.io: the first byte names the stream (1 stdout, 2 stderr).
            if let [1 | 2, data @ ..] = payload.as_slice() {
                self.output(data).await?;
            }
        }
        Ok(())
    }

    /// Records output of the session (the cluster's stdout or stderr) as
    /// one event, whatever protocol carried it.
    pub async fn output(&mut self, data: &[u8]) -> std::io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let event = serde_json::json!([
            self.started.elapsed().as_secs_f64(),
            "o",
            String::from_utf8_lossy(data),
        ]);
        self.writer.write_all(event.to_string().as_bytes()).await?;
        self.writer.write_all(b"\n").await?;
        // Interactive output is small: keep the recording playable while
        // the session runs.
        self.writer.flush().await
    }

    async fn finish(mut self) -> std::io::Result<()> {
        self.writer.flush().await?;
        self.writer.get_ref().sync_all().await
    }
}

/// What the SPDY side of the recorder uses, beside [`Recorder::output`].
impl Recorder {
    /// Records a terminal resize as an asciicast `r` event.
    pub async fn resize(&mut self, width: u16, height: u16) -> std::io::Result<()> {
        let event = serde_json::json!([
            self.started.elapsed().as_secs_f64(),
            "r",
            format!("{width}x{height}"),
        ]);
        self.writer.write_all(event.to_string().as_bytes()).await?;
        self.writer.write_all(b"\n").await?;
        self.writer.flush().await
    }

    /// Ends the recording, as the end of a WebSocket session does.
    pub async fn end(self) -> std::io::Result<()> {
        self.finish().await
    }
}

/// The largest message (one frame, or a fragmented message joined) the
/// recorder reads. Interactive output comes in frames of a few KiB; a cluster
/// declaring more is not followed, whatever length it claims.
const MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// Why the cluster's side of a session cannot be recorded any further.
#[derive(Debug, thiserror::Error)]
enum FrameError {
    #[error("the cluster sent a WebSocket frame of {declared} bytes (more than {MAX_MESSAGE_BYTES} cannot be recorded)")]
    FrameTooLarge { declared: u64 },
    #[error("the cluster sent a WebSocket message of more than {MAX_MESSAGE_BYTES} bytes")]
    MessageTooLarge,
    #[error("the cluster sent an invalid WebSocket frame: {0}")]
    Invalid(tungstenite::Error),
}

impl From<FrameError> for std::io::Error {
    fn from(error: FrameError) -> Self {
        std::io::Error::new(std::io::ErrorKind::InvalidData, error)
    }
}

/// Reads server-to-client WebSocket messages (continuation frames joined)
/// out of a byte stream, with frame headers parsed by tungstenite. Nothing
/// the cluster declares makes it hold more than one bounded frame: a larger
/// frame or message is an error, after which the parser holds nothing and
/// reads nothing more.
#[derive(Default)]
struct FrameParser {
    buffer: Vec<u8>,
    message: Vec<u8>,
    failed: bool,
}

impl FrameParser {
    fn push(&mut self, bytes: &[u8]) -> Result<Vec<Vec<u8>>, FrameError> {
        if self.failed {
            return Ok(Vec::new());
        }
        let parsed = self.parse(bytes);
        if parsed.is_err() {
            self.failed = true;
            self.buffer = Vec::new();
            self.message = Vec::new();
        }
        parsed
    }

    fn parse(&mut self, bytes: &[u8]) -> Result<Vec<Vec<u8>>, FrameError> {
        use tungstenite::protocol::frame::coding::OpCode;
        use tungstenite::protocol::frame::FrameHeader;

        self.buffer.extend_from_slice(bytes);
        let mut messages = Vec::new();
        let mut consumed = 0;
        loop {
            let mut cursor = std::io::Cursor::new(&self.buffer[consumed..]);
            let Some((header, declared)) =
                FrameHeader::parse(&mut cursor).map_err(FrameError::Invalid)?
            else {
                break;
            };
            let length = usize::try_from(declared)
                .ok()
                .filter(|length| *length <= MAX_MESSAGE_BYTES)
                .ok_or(FrameError::FrameTooLarge { declared })?;
            // At most 14 bytes.
            let start = consumed + cursor.position() as usize;
            if self.buffer.len() - start < length {
                break;
            }
            let payload = &mut self.buffer[start..start + length];
            if let Some(mask) = header.mask {
                for (index, byte) in payload.iter_mut().enumerate() {
                    *byte ^= mask[index % 4];
                }
            }
            consumed = start + length;
            // Continuation, text and binary frames carry data; control frames do not.
            if let OpCode::Data(_) = header.opcode {
                if self.message.len() + length > MAX_MESSAGE_BYTES {
                    return Err(FrameError::MessageTooLarge);
                }
                self.message
                    .extend_from_slice(&self.buffer[start..start + length]);
                if header.is_final {
                    messages.push(std::mem::take(&mut self.message));
                }
            }
        }
        self.buffer.drain(..consumed);
        Ok(messages)
    }
}

/// Copies the cluster's bytes to the client, recording them on the way.
pub async fn copy_recorded<R, W>(
    mut from_cluster: R,
    mut to_client: W,
    mut recorder: Recorder,
) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buffer = vec![0u8; 16 * 1024];
    let mut recording_ok = true;
    loop {
        let read = from_cluster.read(&mut buffer).await?;
        if read == 0 {
            break;
        }
        // Recorded before it is delivered: what the user saw is in the file.
        if recording_ok {
            if let Err(error) = recorder.observe(&buffer[..read]).await {
                tracing::warn!(recording = %recorder.name, %error, "session recording stopped");
                recording_ok = false;
            }
        }
        to_client.write_all(&buffer[..read]).await?;
    }
    to_client.shutdown().await.ok();
    recorder.finish().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(payload: &[u8], fin: bool, opcode: u8) -> Vec<u8> {
        let mut frame = vec![(if fin { 0x80 } else { 0 }) | opcode];
        if payload.len() < 126 {
            frame.push(payload.len() as u8);
        } else {
            frame.push(126);
            frame.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        frame.extend_from_slice(payload);
        frame
    }

    #[test]
    fn frames_split_anywhere_are_reassembled() {
        let mut stream = frame(b"\x01hello ", false, 2);
        stream.extend(frame(b"world", true, 0));
        stream.extend(frame(&[b'x'; 300], true, 2));
        stream.extend(frame(b"", true, 9));
        let mut parser = FrameParser::default();
        let mut messages = Vec::new();
        for chunk in stream.chunks(7) {
            messages.extend(parser.push(chunk).unwrap());
        }
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[0], b"\x01hello world");
        assert_eq!(messages[1].len(), 300);
        assert!(parser.buffer.is_empty() && parser.message.is_empty());
    }

    #[test]
    fn masked_frames_are_unmasked() {
        let mask = [0x11, 0x22, 0x33, 0x44];
        let mut stream = vec![0x82, 0x80 | 6];
        stream.extend_from_slice(&mask);
        stream.extend(
            b"\x01hello"
                .iter()
                .enumerate()
                .map(|(index, byte)| byte ^ mask[index % 4]),
        );
        let mut parser = FrameParser::default();
        assert_eq!(parser.push(&stream).unwrap(), vec![b"\x01hello".to_vec()]);
    }

    /// A binary frame header declaring `length` bytes, with the 64-bit length form.
    fn hostile_header(length: u64) -> Vec<u8> {
        let mut header = vec![0x82, 127];
        header.extend_from_slice(&length.to_be_bytes());
        header
    }

    #[test]
    fn hostile_frame_lengths_neither_panic_nor_grow_the_buffer() {
        for declared in [
            1u64 << 63,
            u64::MAX,
            (1u64 << 32) + 5,
            MAX_MESSAGE_BYTES as u64 + 1,
        ] {
            let mut parser = FrameParser::default();
            let mut stream = hostile_header(declared);
            stream.extend_from_slice(&[b'x'; 64]);
            let error = parser.push(&stream).unwrap_err();
            assert!(
                matches!(error, FrameError::FrameTooLarge { declared: found } if found == declared),
                "{error}"
            );
            // What follows is neither parsed nor kept.
            for _ in 0..64 {
                assert!(parser.push(&[b'y'; 16 * 1024]).unwrap().is_empty());
            }
            assert_eq!(parser.buffer.capacity(), 0, "{declared}");
            assert_eq!(parser.message.capacity(), 0, "{declared}");
        }
    }

    #[test]
    fn frames_up_to_the_bound_are_read() {
        let payload = vec![1u8; MAX_MESSAGE_BYTES];
        let mut stream = hostile_header(payload.len() as u64);
        stream.extend_from_slice(&payload);
        let mut parser = FrameParser::default();
        let mut messages = Vec::new();
        for chunk in stream.chunks(16 * 1024) {
            messages.extend(parser.push(chunk).unwrap());
        }
        assert_eq!(messages, vec![payload]);
    }

    #[test]
    fn a_fragmented_message_is_bounded_too() {
        let mut parser = FrameParser::default();
        let fragment = vec![2u8; 64 * 1024];
        let mut refused = false;
        for _ in 0..=(MAX_MESSAGE_BYTES / fragment.len()) {
            let mut stream = vec![0x00, 127];
            stream.extend_from_slice(&(fragment.len() as u64).to_be_bytes());
            stream.extend_from_slice(&fragment);
            match parser.push(&stream) {
                Ok(messages) => assert!(messages.is_empty()),
                Err(error) => {
                    assert!(matches!(error, FrameError::MessageTooLarge), "{error}");
                    refused = true;
                    break;
                }
            }
            assert!(parser.message.len() <= MAX_MESSAGE_BYTES);
        }
        assert!(refused, "an endless message is refused");
        assert_eq!(parser.message.capacity(), 0);
    }

    #[test]
    fn reserved_opcodes_stop_the_parser() {
        let mut parser = FrameParser::default();
        assert!(matches!(
            parser.push(&[0x83, 0x00]),
            Err(FrameError::Invalid(_))
        ));
    }

    #[test]
    fn the_first_matching_rule_decides() {
        let policy = RecordingPolicy::new(&RecordingConfig {
            directory: Some("/tmp".into()),
            rules: vec![
                RecordingRule {
                    clusters: vec!["prod-*".into()],
                    mode: RecordMode::Required,
                },
                RecordingRule {
                    clusters: vec!["*".into()],
                    mode: RecordMode::BestEffort,
                },
            ],
        })
        .unwrap();
        assert_eq!(policy.mode("PROD-eu"), RecordMode::Required);
        assert_eq!(policy.mode("dev"), RecordMode::BestEffort);
        assert!(RecordingPolicy::new(&RecordingConfig {
            directory: None,
            rules: vec![RecordingRule {
                clusters: vec!["*".into()],
                mode: RecordMode::Required
            }],
        })
        .is_err());
    }
}
