/**
 * For admins (`kubernetes.audit.read`): the audit trail as a filterable,
 * paged table, and exec sessions' recordings played back in the page with
 * asciinema-player (bundled from npm).
 */
import type { Player } from "asciinema-player";
import type { AuditFilters, KubeportalClient, RecordingInfo, StoredAuditRecord } from "@kubeportal/sdk";
import { h, replace } from "./dom.js";
import { dateTime, type Tone } from "./format.js";
import { badge, empty, errorAlert, loading, table } from "./ui.js";

const PAGE_SIZES = [10, 25, 100];

export interface AuditView {
  element: HTMLElement;
  dispose(): void;
}

function statusTone(status: number): Tone {
  if (status === 101 || (status >= 200 && status < 300)) return "ok";
  if (status === 401 || status === 403) return "bad";
  if (status >= 500) return "bad";
  if (status >= 400) return "warn";
  return "neutral";
}

/** A `datetime-local` value as RFC 3339 in UTC, or undefined when empty. */
function toRfc3339(value: string): string | undefined {
  if (!value) return undefined;
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? undefined : date.toISOString();
}

function field(id: string, label: string, control: HTMLElement): HTMLElement {
  return h("div", { class: "field" }, h("label", { for: id }, label), control);
}

export function auditView(client: KubeportalClient, clusters: string[]): AuditView {
  const cluster = h(
    "select",
    { id: "audit-cluster", name: "cluster", "data-testid": "audit-cluster" },
    h("option", { value: "" }, "Any cluster"),
    clusters.map((name) => h("option", { value: name }, name)),
  );
  const subject = h("input", { id: "audit-subject", name: "subject", placeholder: "user:default/alice", spellcheck: "false", "data-testid": "audit-subject" });
  const method = h(
    "select",
    { id: "audit-method", name: "method", "data-testid": "audit-method" },
    ["", "GET", "POST", "PUT", "PATCH", "DELETE", "CONNECT"].map((value) => h("option", { value }, value || "Any method")),
  );
  const status = h("input", { id: "audit-status", name: "status", type: "number", min: 100, max: 599, placeholder: "e.g. 101, 403", "data-testid": "audit-status" });
  const since = h("input", { id: "audit-since", name: "since", type: "datetime-local", step: 1, "data-testid": "audit-since" });
  const until = h("input", { id: "audit-until", name: "until", type: "datetime-local", step: 1, "data-testid": "audit-until" });
  const pageSize = h(
    "select",
    { id: "audit-limit", name: "limit", "data-testid": "audit-limit" },
    PAGE_SIZES.map((size) => h("option", { value: size, selected: size === 25 }, `${size} rows`)),
  );
  const results = h("div", { class: "results", "data-testid": "audit" });
  const pager = h("div", { class: "toolbar pager" });
  const player = new ReplayPanel(client);

  // Cursors of the pages seen, to go back: cursors[i] opened page i.
  let cursors: Array<number | undefined> = [undefined];
  let page = 0;
  let latest = 0;

  const filters = (): AuditFilters => ({
    cluster: cluster.value || undefined,
    subject: subject.value.trim() || undefined,
    method: method.value || undefined,
    status: status.value ? Number(status.value) : undefined,
    since: toRfc3339(since.value),
    until: toRfc3339(until.value),
    limit: Number(pageSize.value),
  });

  const load = async () => {
    const request = ++latest;
    replace(results, loading("the audit trail"));
    replace(pager);
    try {
      const answer = await client.audit({ ...filters(), cursor: cursors[page] });
      if (request !== latest) return;
      cursors = cursors.slice(0, page + 1);
      if (answer.nextCursor !== undefined && answer.nextCursor !== null) cursors.push(answer.nextCursor);
      replace(
        results,
        answer.items.length === 0
          ? empty("No audit record matches these filters.")
          : h(
              "div",
              { class: "table-scroll card" },
              recordTable(answer.items, (record) =>
                void player.play({ id: record.recording ?? "", cluster: record.cluster ?? "", subject: record.subject, time: record.time }),
              ),
            ),
      );
      const previous = h("button", { type: "button", class: "button", "data-testid": "audit-previous", disabled: page === 0 }, "Newer");
      const next = h("button", { type: "button", class: "button", "data-testid": "audit-next", disabled: cursors.length <= page + 1 }, "Older");
      previous.addEventListener("click", () => {
        page = Math.max(0, page - 1);
        void load();
      });
      next.addEventListener("click", () => {
        page++;
        void load();
      });
      replace(pager, previous, h("span", { class: "muted", "data-testid": "audit-page" }, `Page ${page + 1}`), next);
    } catch (error) {
      if (request === latest) replace(results, errorAlert(error));
    }
  };

  const form = h(
    "form",
    { class: "filters", "data-testid": "audit-filters" },
    field("audit-cluster", "Cluster", cluster),
    field("audit-subject", "Subject", subject),
    field("audit-method", "Method", method),
    field("audit-status", "Status", status),
    field("audit-since", "Since", since),
    field("audit-until", "Until", until),
    field("audit-limit", "Page size", pageSize),
    h(
      "div",
      { class: "field field-actions" },
      h("button", { type: "submit", class: "button button-primary", "data-testid": "audit-apply" }, "Apply filters"),
      h("button", { type: "reset", class: "button", "data-testid": "audit-reset" }, "Clear"),
    ),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    cursors = [undefined];
    page = 0;
    void load();
  });
  form.addEventListener("reset", () => {
    // After the browser has cleared the fields.
    setTimeout(() => form.requestSubmit(), 0);
  });
  void load();

  const recordings = h("div", { "data-testid": "recordings" });
  const loadRecordings = async () => {
    replace(recordings, loading("recordings"));
    try {
      const page = await client.recordings({ limit: 10 });
      replace(
        recordings,
        page.items.length === 0
          ? empty("No session has been recorded yet.")
          : h(
              "div",
              { class: "table-scroll card" },
              recordingTable(page.items, (info) =>
                void player.play({ id: info.id, cluster: info.cluster, subject: info.subject, time: info.startedAt }),
              ),
            ),
      );
    } catch (error) {
      replace(recordings, errorAlert(error));
    }
  };
  void loadRecordings();
  const refresh = h("button", { type: "button", class: "button button-small", "data-testid": "recordings-refresh" }, "Refresh");
  refresh.addEventListener("click", () => void loadRecordings());

  return {
    element: h(
      "section",
      { class: "view" },
      h("p", { class: "muted" }, "Every proxied call, registry write and denial, newest first. Exec sessions (status 101) link to their recording."),
      form,
      results,
      pager,
      player.element,
      h("div", { class: "toolbar" }, h("h3", {}, "Recent session recordings"), refresh),
      recordings,
    ),
    dispose: () => player.close(),
  };
}

