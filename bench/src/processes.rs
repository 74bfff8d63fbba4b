//! The processes a benchmark runs against: the release builds of kubeportal
//! and kube-double, `kubectl proxy`, nginx, HAProxy, and the system tools they
//! need; each proxy optionally under a [`Wrapper`] (valgrind). Every child is
//! stopped (SIGTERM, then SIGKILL) when its handle is dropped.

use std::ffi::OsString;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// How long a child may take to print its address or become ready.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a child under a [`Wrapper`] (valgrind, some fifty times slower)
/// may take to become ready.
const WRAPPED_START_TIMEOUT: Duration = Duration::from_secs(180);

/// A program that runs a child under it, e.g. `valgrind --tool=callgrind …`;
/// the child's pid is the wrapped program's (valgrind does not fork).
#[derive(Debug, Clone)]
pub struct Wrapper {
    pub program: PathBuf,
    pub args: Vec<OsString>,
}

/// A command for `program`, under `wrapper` if given.
fn command(program: &Path, wrapper: Option<&Wrapper>) -> Command {
    match wrapper {
        None => Command::new(program),
        Some(wrapper) => {
            let mut command = Command::new(&wrapper.program);
            command.args(&wrapper.args).arg(program);
            command
        }
    }
}

/// How long a child started under `wrapper` may take to become ready.
fn start_timeout(wrapper: Option<&Wrapper>) -> Duration {
    if wrapper.is_some() {
        WRAPPED_START_TIMEOUT
    } else {
        START_TIMEOUT
    }
}

/// The workspace root (this crate's parent directory).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bench/ has a parent directory")
        .to_owned()
}

/// The release binaries of the product and the test double.
pub struct Binaries {
    pub kubeportal: PathBuf,
    pub kube_double: PathBuf,
    /// The bare hyper proxy (`src/bin/hyper-proxy.rs`), measured beside
    /// kubeportal when it is there.
    pub hyper_proxy: PathBuf,
}

impl Binaries {
    /// The release binaries in the directory this benchmark's own executable
    /// lives in (`target/release`), built first (a no-op when they are
    /// fresh) if `build`. kubeportal and kube-double are required; the bare
    /// hyper proxy's column says "not measured" without it.
    pub fn locate(build: bool) -> Result<Binaries> {
        let directory = std::env::current_exe()
            .context("locating the benchmark executable")?
            .parent()
            .context("the benchmark executable has no directory")?
            .to_owned();
        if build {
            Self::build()?;
        }
        let binaries = Binaries {
            kubeportal: directory.join("kubeportal"),
            kube_double: directory.join("kube-double"),
            hyper_proxy: directory.join("hyper-proxy"),
        };
        for binary in [&binaries.kubeportal, &binaries.kube_double] {
            if !binary.exists() {
                bail!(
                    "{} is missing: cargo build --release -p kubeportal-server -p kube-double",
                    binary.display()
                );
            }
        }
        Ok(binaries)
    }

    fn build() -> Result<()> {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        eprintln!("building release binaries of kubeportal, kube-double and the bare hyper proxy…");
        let status = std::process::Command::new(&cargo)
            .current_dir(workspace_root())
            .args([
                "build",
                "--release",
                "--quiet",
                "-p",
                "kubeportal-server",
                "-p",
                "kube-double",
                // This crate too: one feature resolution for all three,
                // so nothing is built twice.
                "-p",
                "kubeportal-bench",
                "--bins",
            ])
            .status()
            .with_context(|| format!("running {cargo} build"))?;
        if !status.success() {
            bail!("cargo build --release of the benchmark's binaries failed ({status})");
        }
        Ok(())
    }
}

/// Finds an executable on `PATH`.
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|directory| directory.join(program))
        .find(|candidate| candidate.is_file())
}

/// Finds a tool, installing its Debian package when it is missing and we may
/// (root with apt-get). The error says how to install it by hand.
pub fn require_tool(program: &str, package: &str) -> Result<PathBuf> {
    if let Some(found) = which(program) {
        return Ok(found);
    }
    let hint = format!("{program} not installed: apt-get install {package}");
    if !rustix::process::geteuid().is_root() || which("apt-get").is_none() {
        bail!(hint);
    }
    eprintln!("{program} is missing: installing Debian's {package} package…");
    let install = || {
        std::process::Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends", package])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .status()
            .map(|status| status.success())
            .unwrap_or(false)
    };
    // Package lists may be missing or stale: update once, then retry.
    let installed = install()
        || (std::process::Command::new("apt-get")
            .arg("update")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
            && install());
    match (installed, which(program)) {
        (true, Some(found)) => Ok(found),
        _ => bail!("{hint} (installing it failed)"),
    }
}

