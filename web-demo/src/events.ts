/** The events of one object, read through the proxy as `kubectl describe` does. */
import type { KubeportalClient, KubernetesObject } from "@kubeportal/sdk";
import { h, replace } from "./dom.js";
import { age } from "./format.js";
import { badge, empty, errorAlert, loading, table } from "./ui.js";

export interface EventsTarget {
  cluster: string;
  namespace: string;
  /** `Pod`, `Deployment`, ... */
  kind: string;
  name: string;
}

interface EventFields {
  type?: string;
  reason?: string;
  message?: string;
  count?: number;
  firstTimestamp?: string;
  lastTimestamp?: string;
  eventTime?: string;
  source?: { component?: string };
  involvedObject?: { kind?: string; name?: string };
}

/** The time an event last happened, whichever field the cluster filled. */
function lastSeen(event: EventFields & KubernetesObject): string | undefined {
  return event.lastTimestamp ?? event.eventTime ?? event.firstTimestamp ?? event.metadata?.creationTimestamp;
}

export class EventsPanel {
  readonly element: HTMLElement;
  private readonly title = h("h2", { class: "log-title" });
  private readonly body = h("div", { "data-testid": "events" });
  private latest = 0;

  constructor(private readonly client: KubeportalClient) {
    const close = h("button", { type: "button", class: "button button-quiet", "data-testid": "events-close" }, "Close");
    close.addEventListener("click", () => {
      this.latest++;
      this.element.hidden = true;
    });
    this.element = h(
      "section",
      { class: "card log-panel", "data-testid": "events-panel", "aria-label": "Events", hidden: true },
      h("header", { class: "log-header" }, this.title, h("span", { class: "spacer" }), close),
      this.body,
    );
  }

  async show(target: EventsTarget): Promise<void> {
    const request = ++this.latest;
    replace(this.title, "Events of ", `${target.kind} `, h("span", { class: "muted" }, `${target.cluster} / ${target.namespace} / `), target.name);
    this.element.hidden = false;
    replace(this.body, loading("events"));
    this.element.scrollIntoView({ block: "nearest" });
    const selector = `involvedObject.name=${target.name},involvedObject.kind=${target.kind}`;
    const path = `/api/v1/namespaces/${encodeURIComponent(target.namespace)}/events?fieldSelector=${encodeURIComponent(selector)}`;
    try {
      const response = await this.client.proxy(target.cluster, path, { headers: { Accept: "application/json" } });
      const body = (await response.json()) as { items?: Array<EventFields & KubernetesObject>; message?: string };
      if (!response.ok) throw new Error(`The cluster answered ${response.status}: ${body.message ?? response.statusText}`);
      if (request !== this.latest) return;
      const events = (body.items ?? []).sort((a, b) => Date.parse(lastSeen(b) ?? "") - Date.parse(lastSeen(a) ?? ""));
      replace(
        this.body,
        events.length === 0
          ? empty(`No events for this ${target.kind.toLowerCase()}: clusters keep them for about an hour.`)
          : h(
              "div",
              { class: "table-scroll" },
              table(
                ["Type", "Reason", "Message", "Count", "From", "Last seen"],
                events.map((event) => [
                  badge(event.type ?? "Normal", event.type === "Warning" ? "warn" : "neutral", "event-type"),
                  h("span", { "data-testid": "event-reason" }, event.reason ?? ""),
                  h("span", { class: "event-message" }, event.message ?? ""),
                  event.count ?? 1,
                  event.source?.component ?? "",
                  age(lastSeen(event)),
                ]),
                "events-table",
              ),
            ),
      );
    } catch (error) {
      if (request === this.latest) replace(this.body, errorAlert(error));
    }
  }
}
