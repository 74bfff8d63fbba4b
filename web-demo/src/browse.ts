/** Namespaces and pods of one cluster, read through the proxy. */
import type { ClusterSummary, KubeportalClient, KubernetesObject } from "@kubeportal/sdk";
import { h, replace } from "./dom.js";
import { empty, errorAlert, loading } from "./ui.js";
import { podTable, type PodActions } from "./workloads.js";

export interface BrowseContext extends PodActions {
  client: KubeportalClient;
}

interface List {
  items: KubernetesObject[];
}

/** GETs a Kubernetes list through the proxy; a cluster's error becomes an Error. */
async function list(client: KubeportalClient, cluster: string, path: string): Promise<KubernetesObject[]> {
  const response = await client.proxy(cluster, path, { headers: { Accept: "application/json" } });
  const body = (await response.json()) as List & { message?: string };
  if (!response.ok) throw new Error(`The cluster answered ${response.status}: ${body.message ?? response.statusText}`);
  return body.items;
}

export function browseView(context: BrowseContext, clusters: ClusterSummary[], initial?: string): HTMLElement {
  const select = h(
    "select",
    { id: "cluster", name: "cluster", "data-testid": "cluster-select" },
    clusters.map((cluster) => h("option", { value: cluster.name, selected: cluster.name === initial }, cluster.title ?? cluster.name)),
  );
  const namespaces = h("nav", { class: "namespace-list", "aria-label": "Namespaces", "data-testid": "namespaces" });
  const pods = h("div", { class: "pod-list", "data-testid": "browse-pods" }, empty("Choose a namespace."));
  let latestNamespaces = 0;
  let latestPods = 0;

  const showPods = async (cluster: string, namespace: string, button: HTMLButtonElement) => {
    const request = ++latestPods;
    for (const other of namespaces.querySelectorAll("button")) other.removeAttribute("aria-current");
    button.setAttribute("aria-current", "true");
    replace(pods, loading(`pods in ${namespace}`));
    try {
      const items = await list(context.client, cluster, `/api/v1/namespaces/${encodeURIComponent(namespace)}/pods`);
      if (request !== latestPods) return;
      replace(pods, h("h4", {}, `Pods in ${namespace}`), items.length > 0 ? podTable(cluster, items, context) : empty("No pods in this namespace."));
    } catch (error) {
      if (request === latestPods) replace(pods, errorAlert(error));
    }
  };

  const showNamespaces = async (cluster: string) => {
    const request = ++latestNamespaces;
    latestPods++;
    replace(namespaces, loading("namespaces"));
    replace(pods, empty("Choose a namespace."));
    try {
      const items = await list(context.client, cluster, "/api/v1/namespaces");
      if (request !== latestNamespaces) return;
      const names = items.map((namespace) => namespace.metadata?.name ?? "").filter(Boolean).sort();
      replace(
        namespaces,
        names.length > 0
          ? h("ul", {}, names.map((name) => {
              const button: HTMLButtonElement = h("button", { type: "button", class: "namespace", "data-namespace": name }, name);
              button.addEventListener("click", () => void showPods(cluster, name, button));
              return h("li", {}, button);
            }))
          : empty("No namespaces."),
      );
    } catch (error) {
      if (request === latestNamespaces) replace(namespaces, errorAlert(error));
    }
  };

  select.addEventListener("change", () => void showNamespaces(select.value));
  if (clusters.length > 0) void showNamespaces(select.value);

  return h(
    "section",
    { class: "view" },
    h("p", { class: "muted" }, "Any Kubernetes API call goes through the portal's proxy with proxy(cluster, path)."),
    h("div", { class: "toolbar" }, h("label", { for: "cluster" }, "Cluster"), select),
    clusters.length === 0
      ? empty("No clusters are registered.")
      : h("div", { class: "browse" }, h("div", { class: "card" }, h("h4", {}, "Namespaces"), namespaces), h("div", { class: "card" }, pods)),
  );
}