/// A free loopback port (bound and released; another process could take it
/// in between, which a start-up failure would then report).
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// A running child process, stopped when dropped.
pub struct Child {
    name: String,
    child: tokio::process::Child,
    log: PathBuf,
}

impl Child {
    /// Starts `command` with stderr (and stdout, unless `capture_stdout`) in
    /// `log`.
    fn spawn(
        name: &str,
        mut command: Command,
        log: PathBuf,
        capture_stdout: bool,
    ) -> Result<Child> {
        let stderr =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let stdout = if capture_stdout {
            Stdio::piped()
        } else {
            Stdio::from(stderr.try_clone()?)
        };
        command
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .kill_on_drop(true);
        let child = command
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        Ok(Child {
            name: name.to_owned(),
            child,
            log,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("a running child has a pid")
    }

    /// The first stdout line containing `marker`, within the start timeout.
    async fn wait_for_line(&mut self, marker: &str) -> Result<String> {
        let stdout = self
            .child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("{}: stdout is not captured", self.name))?;
        let mut lines = BufReader::new(stdout).lines();
        let found = tokio::time::timeout(START_TIMEOUT, async {
            while let Some(line) = lines.next_line().await? {
                if line.contains(marker) {
                    return Ok::<_, std::io::Error>(Some(line));
                }
            }
            Ok(None)
        })
        .await;
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        match found {
            Ok(Ok(Some(line))) => Ok(line),
            Ok(Ok(None)) => Err(self.failure("exited before it was ready")),
            Ok(Err(error)) => Err(self.failure(&format!("reading its output failed: {error}"))),
            Err(_) => Err(self.failure("was not ready within 30 s")),
        }
    }

    /// Waits until `probe` succeeds, failing early if the child exits or
    /// after `timeout`.
    async fn wait_until_ready<F, Fut>(&mut self, timeout: Duration, mut probe: F) -> Result<()>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let started = Instant::now();
        loop {
            if probe().await {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(self.failure(&format!("exited ({status})")));
            }
            if started.elapsed() > timeout {
                return Err(self.failure(&format!("was not ready within {} s", timeout.as_secs())));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// An error naming the child and quoting the end of its log.
    fn failure(&self, what: &str) -> anyhow::Error {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(15).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        anyhow!(
            "{} {what}; the end of {}:\n{}",
            self.name,
            self.log.display(),
            tail.join("\n")
        )
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let Some(pid) = self.child.id() else { return };
        // SIGTERM first, so nginx's master takes its workers down with it.
        if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.start_kill();
    }
}

/// A kube-double process with its CA written to a file.
pub struct DoubleProcess {
    pub url: String,
    pub ca_file: PathBuf,
    pub token: String,
    /// Stops the double when dropped.
    child: Child,
}

impl DoubleProcess {
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// Whether it serves HTTPS (else plain HTTP).
    pub fn is_tls(&self) -> bool {
        self.url.starts_with("https://")
    }

    /// `host:port`, without the scheme.
    pub fn address(&self) -> &str {
        self.url
            .split_once("://")
            .map_or(self.url.as_str(), |(_, address)| address)
    }

    /// Starts the double (HTTPS) with extra arguments (e.g. `--generated-log`).
    pub async fn start(
        binaries: &Binaries,
        directory: &Path,
        extra: &[String],
    ) -> Result<DoubleProcess> {
        Self::start_named(binaries, directory, "kube-double", "double-ca.pem", extra).await
    }

    /// Starts a second double serving plain HTTP (`--no-tls`; it still
    /// requires the bearer token).
    pub async fn start_plain(binaries: &Binaries, directory: &Path) -> Result<DoubleProcess> {
        Self::start_named(
            binaries,
            directory,
            "kube-double-plain",
            "double-plain-ca.pem",
            &["--no-tls".to_owned()],
        )
        .await
    }

    async fn start_named(
        binaries: &Binaries,
        directory: &Path,
        name: &str,
        ca_file: &str,
        extra: &[String],
    ) -> Result<DoubleProcess> {
        let ca_file = directory.join(ca_file);
        let token = "double-token".to_owned();
        let mut command = Command::new(&binaries.kube_double);
        command
            .args(["--listen", "127.0.0.1:0", "--token", &token, "--ca-out"])
            .arg(&ca_file)
            .args(extra);
        let mut child = Child::spawn(name, command, directory.join(format!("{name}.log")), true)?;
        let url = child.wait_for_line("://").await?.trim().to_owned();
        Ok(DoubleProcess {
            url,
            ca_file,
            token,
            child,
        })
    }
}

/// A kubeportal process serving plain HTTP on loopback.
pub struct PortalProcess {
    pub url: String,
    pub child: Child,
}

impl PortalProcess {
    /// The first error kubeportal logged, without colours, if any.
    pub fn first_logged_error(&self) -> Option<String> {
        let log = std::fs::read_to_string(&self.child.log).ok()?;
        log.lines()
            .map(strip_ansi)
            .find(|line| line.contains(" ERROR "))
            .map(|line| line.chars().take(240).collect())
    }

    /// Starts `kubeportal --config FILE` with `config` (JSON, which is YAML)
    /// and its SQLite database in `directory`.
    pub async fn start(
        binaries: &Binaries,
        directory: &Path,
        name: &str,
        config: &serde_json::Value,
    ) -> Result<PortalProcess> {
        Self::start_wrapped(binaries, directory, name, config, None).await
    }

    /// [`PortalProcess::start`], under `wrapper` if given.
    pub async fn start_wrapped(
        binaries: &Binaries,
        directory: &Path,
        name: &str,
        config: &serde_json::Value,
        wrapper: Option<&Wrapper>,
    ) -> Result<PortalProcess> {
        let port = free_port()?;
        let config_file = directory.join(format!("{name}.yaml"));
        std::fs::write(&config_file, serde_json::to_vec_pretty(config)?)?;
        let mut command = command(&binaries.kubeportal, wrapper);
        command
            .arg("--config")
            .arg(&config_file)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env(
                "DATABASE_URL",
                format!(
                    "sqlite://{}",
                    directory.join(format!("{name}.db")).display()
                ),
            )
            // Measure the default log level, whatever the caller's environment says.
            .env_remove("RUST_LOG")
            .env_remove("KUBEPORTAL_CONFIG");
        let mut child = Child::spawn(
            "kubeportal",
            command,
            directory.join(format!("{name}.log")),
            false,
        )?;
        let url = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let ready = format!("{url}/readyz");
        child
            .wait_until_ready(start_timeout(wrapper), || {
                let request = client.get(&ready).send();
                async move {
                    request
                        .await
                        .is_ok_and(|response| response.status().is_success())
                }
            })
            .await?;
        Ok(PortalProcess { url, child })
    }
}

/// `kubectl proxy` in front of a double (plain HTTP on loopback).
pub struct KubectlProxy {
    pub url: String,
    child: Child,
}

impl KubectlProxy {
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// `name` tells its files apart from another kubectl proxy's.
    pub async fn start(
        double: &DoubleProcess,
        directory: &Path,
        name: &str,
    ) -> Result<KubectlProxy> {
        let kubectl = which("kubectl").ok_or_else(|| {
            anyhow!("kubectl not installed: install kubectl (e.g. from pkgs.k8s.io) to measure kubectl proxy")
        })?;
        let kubeconfig = directory.join(format!("{name}.kubeconfig.yaml"));
        // A plain-HTTP server takes no certificate authority.
        let authority = if double.is_tls() {
            format!("\n    certificate-authority: {}", double.ca_file.display())
        } else {
            String::new()
        };
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: double\n  cluster:\n    server: {server}{authority}\nusers:\n- name: double\n  user:\n    token: {token}\ncontexts:\n- name: double\n  context: {{cluster: double, user: double}}\ncurrent-context: double\n",
                server = double.url,
                token = double.token,
            ),
        )?;
        let mut command = Command::new(kubectl);
        command
            .arg("proxy")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["--address", "127.0.0.1", "--port", "0"]);
        let mut child = Child::spawn(
            "kubectl proxy",
            command,
            directory.join(format!("{name}.log")),
            true,
        )?;
        let line = child.wait_for_line("Starting to serve on").await?;
        let address: SocketAddr = line
            .rsplit(' ')
            .next()
            .and_then(|address| address.trim().parse().ok())
            .ok_or_else(|| anyhow!("kubectl proxy printed no address: {line:?}"))?;
        Ok(KubectlProxy {
            url: format!("http://{address}"),
            child,
        })
    }
}

