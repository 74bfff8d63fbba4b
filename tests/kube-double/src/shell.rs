//! A pretend shell for exec sessions: `sh`, `bash`, `/bin/sh` or `/bin/bash`,
//! so that a person typing into a browser terminal sees what they would see in
//! a container. It is a toy, not a shell: there are no variables, no quoting
//! beyond grouping words in `'…'` or `"…"`, no pipes, no redirections, no
//! globbing and no other programs.
//!
//! - Started without arguments (or with `-i`/`-l`) it reads commands from
//!   stdin; with `-c LINE` it runs that one line and exits with its status.
//! - With a tty it behaves as a terminal's line discipline would: it prints a
//!   prompt (`$ `), echoes what is typed, erases a character on backspace
//!   (DEL or BS) and the line on Ctrl-U, answers Ctrl-C with `^C` and a fresh
//!   prompt (status 130), exits on Ctrl-D at the start of a line, ignores
//!   escape sequences (arrow keys) and writes `\r\n` for every newline. Every
//!   output goes to stdout, as a tty merges stderr into it.
//! - Without a tty it neither prompts nor echoes; errors go to stderr.
//! - Built-ins: `echo WORDS…`, `exit [N]`, `hostname` (the pod's name),
//!   `stty size` (the terminal's rows and columns, as last resized; with no
//!   tty the error `stty` prints) and `true`/`false`. Any other command prints
//!   `NAME: COMMAND: command not found` and has status 127.
//! - Closing stdin ends the shell as end of input does: the status is the
//!   last command's.

/// The shells a command line may name.
const SHELLS: [&str; 6] = [
    "sh",
    "bash",
    "/bin/sh",
    "/bin/bash",
    "/usr/bin/sh",
    "/usr/bin/bash",
];

/// A command line that starts a shell: its name and what it was asked to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ShellCommand {
    /// The shell's name, without its directory (`sh`, `bash`).
    pub(crate) name: String,
    /// `-c LINE`: run this line, then exit.
    pub(crate) script: Option<String>,
}

impl ShellCommand {
    /// The shell `command` starts, when it starts one.
    pub(crate) fn parse(command: &[&str]) -> Option<ShellCommand> {
        let (program, arguments) = command.split_first()?;
        if !SHELLS.contains(program) {
            return None;
        }
        let name = program.rsplit('/').next().unwrap_or(program).to_owned();
        match arguments {
            [] | ["-i"] | ["-l"] | ["-il"] | ["-li"] => Some(ShellCommand { name, script: None }),
            ["-c", line] => Some(ShellCommand {
                name,
                script: Some((*line).to_owned()),
            }),
            _ => None,
        }
    }
}

/// What one step of the shell wrote.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Output {
    pub(crate) stdout: Vec<u8>,
    pub(crate) stderr: Vec<u8>,
}

impl Output {
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.stdout.is_empty() && self.stderr.is_empty()
    }
}

/// Where the reader is within an escape sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Escape {
    None,
    /// After ESC.
    Started,
    /// After `ESC [` or `ESC O`: parameters until a final byte.
    Sequence,
}

/// One running shell.
pub(crate) struct Shell {
    name: String,
    hostname: String,
    tty: bool,
    /// The line being typed.
    line: Vec<u8>,
    escape: Escape,
    /// Columns and rows, from the last resize.
    size: Option<(u16, u16)>,
    /// The last command's status.
    status: u8,
    exited: Option<u8>,
}

const PROMPT: &[u8] = b"$ ";

impl Shell {
    pub(crate) fn new(command: &ShellCommand, hostname: &str, tty: bool) -> Shell {
        Shell {
            name: command.name.clone(),
            hostname: hostname.to_owned(),
            tty,
            line: Vec::new(),
            escape: Escape::None,
            size: None,
            status: 0,
            exited: None,
        }
    }

    /// What an interactive shell writes when it starts: its prompt, with a tty.
    pub(crate) fn start(&self) -> Output {
        Output {
            stdout: if self.tty {
                PROMPT.to_vec()
            } else {
                Vec::new()
            },
            stderr: Vec::new(),
        }
    }

