/**
 * A terminal in a pod: xterm.js (bundled, no CDN) on the SDK's exec, which
 * asks kubeportal for a one-time ticket and opens the WebSocket with the
 * `v5.channel.k8s.io` protocol. The terminal's size follows its box (fit
 * addon) and every change is sent on the resize channel.
 */
import type { FitAddon } from "@xterm/addon-fit";
import type { Terminal } from "@xterm/xterm";
import { KubeportalError, type ExecSession, type KubeportalClient } from "@kubeportal/sdk";
import { h, replace } from "./dom.js";
import { denialReason, type Tone } from "./format.js";
import { badge, errorAlert } from "./ui.js";

export interface TerminalTarget {
  cluster: string;
  namespace: string;
  pod: string;
  container?: string;
}

/** What runs in the pod: a shell, as `kubectl exec -it POD -- /bin/sh` would. */
const DEFAULT_COMMAND = "/bin/sh";

export class TerminalPanel {
  readonly element: HTMLElement;
  private readonly title = h("h2", { class: "log-title" });
  private readonly status = h("span", { class: "log-status" });
  private readonly message = h("div", { "data-testid": "terminal-message" });
  private readonly commandInput = h("input", {
    id: "terminal-command",
    name: "command",
    value: DEFAULT_COMMAND,
    class: "input-short",
    spellcheck: "false",
    "data-testid": "terminal-command",
  });
  private readonly reconnectButton = h("button", { type: "button", class: "button", "data-testid": "terminal-connect" }, "Reconnect");
  private readonly closeButton = h("button", { type: "button", class: "button button-quiet", "data-testid": "terminal-close" }, "Close");
  private readonly screen = h("div", { class: "terminal-screen", "data-testid": "terminal", role: "group", "aria-label": "Terminal" });
  private terminal: Terminal | null = null;
  private fit: FitAddon | null = null;
  private session: ExecSession | null = null;
  private target: TerminalTarget | null = null;
  private readonly resizeObserver = new ResizeObserver(() => this.fitToBox());
  /** Bumped by every connect and close: a stale connection's events are ignored. */
  private generation = 0;

  constructor(private readonly client: KubeportalClient) {
    this.reconnectButton.addEventListener("click", () => {
      if (this.target) void this.open(this.target);
    });
    this.closeButton.addEventListener("click", () => this.close());
    this.element = h(
      "section",
      { class: "card log-panel", "data-testid": "terminal-panel", "aria-label": "Pod terminal", hidden: true },
      h(
        "header",
        { class: "log-header" },
        this.title,
        this.status,
        h("span", { class: "spacer" }),
        h(
          "div",
          { class: "panel-controls" },
          h("label", { for: "terminal-command", class: "inline-label" }, "Command"),
          this.commandInput,
          this.reconnectButton,
          this.closeButton,
        ),
      ),
      this.message,
      this.screen,
    );
    this.resizeObserver.observe(this.screen);
  }

  /** Opens a terminal in `target`, ending any other. */
  async open(target: TerminalTarget): Promise<void> {
    this.end();
    const generation = ++this.generation;
    this.target = target;
    replace(this.title, "Terminal ", h("span", { class: "muted" }, `${target.cluster} / ${target.namespace} / `), target.pod);
    replace(this.message);
    this.element.hidden = false;
    this.setStatus("Connecting…", "neutral");

    // xterm.js is loaded (from this site, bundled) the first time a terminal opens.
    const [{ Terminal }, { FitAddon }] = await Promise.all([
      import("@xterm/xterm"),
      import("@xterm/addon-fit"),
      import("@xterm/xterm/css/xterm.css"),
    ]);
    if (generation !== this.generation) return;
    const terminal = new Terminal({
      convertEol: false,
      cursorBlink: true,
      fontFamily: 'ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace',
      fontSize: 13,
      scrollback: 2000,
      theme: { background: "#0f1722", foreground: "#d6e2f0" },
    });
    const fit = new FitAddon();
    terminal.loadAddon(fit);
    this.screen.replaceChildren();
    this.screen.hidden = false;
    terminal.open(this.screen);
    this.terminal = terminal;
    this.fit = fit;
    this.fitToBox();
    this.element.scrollIntoView({ block: "nearest" });
    void this.connect(target, terminal, generation);
  }