const NGINX_TEMPLATE: &str = include_str!("../nginx.conf.tmpl");
const HAPROXY_TEMPLATE: &str = include_str!("../haproxy.cfg.tmpl");

/// What a template's `{{tls}}`, `{{plain}}` and `{{scheme}}` become for a
/// TLS or a plain-HTTP upstream: the lines for the other kind are commented
/// out.
fn upstream_switches(tls: bool) -> [(&'static str, &'static str); 3] {
    if tls {
        [
            ("tls", ""),
            ("plain", "# (TLS upstream) "),
            ("scheme", "https"),
        ]
    } else {
        [
            ("tls", "# (plain upstream) "),
            ("plain", ""),
            ("scheme", "http"),
        ]
    }
}

/// A reverse proxy in front of a double: nginx or HAProxy, from their
/// templates, or the bare hyper proxy, serving plain HTTP on loopback.
pub struct PeerProxy {
    pub url: String,
    child: Child,
}

impl PeerProxy {
    /// The main process's pid ([`cpu_time`] adds nginx's workers).
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// Debian's nginx from `bench/nginx.conf.tmpl`. Under `wrapper`
    /// (callgrind) it runs as one process (`master_process off`, one worker).
    pub async fn nginx(
        nginx: &Path,
        double: &DoubleProcess,
        directory: &Path,
        name: &str,
        wrapper: Option<&Wrapper>,
    ) -> Result<PeerProxy> {
        let port = free_port()?;
        let prefix = directory.join(name);
        std::fs::create_dir_all(&prefix)?;
        let (master_process, worker_processes) = if wrapper.is_some() {
            ("off", "1")
        } else {
            ("on", "auto")
        };
        let mut values = vec![
            ("prefix", prefix.display().to_string()),
            ("listen", format!("127.0.0.1:{port}")),
            ("upstream", double.address().to_owned()),
            ("token", double.token.clone()),
            ("ca_file", double.ca_file.display().to_string()),
            ("master_process", master_process.to_owned()),
            ("worker_processes", worker_processes.to_owned()),
        ];
        values.extend(
            upstream_switches(double.is_tls()).map(|(name, value)| (name, value.to_owned())),
        );
        let config_file = prefix.join("nginx.conf");
        std::fs::write(&config_file, render(NGINX_TEMPLATE, &values)?)?;
        let mut command = command(nginx, wrapper);
        command
            .arg("-p")
            .arg(&prefix)
            .arg("-c")
            .arg(&config_file)
            .arg("-e")
            .arg(prefix.join("error.log"));
        Self::start("nginx", command, directory, name, port, wrapper).await
    }

