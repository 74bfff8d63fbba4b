/**
 * The fleet: one table of pods across every cluster whose name matches a
 * glob, from one merged list, then kept current by one fleet watch. Items of
 * different clusters arrive interleaved; the table is ordered here.
 */
import type { FleetClusterStatus, KubeportalClient, KubernetesObject } from "@kubeportal/sdk";
import { h, replace } from "./dom.js";
import { age, describeError, podReady, podStatus } from "./format.js";
import { badge, empty, errorAlert, loading, table } from "./ui.js";
import type { PodActions } from "./workloads.js";

export interface FleetContext extends PodActions {
  client: KubeportalClient;
}

/** A running fleet page; `dispose` ends its watch. */
export interface FleetView {
  element: HTMLElement;
  dispose(): void;
}

function key(cluster: string, pod: KubernetesObject): string {
  return `${cluster}\u0000${pod.metadata?.namespace ?? ""}\u0000${pod.metadata?.name ?? ""}`;
}

export function fleetView(context: FleetContext): FleetView {
  const input = h("input", {
    id: "fleet-glob",
    name: "glob",
    value: "*",
    required: true,
    spellcheck: "false",
    class: "input-short",
    "data-testid": "fleet-glob",
  });
  const namespaceInput = h("input", {
    id: "fleet-namespace",
    name: "namespace",
    placeholder: "all namespaces",
    spellcheck: "false",
    class: "input-short",
    "data-testid": "fleet-namespace",
  });
  const live = h("span", { "data-testid": "fleet-live" });
  const clusterStatus = h("div", { class: "fleet-clusters", "data-testid": "fleet-clusters" });
  const results = h("div", { class: "results", "data-testid": "fleet" });
  const pods = new Map<string, { cluster: string; pod: KubernetesObject }>();
  let controller: AbortController | null = null;
  let rendering = 0;

  const setLive = (label: string, tone: "ok" | "warn" | "bad" | "neutral") => replace(live, badge(label, tone, "fleet-status"));

  const render = () => {
    // Coalesce bursts of events into one redraw.
    if (rendering) return;
    rendering = requestAnimationFrame(() => {
      rendering = 0;
      const rows = [...pods.values()].sort(
        (a, b) =>
          a.cluster.localeCompare(b.cluster) ||
          (a.pod.metadata?.namespace ?? "").localeCompare(b.pod.metadata?.namespace ?? "") ||
          (a.pod.metadata?.name ?? "").localeCompare(b.pod.metadata?.name ?? ""),
      );
      replace(
        results,
        h("p", { class: "muted", "data-testid": "fleet-count" }, `${rows.length} pod${rows.length === 1 ? "" : "s"}`),
        rows.length === 0
          ? empty("No pods on the matching clusters.")
          : h(
              "div",
              { class: "table-scroll card" },
              table(
                ["Cluster", "Namespace", "Name", "Status", "Ready", "Age", ""],
                rows.map(({ cluster, pod }) => {
                  const status = podStatus(pod);
                  const name = pod.metadata?.name ?? "";
                  const namespace = pod.metadata?.namespace ?? "";
                  return [
                    h("span", { class: "mono", "data-testid": "fleet-cluster" }, cluster),
                    namespace,
                    h("span", { class: "mono", "data-testid": "fleet-pod", "data-cluster": cluster }, name),
                    badge(status.label, status.tone, "fleet-pod-status"),
                    podReady(pod),
                    age(pod.metadata?.creationTimestamp),
                    h(
                      "div",
                      { class: "row-actions" },
                      h(
                        "button",
                        {
                          type: "button",
                          class: "button button-small",
                          "data-testid": "open-terminal",
                          "data-pod": name,
                          "data-cluster": cluster,
                          onclick: () => context.openTerminal({ cluster, namespace, pod: name }),
                        },
                        "Terminal",
                      ),
                      h(
                        "button",
                        {
                          type: "button",
                          class: "button button-small",
                          "data-testid": "show-events",
                          "data-pod": name,
                          onclick: () => context.showEvents({ cluster, namespace, kind: "Pod", name }),
                        },
                        "Events",
                      ),
                    ),
                  ];
                }),
                "fleet-pods",
              ),
            ),
      );
    });
  };

  /** One line per cluster: how it answered the list, its error next to its name. */
  const showClusters = (statuses: FleetClusterStatus[]) => {
    replace(
      clusterStatus,
      statuses.length === 0
        ? empty("No cluster you may read matches this glob.")
        : h(
            "ul",
            { class: "fleet-cluster-list" },
            statuses.map((status) =>
              h(
                "li",
                { "data-testid": "fleet-cluster-status", "data-cluster": status.name, "data-status": status.status },
                h("span", { class: "mono" }, status.name),
                status.status === "Success"
                  ? badge("answered", "ok")
                  : [
                      badge(`failed${status.code ? ` (${status.code})` : ""}`, "bad"),
                      h("span", { class: "fleet-cluster-error", "data-testid": "fleet-cluster-error" }, status.message ?? "no answer"),
                    ],
              ),
            ),
          ),
    );
  };

  const watch = async (glob: string, path: string, resourceVersion: string, signal: AbortSignal) => {
    try {
      setLive("Live", "ok");
      for await (const event of context.client.fleet.watch(glob, path, { resourceVersion, signal })) {
        if (event.type === "BOOKMARK") continue;
        const id = key(event.cluster, event.object);
        if (event.type === "DELETED") pods.delete(id);
        else pods.set(id, { cluster: event.cluster, pod: event.object });
        render();
      }
      if (!signal.aborted) setLive("Watch ended", "neutral");
    } catch (error) {
      if (signal.aborted) return;
      const { title, detail } = describeError(error);
      setLive(`Watch stopped: ${title}`, "bad");
      live.title = detail;
    }
  };

  const show = async (glob: string, namespace: string) => {
    controller?.abort();
    const current = new AbortController();
    controller = current;
    pods.clear();
    replace(live);
    replace(clusterStatus, loading(`clusters matching ${glob}`));
    replace(results);
    const path = namespace ? `/api/v1/namespaces/${encodeURIComponent(namespace)}/pods` : "/api/v1/pods";
    try {
      const list = await context.client.fleet.list(glob, path, { signal: current.signal });
      if (current.signal.aborted) return;
      for (const item of list.items) pods.set(key(item.cluster, item.object), { cluster: item.cluster, pod: item.object });
      showClusters(list.clusters);
      render();
      void watch(glob, path, list.resourceVersion, current.signal);
    } catch (error) {
      if (current.signal.aborted) return;
      replace(clusterStatus, errorAlert(error));
    }
  };

  const form = h(
    "form",
    { class: "toolbar" },
    h("label", { for: "fleet-glob" }, "Clusters (glob)"),
    input,
    h("label", { for: "fleet-namespace" }, "Namespace"),
    namespaceInput,
    h("button", { type: "submit", class: "button button-primary", "data-testid": "show-fleet" }, "Show pods"),
    live,
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    void show(input.value.trim() || "*", namespaceInput.value.trim());
  });
  void show("*", "");

  return {
    element: h(
      "section",
      { class: "view" },
      h(
        "p",
        { class: "muted" },
        "Every pod on every cluster whose name matches the glob, from one merged list and one fleet watch that keeps the table current.",
      ),
      form,
      clusterStatus,
      results,
    ),
    dispose: () => controller?.abort(),
  };
}