  /** Ends the session and hides the panel. */
  close(): void {
    this.end();
    this.generation++;
    this.element.hidden = true;
  }

  private async connect(target: TerminalTarget, terminal: Terminal, generation: number): Promise<void> {
    const command = this.commandInput.value.trim().split(/\s+/).filter(Boolean);
    let session: ExecSession;
    try {
      session = await this.client.exec(
        { cluster: target.cluster, namespace: target.namespace, pod: target.pod },
        {
          command: command.length > 0 ? command : [DEFAULT_COMMAND],
          container: target.container,
          tty: true,
          onOutput: (data) => {
            if (generation === this.generation) terminal.write(data);
          },
        },
      );
    } catch (error) {
      if (generation !== this.generation) return;
      this.showFailure(error);
      return;
    }
    if (generation !== this.generation) {
      session.close();
      return;
    }
    this.session = session;
    this.setStatus("Connected", "ok");
    session.resize(terminal.cols, terminal.rows);
    terminal.onData((data) => session.write(data));
    terminal.onResize(({ cols, rows }) => session.resize(cols, rows));
    terminal.focus();
    const result = await session.closed;
    if (generation !== this.generation) return;
    this.session = null;
    const code = result.status?.exitCode;
    if (result.status?.status === "Success") this.setStatus("Exited (0)", "neutral");
    else if (code !== undefined) this.setStatus(`Exited (${code})`, "warn");
    else if (result.status) this.setStatus("Failed", "bad");
    else this.setStatus(result.closeCode === 1000 ? "Closed" : `Disconnected (${result.closeCode})`, "warn");
    // A command that exited non-zero says so in the status line; any other
    // failure (a program that could not start, say) shows the cluster's words.
    const failure = result.status?.status === "Failure" ? result.status : undefined;
    if (failure?.message && (code === undefined || failure.reason !== "NonZeroExitCode")) {
      replace(this.message, h("div", { class: "alert alert-error", role: "alert" }, failure.message));
    }
  }

  private showFailure(error: unknown): void {
    const reason = error instanceof KubeportalError && error.status === 403 ? denialReason(error.message) : undefined;
    if (error instanceof KubeportalError && error.status === 403) {
      this.setStatus("Denied", "bad");
      replace(
        this.message,
        h(
          "div",
          { class: "alert alert-error", role: "alert", "data-testid": "terminal-denied" },
          h("strong", {}, "The portal's policy does not allow you a terminal in this pod."),
          h("p", {}, reason ? h("span", { "data-testid": "terminal-denied-reason" }, reason) : "The policy gave no reason."),
        ),
      );
    } else {
      this.setStatus("Failed", "bad");
      replace(this.message, errorAlert(error));
    }
    this.terminal?.dispose();
    this.terminal = null;
    this.screen.replaceChildren();
    this.screen.hidden = true;
  }

  /** Fits the terminal to its box; a new size goes to the pod via onResize. */
  private fitToBox(): void {
    if (!this.terminal || !this.fit || this.element.hidden) return;
    try {
      this.fit.fit();
    } catch {
      // Not laid out yet.
    }
    this.screen.dataset.cols = String(this.terminal.cols);
    this.screen.dataset.rows = String(this.terminal.rows);
  }

  private end(): void {
    this.session?.close();
    this.session = null;
    this.terminal?.dispose();
    this.terminal = null;
    this.fit = null;
  }

  private setStatus(text: string, tone: Tone): void {
    replace(this.status, badge(text, tone, "terminal-status"));
  }
}