    /// Debian's HAProxy from `bench/haproxy.cfg.tmpl`, in the foreground
    /// (`-db`); under `wrapper` (callgrind) with one thread.
    pub async fn haproxy(
        haproxy: &Path,
        double: &DoubleProcess,
        directory: &Path,
        name: &str,
        wrapper: Option<&Wrapper>,
    ) -> Result<PeerProxy> {
        let port = free_port()?;
        // HAProxy's default is a thread per available CPU; said explicitly.
        let threads = if wrapper.is_some() {
            1
        } else {
            std::thread::available_parallelism().map_or(1, |cores| cores.get())
        };
        let mut values = vec![
            ("listen", format!("127.0.0.1:{port}")),
            ("upstream", double.address().to_owned()),
            ("token", double.token.clone()),
            ("ca_file", double.ca_file.display().to_string()),
            ("threads", threads.to_string()),
        ];
        values.extend(
            upstream_switches(double.is_tls()).map(|(name, value)| (name, value.to_owned())),
        );
        let config_file = directory.join(format!("{name}.cfg"));
        std::fs::write(&config_file, render(HAPROXY_TEMPLATE, &values)?)?;
        let mut command = command(haproxy, wrapper);
        command.arg("-db").arg("-f").arg(&config_file);
        Self::start("haproxy", command, directory, name, port, wrapper).await
    }