function recordTable(records: StoredAuditRecord[], replay: (record: StoredAuditRecord) => void): HTMLElement {
  return table(
    ["Time", "Cluster", "Subject", "Method", "Path", "Status", "Decision", ""],
    records.map((record) => [
      h("span", { class: "nowrap", title: record.time, "data-testid": "audit-row-time", "data-id": record.id }, dateTime(record.time)),
      record.cluster ? h("span", { class: "mono", "data-testid": "audit-row-cluster" }, record.cluster) : h("span", { class: "muted" }, "–"),
      h("span", { class: "mono", "data-testid": "audit-row-subject" }, record.subject),
      h("span", { "data-testid": "audit-row-method" }, record.method),
      h("span", { class: "mono audit-path", title: record.query ? `${record.path}?${record.query}` : record.path, "data-testid": "audit-row-path" }, record.path),
      badge(String(record.status), statusTone(record.status), "audit-row-status"),
      h("span", { title: record.rule ?? "" }, badge(record.decision, record.decision === "deny" ? "bad" : record.decision === "allow" ? "ok" : "neutral")),
      record.recording
        ? h(
            "button",
            {
              type: "button",
              class: "button button-small",
              "data-testid": "replay",
              "data-recording": record.recording,
              onclick: () => replay(record),
            },
            "Replay",
          )
        : "",
    ]),
    "audit-table",
  );
}

