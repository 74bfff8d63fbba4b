//! Exec and attach over WebSocket, with the Kubernetes channel protocols
//! `v5.channel.k8s.io`, `v4.channel.k8s.io` and `channel.k8s.io`: every binary
//! message starts with a channel byte (0 stdin, 1 stdout, 2 stderr, 3 status,
//! 4 resize; in v5, 255 closes the stream named by the next byte).
//!
//! No process runs. `echo ARGS` writes its arguments joined by spaces and a newline
//! on stdout; `cat` copies stdin to stdout until stdin closes; `sh` or `bash`
//! (also as `/bin/sh`, `/bin/bash`) run the pretend shell of [`crate::shell`],
//! which reads commands from stdin (with a tty: prompt, echo, line editing, and
//! the size from the resize channel for `stty size`); any other command
//! writes a message on stderr and exits 127. Attach behaves like `cat`. Then the
//! status goes on channel 3 (v4/v5: a `Status` object; `channel.k8s.io`: an error
//! message, only on failure) and the socket closes normally.
//!
//! Over SPDY/3.1 (`X-Stream-Protocol-Version` `v4.channel.k8s.io` down to
//! `channel.k8s.io`) the same programs run on SPDY streams: see [`crate::spdy`].

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Request};
use axum::http::header;
use axum::response::Response;
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::auth::BEARER_SUBPROTOCOL_PREFIX;
use crate::handlers::QueryParams;
use crate::shell::{Output, Shell, ShellCommand};
use crate::status::ApiError;
use crate::Shared;

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const STATUS: u8 = 3;
const RESIZE: u8 = 4;
const CLOSE: u8 = 255;

/// How long to wait for the client's close frame after sending ours.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// The channel protocol a session speaks, best first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChannelProtocol {
    V5,
    V4,
    V1,
}

impl ChannelProtocol {
    const SUPPORTED: [(&'static str, ChannelProtocol); 3] = [
        ("v5.channel.k8s.io", ChannelProtocol::V5),
        ("v4.channel.k8s.io", ChannelProtocol::V4),
        ("channel.k8s.io", ChannelProtocol::V1),
    ];
}

/// The pretend program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Program {
    Echo(Vec<String>),
    Cat,
    /// `sh`, `bash`: the pretend shell, in the pod named by `hostname`.
    Shell {
        command: ShellCommand,
        hostname: String,
    },
    Missing(String),
}

impl Program {
    fn from_command(command: &[&str], pod_name: &str) -> Program {
        match command {
            ["echo", arguments @ ..] => {
                Program::Echo(arguments.iter().map(|a| (*a).to_owned()).collect())
            }
            ["cat"] => Program::Cat,
            _ => match ShellCommand::parse(command) {
                Some(shell) => Program::Shell {
                    command: shell,
                    hostname: pod_name.to_owned(),
                },
                None => Program::Missing(command.join(" ")),
            },
        }
    }

    /// The outcome of a program that exited with `status`.
    pub(crate) fn exited(&self, status: u8) -> Outcome {
        if status == 0 {
            return Outcome::Success;
        }
        let command = match self {
            Program::Shell { command, .. } => match &command.script {
                Some(script) => format!("{} -c {script}", command.name),
                None => command.name.clone(),
            },
            Program::Echo(_) => "echo".into(),
            Program::Cat => "cat".into(),
            Program::Missing(command) => command.clone(),
        };
        Outcome::ExitCode(
            status,
            format!("error executing command [{command}], exit code {status}"),
        )
    }
}

/// The resize channel's message: `{"Width": W, "Height": H}`.
pub(crate) fn parse_resize(data: &[u8]) -> Option<(u16, u16)> {
    let size: Value = serde_json::from_slice(data).ok()?;
    let width = u16::try_from(size["Width"].as_u64()?).ok()?;
    let height = u16::try_from(size["Height"].as_u64()?).ok()?;
    Some((width, height))
}