    /// `Some(status)` once the shell has exited.
    pub(crate) fn exited(&self) -> Option<u8> {
        self.exited
    }

    /// The terminal's new size (the resize channel).
    pub(crate) fn resize(&mut self, columns: u16, rows: u16) {
        self.size = Some((columns, rows));
    }

    /// Runs `-c LINE` and exits with its status.
    pub(crate) fn run_script(&mut self, script: &str) -> Output {
        let mut output = Output::default();
        self.run_line(script, &mut output);
        if self.exited.is_none() {
            self.exited = Some(self.status);
        }
        output
    }

    /// Bytes from stdin.
    pub(crate) fn input(&mut self, data: &[u8]) -> Output {
        let mut output = Output::default();
        for &byte in data {
            if self.exited.is_some() {
                break;
            }
            if self.tty {
                self.tty_byte(byte, &mut output);
            } else if byte == b'\n' {
                let line = String::from_utf8_lossy(&std::mem::take(&mut self.line)).into_owned();
                self.run_line(&line, &mut output);
            } else {
                self.line.push(byte);
            }
        }
        output
    }

    /// Stdin closed: an unfinished line runs (without a tty), then the shell
    /// exits with the last status.
    pub(crate) fn end_of_input(&mut self) -> Output {
        let mut output = Output::default();
        if self.exited.is_none() && !self.tty && !self.line.is_empty() {
            let line = String::from_utf8_lossy(&std::mem::take(&mut self.line)).into_owned();
            self.run_line(&line, &mut output);
        }
        if self.exited.is_none() {
            self.exited = Some(self.status);
        }
        output
    }

    /// One byte through the tty's line discipline.
    fn tty_byte(&mut self, byte: u8, output: &mut Output) {
        match self.escape {
            Escape::Started => {
                self.escape = if matches!(byte, b'[' | b'O') {
                    Escape::Sequence
                } else {
                    Escape::None
                };
                return;
            }
            Escape::Sequence => {
                if (0x40..=0x7e).contains(&byte) {
                    self.escape = Escape::None;
                }
                return;
            }
            Escape::None => {}
        }
        match byte {
            0x1b => self.escape = Escape::Started,
            b'\r' | b'\n' => {
                output.stdout.extend_from_slice(b"\r\n");
                let line = String::from_utf8_lossy(&std::mem::take(&mut self.line)).into_owned();
                self.run_line(&line, output);
                if self.exited.is_none() {
                    output.stdout.extend_from_slice(PROMPT);
                }
            }
            0x7f | 0x08 => {
                if self.erase_character() {
                    output.stdout.extend_from_slice(b"\x08 \x08");
                }
            }
            0x15 => {
                while self.erase_character() {
                    output.stdout.extend_from_slice(b"\x08 \x08");
                }
            }
            0x03 => {
                self.line.clear();
                self.status = 130;
                output.stdout.extend_from_slice(b"^C\r\n");
                output.stdout.extend_from_slice(PROMPT);
            }
            0x04 => {
                if self.line.is_empty() {
                    output.stdout.extend_from_slice(b"exit\r\n");
                    self.exited = Some(self.status);
                }
            }
            byte if byte < 0x20 => {}
            byte => {
                self.line.push(byte);
                output.stdout.push(byte);
            }
        }
    }

    /// Removes the last character (all of its UTF-8 bytes) of the line.
    fn erase_character(&mut self) -> bool {
        let Some(mut last) = self.line.pop() else {
            return false;
        };
        while last & 0xc0 == 0x80 {
            match self.line.pop() {
                Some(byte) => last = byte,
                None => break,
            }
        }
        true
    }

