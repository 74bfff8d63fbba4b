/** The page: sign-in, then clusters, an entity's workloads, browsing and logs. */
import type { ClusterSummary, KubeportalClient } from "@kubeportal/sdk";
import { KubeportalError } from "@kubeportal/sdk";
import { browseView } from "./browse.js";
import { h, replace } from "./dom.js";
import { LogPanel, type LogTarget } from "./logs.js";
import { clearSession, clientFor, describeSession, loadSession, saveSession, type Session } from "./session.js";
import { signInView } from "./signin.js";
import { badge, empty, errorAlert, loading } from "./ui.js";
import { workloadsView } from "./workloads.js";

type Tab = "workloads" | "browse";

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
  private readonly clusterList = h("nav", { class: "cluster-list", "aria-label": "Clusters", "data-testid": "clusters" });
  private readonly view = h("div", { class: "view-host" });
  private readonly tabs: Record<Tab, HTMLButtonElement>;
  private clusters: ClusterSummary[] | null = null;
  private current: Tab = "workloads";
  private browseCluster: string | undefined;

  /** `onRejected` is called when the token is refused (401). */
  constructor(
    private readonly client: KubeportalClient,
    private readonly onRejected: () => void,
  ) {
    this.logs = new LogPanel(client);
    const tab = (name: Tab, label: string) =>
      h("button", { type: "button", role: "tab", class: "tab", "data-testid": `tab-${name}`, onclick: () => this.select(name) }, label);
    this.tabs = { workloads: tab("workloads", "Entity workloads"), browse: tab("browse", "Browse a cluster") };
    this.element = h(
      "div",
      { class: "layout" },
      h("aside", { class: "sidebar" }, h("h2", {}, "Clusters"), this.clusterList),
      h(
        "main",
        { class: "content" },
        h("div", { class: "tabs", role: "tablist" }, this.tabs.workloads, this.tabs.browse),
        this.view,
        this.logs.element,
      ),
    );
    this.select("workloads");
    void this.loadClusters();
  }

  /** Stops any log stream. */
  dispose(): void {
    this.logs.stop();
  }

  private openLogs = (target: LogTarget) => this.logs.follow(target);

  private select(tab: Tab): void {
    this.current = tab;
    for (const [name, button] of Object.entries(this.tabs)) button.setAttribute("aria-selected", String(name === tab));
    if (tab === "workloads") {
      replace(this.view, workloadsView({ client: this.client, openLogs: this.openLogs }));
    } else if (this.clusters === null) {
      replace(this.view, loading("clusters"));
    } else {
      replace(this.view, browseView({ client: this.client, openLogs: this.openLogs }, this.clusters, this.browseCluster));
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
    if (this.current === "browse") this.select("browse");
  }
}