async function loadPlayer(): Promise<typeof import("asciinema-player")> {
  const [player] = await Promise.all([import("asciinema-player"), import("asciinema-player/dist/bundle/asciinema-player.css")]);
  return player;
}

function recordingTable(items: RecordingInfo[], replay: (info: RecordingInfo) => void): HTMLElement {
  return table(
    ["Started", "Cluster", "Subject", "Session", "Length", "Size", ""],
    items.map((info) => {
      const seconds = info.endedAt ? Math.max(0, (Date.parse(info.endedAt) - Date.parse(info.startedAt)) / 1000) : undefined;
      return [
        h("span", { class: "nowrap" }, dateTime(info.startedAt)),
        h("span", { class: "mono" }, info.cluster),
        h("span", { class: "mono" }, info.subject),
        h("span", { class: "mono audit-path", title: info.path }, info.path.replace(/^\/api\/v1\/namespaces\//, "")),
        seconds === undefined ? badge("running", "warn") : `${seconds.toFixed(1)} s`,
        `${(info.bytes / 1024).toFixed(1)} KiB${info.truncated ? " (truncated)" : ""}`,
        h(
          "button",
          { type: "button", class: "button button-small", "data-testid": "replay", "data-recording": info.id, onclick: () => replay(info) },
          "Replay",
        ),
      ];
    }),
    "recordings-table",
  );
}

/** What the player needs to know of a recording. */
interface Replayable {
  id: string;
  cluster: string;
  subject: string;
  time: string;
}

/** A recorded session, played back. */
class ReplayPanel {
  readonly element: HTMLElement;
  private readonly title = h("h2", { class: "log-title" });
  private readonly status = h("span", {});
  private readonly screen = h("div", { class: "player-screen", "data-testid": "player" });
  private player: Player | null = null;
  private latest = 0;

  constructor(private readonly client: KubeportalClient) {
    const close = h("button", { type: "button", class: "button button-quiet", "data-testid": "player-close" }, "Close");
    close.addEventListener("click", () => this.close());
    this.element = h(
      "section",
      { class: "card log-panel", "data-testid": "player-panel", "aria-label": "Session recording", hidden: true },
      h("header", { class: "log-header" }, this.title, this.status, h("span", { class: "spacer" }), close),
      this.screen,
    );
  }

  async play(record: Replayable): Promise<void> {
    const id = record.id;
    if (!id) return;
    const request = ++this.latest;
    this.dispose();
    replace(this.title, "Recording ", h("span", { class: "muted" }, `${record.cluster} · ${record.subject} · `), dateTime(record.time));
    this.element.hidden = false;
    replace(this.status, badge("Loading…", "neutral", "player-status"));
    replace(this.screen, loading("the recording"));
    this.element.scrollIntoView({ block: "nearest" });
    let cast: string;
    let AsciinemaPlayer: typeof import("asciinema-player");
    try {
      // The player is loaded (from this site, bundled) the first time a recording is played.
      [cast, AsciinemaPlayer] = await Promise.all([this.client.recording(id), loadPlayer()]);
    } catch (error) {
      if (request === this.latest) {
        replace(this.status, badge("Unavailable", "bad", "player-status"));
        replace(this.screen, errorAlert(error));
      }
      return;
    }
    if (request !== this.latest) return;
    this.screen.replaceChildren();
    const player = AsciinemaPlayer.create({ data: cast }, this.screen, {
      autoPlay: true,
      fit: "width",
      idleTimeLimit: 1,
      terminalFontFamily: 'ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace',
    });
    this.player = player;
    replace(this.status, badge("Playing", "ok", "player-status"));
    player.addEventListener("ended", () => {
      if (request === this.latest) replace(this.status, badge("Replayed", "neutral", "player-status"));
    });
  }

  close(): void {
    this.latest++;
    this.dispose();
    this.element.hidden = true;
  }

  private dispose(): void {
    this.player?.dispose();
    this.player = null;
  }
}