    /// The bare hyper proxy (`src/bin/hyper-proxy.rs`) in front of `double`.
    pub async fn bare_hyper(
        hyper_proxy: &Path,
        double: &DoubleProcess,
        directory: &Path,
        name: &str,
        wrapper: Option<&Wrapper>,
    ) -> Result<PeerProxy> {
        let port = free_port()?;
        let mut command = command(hyper_proxy, wrapper);
        command
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--upstream", &double.url])
            .args(["--token", &double.token]);
        if double.is_tls() {
            command.arg("--ca").arg(&double.ca_file);
        }
        Self::start("hyper-proxy", command, directory, name, port, wrapper).await
    }

    /// Runs `command` (logging to `directory/name.log`) and waits until the
    /// proxy answers `/version` from the double on `port`.
    async fn start(
        program: &str,
        command: Command,
        directory: &Path,
        name: &str,
        port: u16,
        wrapper: Option<&Wrapper>,
    ) -> Result<PeerProxy> {
        let mut child = Child::spawn(
            program,
            command,
            directory.join(format!("{name}.log")),
            false,
        )?;
        let url = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let probe = format!("{url}/version");
        child
            .wait_until_ready(start_timeout(wrapper), || {
                let request = client.get(&probe).send();
                async move {
                    request
                        .await
                        .is_ok_and(|response| response.status().is_success())
                }
            })
            .await?;
        Ok(PeerProxy { url, child })
    }
}

/// [`render_template`] with owned values.
fn render(template: &str, values: &[(&str, String)]) -> Result<String> {
    let values: Vec<(&str, &str)> = values
        .iter()
        .map(|(name, value)| (*name, value.as_str()))
        .collect();
    render_template(template, &values)
}

/// A log line without terminal colour sequences (`ESC [ ... m`).
fn strip_ansi(line: &str) -> String {
    let mut plain = String::with_capacity(line.len());
    let mut characters = line.chars();
    while let Some(character) = characters.next() {
        if character == '\u{1b}' {
            for inner in characters.by_ref() {
                if inner.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            plain.push(character);
        }
    }
    plain
}

/// Replaces every `{{name}}` in `template`; every placeholder must be given.
pub fn render_template(template: &str, values: &[(&str, &str)]) -> Result<String> {
    let mut text = template.to_owned();
    for (name, value) in values {
        text = text.replace(&format!("{{{{{name}}}}}"), value);
    }
    if let Some(start) = text.find("{{") {
        let rest = &text[start..];
        let end = rest.find("}}").map_or(rest.len(), |end| end + 2);
        bail!("template placeholder {} has no value", &rest[..end]);
    }
    Ok(text)
}

/// Raises the soft open-file limit to the hard limit (children inherit it);
/// returns the new soft limit.
pub fn raise_open_file_limit() -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        limit.current = limit.maximum;
        let _ = setrlimit(Resource::Nofile, limit);
    }
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

/// CPU time (user and system) used so far by a process and its direct
/// children (nginx's workers).
pub fn cpu_time(pid: u32) -> Result<Duration> {
    let ticks_per_second = rustix::param::clock_ticks_per_second();
    let mut ticks = 0;
    let mut found = false;
    for entry in std::fs::read_dir("/proc")?.flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some(process) = parse_stat(&stat) else {
            continue;
        };
        if process.pid == pid || process.parent == pid {
            found |= process.pid == pid;
            ticks += process.cpu_ticks;
        }
    }
    if !found {
        bail!("process {pid} is gone");
    }
    Ok(Duration::from_secs_f64(
        ticks as f64 / ticks_per_second as f64,
    ))
}

struct ProcessStat {
    pid: u32,
    parent: u32,
    cpu_ticks: u64,
}

/// The fields of `/proc/PID/stat` we need (the command may contain spaces and
/// parentheses, so fields are counted after its last `)`).
fn parse_stat(stat: &str) -> Option<ProcessStat> {
    let (head, rest) = stat.rsplit_once(')')?;
    let pid = head.split_whitespace().next()?.parse().ok()?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state); ppid is field 4, utime 14, stime 15.
    let number = |field: usize| fields.get(field - 3)?.parse::<u64>().ok();
    Some(ProcessStat {
        pid,
        parent: u32::try_from(number(4)?).ok()?,
        cpu_ticks: number(14)? + number(15)?,
    })
}

/// A line of `/proc/PID/status` in KiB (`VmRSS`, `VmHWM`).
pub fn status_kib(pid: u32, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    parse_status_kib(&status, field).ok_or_else(|| anyhow!("no {field} in /proc/{pid}/status"))
}