/// The name of the container a request targets: the one asked for, which must
/// exist, or the only one. A pod without containers (a minimal seeded object)
/// accepts any name.
pub(crate) fn resolve_container(pod: &Value, requested: Option<&str>) -> Result<String, ApiError> {
    let pod_name = pod["metadata"]["name"].as_str().unwrap_or_default();
    let names: Vec<&str> = ["containers", "initContainers", "ephemeralContainers"]
        .iter()
        .flat_map(|field| pod["spec"][field].as_array().into_iter().flatten())
        .filter_map(|container| container["name"].as_str())
        .collect();
    let requested = requested.filter(|name| !name.is_empty());
    if names.is_empty() {
        return Ok(requested.unwrap_or_default().to_owned());
    }
    match requested {
        Some(name) if names.contains(&name) => Ok(name.to_owned()),
        Some(name) => Err(ApiError::bad_request(format!(
            "container {name} is not valid for pod {pod_name}"
        ))),
        None => match pod["spec"]["containers"].as_array().map(Vec::as_slice) {
            Some([only]) => Ok(only["name"].as_str().unwrap_or_default().to_owned()),
            _ => Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {pod_name}, choose one of: [{}]",
                names.join(" ")
            ))),
        },
    }
}

/// `pods/exec` and `pods/attach`.
pub(crate) async fn serve(
    shared: &Shared,
    namespace: &str,
    pod_name: &str,
    attach: bool,
    query: &QueryParams,
    request: Request,
) -> Result<Response, ApiError> {
    let pod = shared
        .store
        .get(&shared.resources.pods(), Some(namespace), pod_name)?;
    let upgrade = request
        .headers()
        .get(header::UPGRADE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let spdy = upgrade == "spdy/3.1";
    if upgrade != "websocket" && !spdy {
        return Err(ApiError::bad_request("Upgrade request required"));
    }
    resolve_container(&pod, query.get("container"))?;
    let streams = Streams {
        stdin: query.flag("stdin"),
        stdout: query.flag("stdout"),
        stderr: query.flag("stderr") && !query.flag("tty"),
    };
    if !(streams.stdin || streams.stdout || query.flag("stderr")) {
        return Err(ApiError::bad_request(
            "you must specify at least 1 of stdin, stdout, stderr",
        ));
    }
    let program = if attach {
        Program::Cat
    } else {
        let command = query.all("command");
        if command.is_empty() {
            return Err(ApiError::bad_request(
                "you must specify at least one command for the container",
            ));
        }
        Program::from_command(&command, pod_name)
    };
    if spdy {
        return crate::spdy::serve(
            request,
            program,
            streams,
            query.flag("tty"),
            shared.shutdown.clone(),
        );
    }
    let (mut parts, _body) = request.into_parts();
    let upgrade = WebSocketUpgrade::from_request_parts(&mut parts, &())
        .await
        .map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
    let requested: Vec<String> = upgrade
        .requested_protocols()
        .filter_map(|protocol| protocol.to_str().ok())
        .filter(|protocol| !protocol.starts_with(BEARER_SUBPROTOCOL_PREFIX))
        .map(str::to_owned)
        .collect();
    let chosen = ChannelProtocol::SUPPORTED
        .iter()
        .find(|(name, _)| requested.iter().any(|protocol| protocol == name));
    let (upgrade, protocol) = match (chosen, requested.is_empty()) {
        (Some((name, protocol)), _) => (upgrade.protocols([*name]), *protocol),
        (None, true) => (upgrade, ChannelProtocol::V1),
        (None, false) => {
            return Err(ApiError::bad_request(format!(
                "none of the requested subprotocols is supported: {}; kube-double speaks {}",
                requested.join(", "),
                ChannelProtocol::SUPPORTED.map(|(name, _)| name).join(", ")
            )))
        }
    };
    let session = Session {
        protocol,
        program,
        streams,
        tty: query.flag("tty"),
        shutdown: shared.shutdown.clone(),
    };
    Ok(upgrade.on_upgrade(move |socket| session.run(socket)))
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Streams {
    pub(crate) stdin: bool,
    pub(crate) stdout: bool,
    pub(crate) stderr: bool,
}

struct Session {
    protocol: ChannelProtocol,
    program: Program,
    streams: Streams,
    tty: bool,
    shutdown: watch::Receiver<bool>,
}

/// How the pretend program ended.
pub(crate) enum Outcome {
    Success,
    ExitCode(u8, String),
}

impl Session {
    async fn run(mut self, mut socket: WebSocket) {
        let shutdown = self.shutdown.clone();
        tokio::select! {
            _ = self.converse(&mut socket) => {}
            _ = crate::server::stopped(shutdown) => {}
        }
    }

    async fn converse(&mut self, socket: &mut WebSocket) -> Result<(), axum::Error> {
        let outcome = match &self.program {
            Program::Echo(arguments) => {
                let line = format!("{}\n", arguments.join(" "));
                if self.streams.stdout {
                    send(socket, STDOUT, line.as_bytes()).await?;
                }
                Outcome::Success
            }
            Program::Cat => {
                if !self.copy_stdin_to_stdout(socket).await? {
                    return Ok(());
                }
                Outcome::Success
            }
            Program::Shell { command, hostname } => {
                let mut shell = Shell::new(command, hostname, self.tty);
                match self.run_shell(socket, &mut shell).await? {
                    Some(status) => self.program.exited(status),
                    None => return Ok(()),
                }
            }
            Program::Missing(command) => {
                if self.streams.stderr {
                    let message = format!(
                        "kube-double: {command}: executable file not found (only echo, cat, sh and bash are emulated)\n"
                    );
                    send(socket, STDERR, message.as_bytes()).await?;
                }
                Outcome::ExitCode(
                    127,
                    format!("error executing command [{command}], exit code 127"),
                )
            }
        };
        self.send_status(socket, outcome).await?;
        socket
            .send(Message::Close(Some(CloseFrame {
                code: 1000,
                reason: "".into(),
            })))
            .await?;
        let _ = tokio::time::timeout(CLOSE_GRACE, async {
            while let Some(Ok(message)) = socket.recv().await {
                if matches!(message, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
        Ok(())
    }

    /// Copies stdin to stdout until stdin closes (`true`) or the client goes away
    /// (`false`).
    async fn copy_stdin_to_stdout(&self, socket: &mut WebSocket) -> Result<bool, axum::Error> {
        if !self.streams.stdin {
            // Nothing can ever arrive: wait for the client to leave.
            while let Some(message) = socket.recv().await {
                if matches!(message?, Message::Close(_)) {
                    break;
                }
            }
            return Ok(false);
        }
        while let Some(message) = socket.recv().await {
            match message? {
                Message::Binary(data) => match data.first() {
                    Some(&STDIN) if self.streams.stdout => send(socket, STDOUT, &data[1..]).await?,
                    Some(&CLOSE)
                        if self.protocol == ChannelProtocol::V5 && data.get(1) == Some(&STDIN) =>
                    {
                        return Ok(true)
                    }
                    _ => {}
                },
                Message::Close(_) => return Ok(false),
                _ => {}
            }
        }
        Ok(false)
    }

    /// Runs the shell until it exits (`Some(status)`) or the client goes away
    /// (`None`).
    async fn run_shell(
        &self,
        socket: &mut WebSocket,
        shell: &mut Shell,
    ) -> Result<Option<u8>, axum::Error> {
        let script = match &self.program {
            Program::Shell { command, .. } => command.script.clone(),
            _ => None,
        };
        let output = match &script {
            Some(script) => shell.run_script(script),
            None => shell.start(),
        };
        self.send_output(socket, output).await?;
        while shell.exited().is_none() {
            let Some(message) = socket.recv().await else {
                return Ok(None);
            };
            match message? {
                Message::Binary(data) => match data.first() {
                    Some(&STDIN) if self.streams.stdin => {
                        let output = shell.input(&data[1..]);
                        self.send_output(socket, output).await?;
                    }
                    Some(&RESIZE) => {
                        if let Some((width, height)) = parse_resize(&data[1..]) {
                            shell.resize(width, height);
                        }
                    }
                    Some(&CLOSE)
                        if self.protocol == ChannelProtocol::V5 && data.get(1) == Some(&STDIN) =>
                    {
                        let output = shell.end_of_input();
                        self.send_output(socket, output).await?;
                    }
                    _ => {}
                },
                Message::Close(_) => return Ok(None),
                _ => {}
            }
        }
        Ok(shell.exited())
    }

    async fn send_output(&self, socket: &mut WebSocket, output: Output) -> Result<(), axum::Error> {
        if self.streams.stdout && !output.stdout.is_empty() {
            send(socket, STDOUT, &output.stdout).await?;
        }
        if self.streams.stderr && !output.stderr.is_empty() {
            send(socket, STDERR, &output.stderr).await?;
        }
        Ok(())
    }

    async fn send_status(
        &self,
        socket: &mut WebSocket,
        outcome: Outcome,
    ) -> Result<(), axum::Error> {
        match status_message(&outcome, self.protocol != ChannelProtocol::V1) {
            Some(status) => send(socket, STATUS, &status).await,
            None => Ok(()),
        }
    }
}

/// What goes on the status (error) channel: with a `Status` object (v4 and
/// later), always; before, an error message on failure only.
pub(crate) fn status_message(outcome: &Outcome, status_object: bool) -> Option<Vec<u8>> {
    let status = match (outcome, status_object) {
        (Outcome::Success, false) => return None,
        (Outcome::ExitCode(_, message), false) => message.clone().into_bytes(),
        (Outcome::Success, true) => json!({"metadata": {}, "status": "Success"})
            .to_string()
            .into_bytes(),
        (Outcome::ExitCode(code, message), true) => json!({
            "metadata": {},
            "status": "Failure",
            "message": format!("command terminated with non-zero exit code: {message}"),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        })
        .to_string()
        .into_bytes(),
    };
    Some(status)
}

async fn send(socket: &mut WebSocket, channel: u8, data: &[u8]) -> Result<(), axum::Error> {
    let mut frame = Vec::with_capacity(data.len() + 1);
    frame.push(channel);
    frame.extend_from_slice(data);
    socket.send(Message::Binary(frame.into())).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs() {
        assert_eq!(
            Program::from_command(&["echo", "hi", "there"], "p"),
            Program::Echo(vec!["hi".into(), "there".into()])
        );
        assert_eq!(Program::from_command(&["cat"], "p"), Program::Cat);
        assert_eq!(
            Program::from_command(&["/bin/sh"], "p"),
            Program::Shell {
                command: ShellCommand {
                    name: "sh".into(),
                    script: None
                },
                hostname: "p".into()
            }
        );
        assert_eq!(
            Program::from_command(&["sh", "-x", "run.sh"], "p"),
            Program::Missing("sh -x run.sh".into())
        );
        assert_eq!(
            Program::from_command(&["python3"], "p"),
            Program::Missing("python3".into())
        );
    }

    #[test]
    fn resize_messages() {
        assert_eq!(
            parse_resize(br#"{"Width":120,"Height":40}"#),
            Some((120, 40))
        );
        assert_eq!(parse_resize(br#"{"Width":-1,"Height":40}"#), None);
        assert_eq!(parse_resize(b"not json"), None);
    }

    #[test]
    fn containers_default_to_the_only_one() {
        let single = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "app"}]}});
        assert_eq!(resolve_container(&single, None).unwrap(), "app");
        assert!(resolve_container(&single, Some("other")).is_err());
        let pair = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "app"}, {"name": "proxy"}]}});
        assert!(resolve_container(&pair, None).is_err());
        assert_eq!(resolve_container(&pair, Some("proxy")).unwrap(), "proxy");
        let bare = json!({"metadata": {"name": "p"}});
        assert_eq!(resolve_container(&bare, None).unwrap(), "");
    }
}
