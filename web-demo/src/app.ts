/**
 * The page: sign-in, then clusters, an entity's workloads (with metrics),
 * browsing, the fleet, and for admins the audit trail with recordings; logs,
 * a terminal and events open in panels below.
 */
import type { ClusterSummary, KubeportalClient } from "@kubeportal/sdk";
import { KubeportalError } from "@kubeportal/sdk";
import { auditView } from "./audit.js";
import { browseView } from "./browse.js";
import { h, replace } from "./dom.js";
import { EventsPanel } from "./events.js";
import { fleetView } from "./fleet.js";
import { LogPanel } from "./logs.js";
import { TerminalPanel } from "./terminal.js";
import { clearSession, clientFor, describeSession, loadSession, saveSession, type Session } from "./session.js";
import { signInView } from "./signin.js";
import { badge, empty, errorAlert, loading } from "./ui.js";
import { workloadsView } from "./workloads.js";

type Tab = "workloads" | "browse" | "fleet" | "audit";

export class App {
  constructor(private readonly root: HTMLElement) {}

  start(): void {
    const session = loadSession();
    if (session) this.showPortal(session);
    else this.showSignIn();
  }

  private showSignIn(notice?: string): void {
    replace(
      this.root,
      topBar(null, () => undefined),
      signInView((session) => {
        saveSession(session);
        this.showPortal(session);
      }, notice),
    );
  }

  private signOut(notice?: string): void {
    clearSession();
    this.showSignIn(notice);
  }

  private showPortal(session: Session): void {
    const client = clientFor(session);
    const portal = new PortalPage(client, () => this.signOut("Your token was not accepted. Sign in again."));
    const signOut = () => {
      portal.dispose();
      this.signOut();
    };
    replace(this.root, topBar(session, signOut), portal.element);
  }
}

function topBar(session: Session | null, onSignOut: () => void): HTMLElement {
  return h(
    "header",
    { class: "topbar" },
    h("span", { class: "brand" }, h("img", { src: "/favicon.svg", alt: "", width: 24, height: 24 }), "kubeportal"),
    h("span", { class: "topbar-subtitle" }, "Kubernetes for your developer portal"),
    h("span", { class: "spacer" }),
    session
      ? [
          h("span", { class: "identity", "data-testid": "identity" }, describeSession(session)),
          h("button", { type: "button", class: "button button-on-dark", onclick: onSignOut }, "Sign out"),
        ]
      : null,
  );
}

/** The signed-in page. */
class PortalPage {
  readonly element: HTMLElement;
  private readonly logs: LogPanel;
  private readonly terminal: TerminalPanel;
  private readonly events: EventsPanel;
  private readonly clusterList = h("nav", { class: "cluster-list", "aria-label": "Clusters", "data-testid": "clusters" });
  private readonly view = h("div", { class: "view-host" });
  private readonly tabs: Record<Tab, HTMLButtonElement>;
  private clusters: ClusterSummary[] | null = null;
  private current: Tab = "workloads";
  private browseCluster: string | undefined;
  /** Ends what the current view keeps running (a fleet watch, a replay). */
  private disposeView: () => void = () => undefined;

  /** `onRejected` is called when the token is refused (401). */
  constructor(
    private readonly client: KubeportalClient,
    private readonly onRejected: () => void,
  ) {
    this.logs = new LogPanel(client);
    this.terminal = new TerminalPanel(client);
    this.events = new EventsPanel(client);
    const tab = (name: Tab, label: string, hidden = false) =>
      h(
        "button",
        { type: "button", role: "tab", class: "tab", "data-testid": `tab-${name}`, hidden, onclick: () => this.select(name) },
        label,
      );
    this.tabs = {
      workloads: tab("workloads", "Entity workloads"),
      browse: tab("browse", "Browse a cluster"),
      fleet: tab("fleet", "Fleet"),
      // Shown once the audit trail answers: only admins may read it.
      audit: tab("audit", "Audit & recordings", true),
    };
    this.element = h(
      "div",
      { class: "layout" },
      h("aside", { class: "sidebar" }, h("h2", {}, "Clusters"), this.clusterList),
      h(
        "main",
        { class: "content" },
        h("div", { class: "tabs", role: "tablist" }, Object.values(this.tabs)),
        this.view,
        this.terminal.element,
        this.events.element,
        this.logs.element,
      ),
    );
    this.select("workloads");
    void this.loadClusters();
    void this.probeAudit();
  }

  /** Stops every stream and session. */
  dispose(): void {
    this.logs.stop();
    this.terminal.close();
    this.disposeView();
  }

  private actions = {
    openLogs: (target: Parameters<LogPanel["follow"]>[0]) => this.logs.follow(target),
    openTerminal: (target: Parameters<TerminalPanel["open"]>[0]) => void this.terminal.open(target),
    showEvents: (target: Parameters<EventsPanel["show"]>[0]) => void this.events.show(target),
  };

  /** Whether this identity may read the audit trail: then the tab appears. */
  private async probeAudit(): Promise<void> {
    try {
      await this.client.audit({ limit: 1 });
      this.tabs.audit.hidden = false;
    } catch {
      this.tabs.audit.hidden = true;
    }
  }

  private select(tab: Tab): void {
    this.current = tab;
    this.disposeView();
    this.disposeView = () => undefined;
    for (const [name, button] of Object.entries(this.tabs)) button.setAttribute("aria-selected", String(name === tab));
    if (tab === "workloads") {
      replace(this.view, workloadsView({ client: this.client, ...this.actions }));
    } else if (tab === "fleet") {
      const fleet = fleetView({ client: this.client, ...this.actions });
      this.disposeView = fleet.dispose;
      replace(this.view, fleet.element);
    } else if (this.clusters === null) {
      replace(this.view, loading("clusters"));
    } else if (tab === "audit") {
      const audit = auditView(this.client, this.clusters.map((cluster) => cluster.name));
      this.disposeView = audit.dispose;
      replace(this.view, audit.element);
    } else {
      replace(this.view, browseView({ client: this.client, ...this.actions }, this.clusters, this.browseCluster));
    }
  }

  private async loadClusters(): Promise<void> {
    replace(this.clusterList, loading("clusters"));
    try {
      this.clusters = await this.client.clusters();
    } catch (error) {
      if (error instanceof KubeportalError && error.status === 401) {
        this.dispose();
        this.onRejected();
        return;
      }
      replace(
        this.clusterList,
        errorAlert(error, h("button", { type: "button", class: "button button-small", onclick: () => void this.loadClusters() }, "Retry")),
      );
      return;
    }
    replace(
      this.clusterList,
      this.clusters.length === 0
        ? empty("No clusters are registered yet.")
        : h(
            "ul",
            {},
            this.clusters.map((cluster) =>
              h(
                "li",
                {},
                h(
                  "button",
                  {
                    type: "button",
                    class: "cluster",
                    "data-testid": "cluster",
                    "data-cluster": cluster.name,
                    title: `Browse ${cluster.name}`,
                    onclick: () => {
                      this.browseCluster = cluster.name;
                      this.select("browse");
                    },
                  },
                  h("span", { class: "cluster-title" }, cluster.title ?? cluster.name),
                  h("span", { class: "cluster-meta" }, h("span", { class: "mono" }, cluster.name), badge(cluster.authProvider, "neutral")),
                ),
              ),
            ),
          ),
    );
    if (this.current === "browse" || this.current === "audit") this.select(this.current);
  }
}