fn parse_status_kib(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let value = line.strip_prefix(field)?.strip_prefix(':')?;
        value.trim().strip_suffix("kB")?.trim().parse().ok()
    })
}

/// A temporary working directory for configurations and logs, removed when
/// the returned guard drops unless `keep` (for reading the logs afterwards).
pub fn working_directory(
    prefix: &str,
    keep: bool,
) -> anyhow::Result<(std::path::PathBuf, Option<tempfile::TempDir>)> {
    use anyhow::Context;
    let directory = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .context("creating a temporary directory")?;
    let working = if keep {
        (directory.keep(), None)
    } else {
        (directory.path().to_owned(), Some(directory))
    };
    eprintln!("working in {}", working.0.display());
    Ok(working)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_need_every_value() {
        assert_eq!(
            render_template("listen {{listen}}; # {{listen}}", &[("listen", "1")]).unwrap(),
            "listen 1; # 1"
        );
        let error = render_template("a {{b}} c", &[]).unwrap_err().to_string();
        assert!(error.contains("{{b}}"), "{error}");
    }

    #[test]
    fn the_nginx_template_has_no_unknown_placeholders() {
        for tls in [true, false] {
            let mut values = vec![
                ("prefix", "/tmp/x"),
                ("listen", "127.0.0.1:1"),
                ("upstream", "127.0.0.1:2"),
                ("token", "t"),
                ("ca_file", "/tmp/ca.pem"),
                ("master_process", "on"),
                ("worker_processes", "auto"),
            ];
            values.extend(upstream_switches(tls));
            let config = render_template(NGINX_TEMPLATE, &values).unwrap();
            let active = |directive: &str| {
                config
                    .lines()
                    .any(|line| line.trim_start().starts_with(directive))
            };
            assert!(config.contains("Bearer t"));
            assert!(active("proxy_buffering off;"));
            if tls {
                assert!(active("proxy_pass https://kube_double;"));
                assert!(active("proxy_ssl_verify on;"));
            } else {
                assert!(active("proxy_pass http://kube_double;"));
                assert!(!active("proxy_ssl_verify"), "{config}");
            }
        }
    }

    #[test]
    fn the_haproxy_template_has_no_unknown_placeholders() {
        for tls in [true, false] {
            let mut values = vec![
                ("listen", "127.0.0.1:1"),
                ("upstream", "127.0.0.1:2"),
                ("token", "t"),
                ("ca_file", "/tmp/ca.pem"),
                ("threads", "2"),
            ];
            values.extend(upstream_switches(tls));
            let config = render_template(HAPROXY_TEMPLATE, &values).unwrap();
            let servers: Vec<&str> = config
                .lines()
                .map(str::trim_start)
                .filter(|line| line.starts_with("server "))
                .collect();
            assert_eq!(servers.len(), 1, "{config}");
            assert_eq!(
                servers[0].contains("ssl verify required ca-file /tmp/ca.pem"),
                tls
            );
            assert_eq!(servers[0].contains("alpn h2,http/1.1"), tls);
            assert!(config.contains(r#"set-header Authorization "Bearer t""#));
            assert!(config.contains("http-reuse always"));
        }
    }

    #[test]
    fn colours_are_stripped_from_log_lines() {
        let line = "\u{1b}[2m2026-11-23T11:02:14Z\u{1b}[0m \u{1b}[31mERROR\u{1b}[0m accept error";
        assert_eq!(strip_ansi(line), "2026-11-23T11:02:14Z ERROR accept error");
    }

    #[test]
    fn proc_stat_fields() {
        let stat = "4242 (nginx: worker (x)) S 4240 4240 4240 0 -1 4194624 200 0 0 0 \
                    150 30 0 0 20 0 1 0 1000 100000 500";
        let process = parse_stat(stat).unwrap();
        assert_eq!(
            (process.pid, process.parent, process.cpu_ticks),
            (4242, 4240, 180)
        );
        assert!(parse_stat("garbage").is_none());
    }

    #[test]
    fn proc_status_fields() {
        let status = "Name:\tkubeportal\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\n";
        assert_eq!(parse_status_kib(status, "VmRSS"), Some(10240));
        assert_eq!(parse_status_kib(status, "VmHWM"), Some(20480));
        assert_eq!(parse_status_kib(status, "VmSwap"), None);
    }
}
