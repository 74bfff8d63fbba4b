/** A pod's log, followed live until the person stops it. */
import type { KubeportalClient } from "@kubeportal/sdk";
import { h, replace } from "./dom.js";
import { describeError, type Tone } from "./format.js";
import { badge } from "./ui.js";

export interface LogTarget {
  cluster: string;
  namespace: string;
  pod: string;
  container?: string;
}

/** Lines kept on screen; older ones are dropped. */
const MAX_LINES = 2000;

export class LogPanel {
  readonly element: HTMLElement;
  private readonly title = h("h2", { class: "log-title" });
  private readonly status = h("span", { class: "log-status" });
  private readonly stopButton = h("button", { type: "button", class: "button", "data-testid": "log-stop" }, "Stop");
  private readonly closeButton = h("button", { type: "button", class: "button button-quiet", "aria-label": "Close logs" }, "Close");
  private readonly output = h("pre", { class: "log-lines", "data-testid": "log-lines", tabindex: "0", "aria-live": "off" });
  private controller: AbortController | null = null;

  constructor(private readonly client: KubeportalClient) {
    this.stopButton.addEventListener("click", () => this.stop());
    this.closeButton.addEventListener("click", () => {
      this.stop();
      this.element.hidden = true;
    });
    this.element = h(
      "section",
      { class: "card log-panel", "data-testid": "log-panel", "aria-label": "Pod logs", hidden: true },
      h("header", { class: "log-header" }, this.title, this.status, h("span", { class: "spacer" }), this.stopButton, this.closeButton),
      this.output,
    );
  }

  /** Follows `target`'s log from its last 100 lines, replacing whatever was shown. */
  follow(target: LogTarget): void {
    this.stop();
    const controller = new AbortController();
    this.controller = controller;
    replace(this.title, "Logs ", h("span", { class: "muted" }, `${target.cluster} / ${target.namespace} / `), target.pod);
    this.output.replaceChildren();
    this.element.hidden = false;
    this.stopButton.disabled = false;
    this.setStatus("Connecting…", "neutral");
    void this.read(target, controller);
    this.element.scrollIntoView({ block: "nearest" });
  }

  stop(): void {
    if (!this.controller) return;
    this.controller.abort();
    this.controller = null;
    this.stopButton.disabled = true;
    this.setStatus("Stopped", "neutral");
  }

  private async read(target: LogTarget, controller: AbortController): Promise<void> {
    const { signal } = controller;
    try {
      const lines = this.client.podLogs(target.cluster, target.namespace, target.pod, {
        container: target.container,
        follow: true,
        tailLines: 100,
        signal,
      });
      let live = false;
      for await (const line of lines) {
        if (!live) {
          live = true;
          this.setStatus("Live", "ok");
        }
        this.appendLine(line);
      }
      if (!signal.aborted) this.finish("Stream ended", "neutral");
    } catch (error) {
      if (signal.aborted) return;
      const { title, detail } = describeError(error);
      this.finish(`${title}: ${detail}`, "bad");
    }
  }

  private finish(status: string, tone: Tone): void {
    this.controller = null;
    this.stopButton.disabled = true;
    this.setStatus(status, tone);
  }

  private appendLine(line: string): void {
    const output = this.output;
    const atBottom = output.scrollHeight - output.scrollTop - output.clientHeight < 24;
    output.appendChild(document.createTextNode(`${line}\n`));
    while (output.childNodes.length > MAX_LINES) output.firstChild?.remove();
    if (atBottom) output.scrollTop = output.scrollHeight;
  }

  private setStatus(text: string, tone: Tone): void {
    replace(this.status, badge(text, tone, "log-status"));
  }
}