    fn run_line(&mut self, line: &str, output: &mut Output) {
        let words = match words(line) {
            Ok(words) => words,
            Err(message) => {
                self.error(output, &format!("{}: {message}\n", self.name));
                self.status = 2;
                return;
            }
        };
        let Some((command, arguments)) = words.split_first() else {
            return;
        };
        self.status = match (command.as_str(), arguments) {
            ("echo", arguments) => {
                self.write(output, &format!("{}\n", arguments.join(" ")));
                0
            }
            ("exit", []) => {
                self.exited = Some(self.status);
                self.status
            }
            ("exit", [code]) => match code.parse::<i64>() {
                Ok(code) => {
                    let status = code.rem_euclid(256) as u8;
                    self.exited = Some(status);
                    status
                }
                Err(_) => {
                    self.error(
                        output,
                        &format!("{}: exit: {code}: numeric argument required\n", self.name),
                    );
                    self.exited = Some(2);
                    2
                }
            },
            ("hostname", []) => {
                let hostname = format!("{}\n", self.hostname);
                self.write(output, &hostname);
                0
            }
            ("stty", [size]) if size == "size" => match (self.tty, self.size) {
                (true, Some((columns, rows))) => {
                    self.write(output, &format!("{rows} {columns}\n"));
                    0
                }
                (true, None) => {
                    self.write(output, "0 0\n");
                    0
                }
                (false, _) => {
                    self.error(
                        output,
                        "stty: 'standard input': Inappropriate ioctl for device\n",
                    );
                    1
                }
            },
            ("true", _) => 0,
            ("false", _) => 1,
            (command, _) => {
                self.error(
                    output,
                    &format!("{}: {command}: command not found\n", self.name),
                );
                127
            }
        };
    }

    fn write(&self, output: &mut Output, text: &str) {
        output.stdout.extend_from_slice(&self.translate(text));
    }

    /// An error: on stderr, or on the tty (stdout) with one.
    fn error(&self, output: &mut Output, text: &str) {
        let translated = self.translate(text);
        if self.tty {
            output.stdout.extend_from_slice(&translated);
        } else {
            output.stderr.extend_from_slice(&translated);
        }
    }

    /// `\n` as a tty writes it (`\r\n`, the `onlcr` output mode).
    fn translate(&self, text: &str) -> Vec<u8> {
        if self.tty {
            text.replace('\n', "\r\n").into_bytes()
        } else {
            text.as_bytes().to_vec()
        }
    }
}

/// A line's words: split on blanks, with `'…'` and `"…"` grouping (nothing is
/// expanded inside or outside quotes).
fn words(line: &str) -> Result<Vec<String>, &'static str> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut quote: Option<char> = None;
    for character in line.chars() {
        match quote {
            Some(open) if character == open => quote = None,
            Some(_) => word.get_or_insert_with(String::new).push(character),
            None if character == '\'' || character == '"' => {
                quote = Some(character);
                word.get_or_insert_with(String::new);
            }
            None if character.is_whitespace() => {
                if let Some(done) = word.take() {
                    words.push(done);
                }
            }
            None => word.get_or_insert_with(String::new).push(character),
        }
    }
    if quote.is_some() {
        return Err("unexpected end of line while looking for a matching quote");
    }
    words.extend(word);
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interactive(tty: bool) -> Shell {
        Shell::new(&ShellCommand::parse(&["/bin/sh"]).unwrap(), "api-0", tty)
    }

    fn stdout(output: Output) -> String {
        String::from_utf8(output.stdout).unwrap()
    }

    #[test]
    fn command_lines_that_start_a_shell() {
        assert_eq!(
            ShellCommand::parse(&["/bin/bash"]),
            Some(ShellCommand {
                name: "bash".into(),
                script: None
            })
        );
        assert_eq!(
            ShellCommand::parse(&["sh", "-c", "echo hi"]),
            Some(ShellCommand {
                name: "sh".into(),
                script: Some("echo hi".into())
            })
        );
        assert_eq!(ShellCommand::parse(&["sh", "-c"]), None);
        assert_eq!(ShellCommand::parse(&["zsh"]), None);
        assert_eq!(ShellCommand::parse(&["sh", "script.sh"]), None);
    }

    #[test]
    fn a_tty_prompts_echoes_and_runs_echo() {
        let mut shell = interactive(true);
        assert_eq!(stdout(shell.start()), "$ ");
        let mut seen = String::new();
        for byte in b"echo hello-from-the-browser\r" {
            seen.push_str(&stdout(shell.input(&[*byte])));
        }
        assert_eq!(
            seen,
            "echo hello-from-the-browser\r\nhello-from-the-browser\r\n$ "
        );
        assert_eq!(shell.exited(), None);
    }

    #[test]
    fn backspace_ctrl_u_and_escape_sequences_edit_the_line() {
        let mut shell = interactive(true);
        // A typo, erased; an arrow key, ignored; a multi-byte character erased whole.
        let typed = stdout(shell.input("echo hx\x7fi \x1b[Aé\x7f\r".as_bytes()));
        assert_eq!(typed, "echo hx\x08 \x08i é\x08 \x08\r\nhi\r\n$ ");
        let killed = stdout(shell.input(b"junk\x15echo ok\r"));
        assert_eq!(
            killed,
            "junk\x08 \x08\x08 \x08\x08 \x08\x08 \x08echo ok\r\nok\r\n$ "
        );
    }

    #[test]
    fn unknown_commands_ctrl_c_and_exit() {
        let mut shell = interactive(true);
        assert_eq!(
            stdout(shell.input(b"ls -l\r")),
            "ls -l\r\nsh: ls: command not found\r\n$ "
        );
        assert_eq!(stdout(shell.input(b"half\x03")), "half^C\r\n$ ");
        assert_eq!(stdout(shell.input(b"exit 3\r")), "exit 3\r\n");
        assert_eq!(shell.exited(), Some(3));
        // Nothing runs after exit.
        assert_eq!(stdout(shell.input(b"echo late\r")), "");
    }

    #[test]
    fn ctrl_d_on_an_empty_line_exits_with_the_last_status() {
        let mut shell = interactive(true);
        shell.input(b"nope\r");
        assert_eq!(stdout(shell.input(b"x\x04")), "x");
        assert_eq!(shell.exited(), None);
        shell.input(b"\x15");
        assert_eq!(stdout(shell.input(b"\x04")), "exit\r\n");
        assert_eq!(shell.exited(), Some(127));
    }

    #[test]
    fn stty_size_reports_the_last_resize() {
        let mut shell = interactive(true);
        assert_eq!(
            stdout(shell.input(b"stty size\r")),
            "stty size\r\n0 0\r\n$ "
        );
        shell.resize(132, 43);
        assert_eq!(
            stdout(shell.input(b"stty size\r")),
            "stty size\r\n43 132\r\n$ "
        );
    }

    #[test]
    fn without_a_tty_nothing_is_echoed_and_errors_go_to_stderr() {
        let mut shell = interactive(false);
        assert!(shell.start().is_empty());
        let output = shell
            .input(b"echo 'two  words' \"and more\"\nhostname\nwhoami\nstty size\necho unfinished");
        assert_eq!(
            String::from_utf8(output.stdout).unwrap(),
            "two  words and more\napi-0\n"
        );
        assert_eq!(
            String::from_utf8(output.stderr).unwrap(),
            "sh: whoami: command not found\nstty: 'standard input': Inappropriate ioctl for device\n"
        );
        let last = shell.end_of_input();
        assert_eq!(String::from_utf8(last.stdout).unwrap(), "unfinished\n");
        assert_eq!(shell.exited(), Some(0));
    }

    #[test]
    fn a_script_runs_once() {
        let command = ShellCommand::parse(&["bash", "-c", "exit 300"]).unwrap();
        let mut shell = Shell::new(&command, "api-0", false);
        assert!(shell.run_script("exit 300").is_empty());
        assert_eq!(shell.exited(), Some(44));
        let mut quoted = Shell::new(&command, "api-0", false);
        let output = quoted.run_script("echo 'open");
        assert_eq!(
            String::from_utf8(output.stderr).unwrap(),
            "bash: unexpected end of line while looking for a matching quote\n"
        );
        assert_eq!(quoted.exited(), Some(2));
    }
}
