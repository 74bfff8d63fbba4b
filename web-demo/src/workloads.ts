/** A catalog entity's workloads on every cluster, by kubernetes-id. */
import type {
  CatalogEntity,
  ClusterObjects,
  KubeportalClient,
  KubernetesFetchError,
  KubernetesObject,
  PodStatus,
} from "@kubeportal/sdk";
import { h, replace } from "./dom.js";
import type { EventsTarget } from "./events.js";
import {
  age,
  bytes,
  cores,
  deploymentCounts,
  deploymentReady,
  firstContainer,
  numeric,
  podReady,
  podRestarts,
  podStatus,
  type Tone,
} from "./format.js";
import type { LogTarget } from "./logs.js";
import type { TerminalTarget } from "./terminal.js";
import { badge, empty, errorAlert, loading, table } from "./ui.js";

/** What a person can do with a pod or another object on the page. */
export interface PodActions {
  openLogs(target: LogTarget): void;
  openTerminal(target: TerminalTarget): void;
  showEvents(target: EventsTarget): void;
}

export interface WorkloadsContext extends PodActions {
  client: KubeportalClient;
}

/** The entity a kubernetes-id stands for, as a catalog would describe it. */
function entityFor(kubernetesId: string): CatalogEntity {
  return {
    apiVersion: "backstage.io/v1alpha1",
    kind: "Component",
    metadata: { name: kubernetesId, annotations: { "backstage.io/kubernetes-id": kubernetesId } },
  };
}

function objectsOf(entry: ClusterObjects, type: string): KubernetesObject[] {
  return entry.resources.filter((result) => result.type === type).flatMap((result) => result.resources);
}

export function workloadsView(context: WorkloadsContext): HTMLElement {
  const input = h("input", {
    id: "entity",
    name: "entity",
    value: "shop-api",
    required: true,
    pattern: "[A-Za-z0-9][A-Za-z0-9._\\-]*",
    "data-testid": "entity-input",
  });
  const results = h("div", { class: "results", "data-testid": "workloads" });
  let latest = 0;

  const show = async (kubernetesId: string) => {
    const request = ++latest;
    replace(results, loading(`workloads of ${kubernetesId}`));
    try {
      const response = await context.client.objectsByEntity(entityFor(kubernetesId));
      if (request !== latest) return;
      replace(
        results,
        response.items.length === 0
          ? empty(`No cluster has objects labelled backstage.io/kubernetes-id=${kubernetesId}.`)
          : response.items.map((entry) => clusterCard(entry, context)),
      );
    } catch (error) {
      if (request === latest) replace(results, errorAlert(error));
    }
  };

  const form = h(
    "form",
    { class: "toolbar" },
    h("label", { for: "entity" }, "Entity (kubernetes-id)"),
    input,
    h("button", { type: "submit", class: "button button-primary", "data-testid": "show-workloads" }, "Show workloads"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    void show(input.value.trim());
  });

  return h(
    "section",
    { class: "view" },
    h("p", { class: "muted" }, "The objects labelled for a catalog entity on every cluster, as a Backstage Kubernetes tab shows them."),
    form,
    results,
  );
}

function clusterCard(entry: ClusterObjects, context: WorkloadsContext): HTMLElement {
  const cluster = entry.cluster;
  const pods = objectsOf(entry, "pods");
  const deployments = objectsOf(entry, "deployments");
  return h(
    "article",
    { class: "card cluster-card", "data-testid": "cluster-result", "data-cluster": cluster.name },
    h(
      "header",
      { class: "card-header" },
      h("h3", {}, cluster.title ?? cluster.name),
      cluster.title ? h("span", { class: "muted mono" }, cluster.name) : null,
      h("span", { class: "spacer" }),
      badge(`${pods.length} pod${pods.length === 1 ? "" : "s"}`, "neutral"),
      entry.podMetrics.length > 0 ? badge("metrics", "ok", "metrics-available") : null,
      entry.errors.length > 0 ? badge(`${entry.errors.length} error${entry.errors.length === 1 ? "" : "s"}`, "bad") : null,
      cluster.dashboardUrl ? h("a", { href: cluster.dashboardUrl, target: "_blank", rel: "noreferrer" }, "Dashboard") : null,
    ),
    entry.errors.length > 0 ? errorList(entry.errors) : null,
    deployments.length > 0
      ? h(
          "div",
          {},
          h("h4", {}, "Deployments"),
          h(
            "div",
            { class: "table-scroll" },
            table(
              ["Name", "Namespace", "Ready", "Up-to-date", "Available", "Age", ""],
              deployments.map((deployment) => {
                const ready = deploymentReady(deployment);
                const counts = deploymentCounts(deployment);
                const name = deployment.metadata?.name ?? "";
                const namespace = deployment.metadata?.namespace ?? "";
                return [
                  h("span", { class: "mono" }, name),
                  namespace,
                  badge(ready.label, ready.tone),
                  counts.updated,
                  counts.available,
                  age(deployment.metadata?.creationTimestamp),
                  h(
                    "button",
                    {
                      type: "button",
                      class: "button button-small",
                      "data-testid": "show-events",
                      "data-deployment": name,
                      onclick: () => context.showEvents({ cluster: cluster.name, namespace, kind: "Deployment", name }),
                    },
                    "Events",
                  ),
                ];
              }),
              "deployments",
            ),
          ),
        )
      : null,
    pods.length > 0
      ? h("div", {}, h("h4", {}, "Pods"), podTable(cluster.name, pods, context, metricsByPod(entry.podMetrics)))
      : entry.errors.length === 0
        ? empty("No pods.")
        : null,
  );
}

/**
 * A cluster's errors, one line per distinct problem: an unreachable cluster
 * fails every list the same way, which is one problem, not fourteen.
 */
function errorList(errors: KubernetesFetchError[]): HTMLElement {
  const groups = new Map<string, { error: KubernetesFetchError; paths: string[] }>();
  for (const error of errors) {
    const key = `${error.errorType} ${error.statusCode ?? ""} ${error.message ?? ""}`;
    const group = groups.get(key) ?? { error, paths: [] };
    if (error.resourcePath) group.paths.push(error.resourcePath);
    groups.set(key, group);
  }
  return h(
    "div",
    { class: "alert alert-error", role: "alert", "data-testid": "cluster-errors" },
    h("strong", {}, "This cluster could not be read completely"),
    h(
      "ul",
      {},
      [...groups.values()].map(({ error, paths }) =>
        h(
          "li",
          {},
          h("code", {}, error.errorType),
          error.statusCode ? ` ${error.statusCode}` : "",
          error.message ? `: ${error.message}` : "",
          paths.length === 1 ? h("span", { class: "mono" }, ` (${paths[0]})`) : null,
          paths.length > 1
            ? h("details", {}, h("summary", {}, `${paths.length} lists`), h("ul", { class: "mono" }, paths.map((path) => h("li", {}, path))))
            : null,
        ),
      ),
    ),
  );
}

/** Each pod's usage, by `namespace/name`. */
function metricsByPod(statuses: PodStatus[]): Map<string, PodStatus> {
  return new Map(statuses.map((status) => [`${status.pod.metadata?.namespace}/${status.pod.metadata?.name}`, status]));
}

/**
 * Usage against what the pod spec declares: a bar of usage over the limit
 * (or the request, without a limit), and the figures.
 */
function usageCell(
  usage: { currentUsage: number | string; requestTotal: number | string; limitTotal: number | string },
  format: (value: number) => string,
  testId: string,
): HTMLElement {
  const current = numeric(usage.currentUsage);
  const request = numeric(usage.requestTotal);
  const limit = numeric(usage.limitTotal);
  const ceiling = limit > 0 ? limit : request;
  const share = ceiling > 0 ? Math.min(1, current / ceiling) : 0;
  const tone: Tone = share >= 0.9 ? "bad" : share >= 0.7 ? "warn" : "ok";
  const label = `${format(current)} used, request ${request > 0 ? format(request) : "none"}, limit ${limit > 0 ? format(limit) : "none"}`;
  return h(
    "div",
    { class: "usage", "data-testid": testId, title: label },
    h("span", { class: "usage-figures" }, h("strong", {}, format(current)), h("span", { class: "muted" }, " used")),
    h(
      "span",
      { class: `usage-bar usage-${tone}`, role: "meter", "aria-label": label, "aria-valuemin": 0, "aria-valuemax": 100, "aria-valuenow": Math.round(share * 100) },
      h("span", { style: `width: ${Math.max(share * 100, current > 0 ? 2 : 0).toFixed(1)}%` }),
    ),
    h("span", { class: "usage-figures muted small" }, `req ${request > 0 ? format(request) : "–"} · lim ${limit > 0 ? format(limit) : "–"}`),
  );
}

/**
 * Pods with their status, CPU and memory when the cluster reports metrics,
 * and buttons for their log, a terminal and their events.
 */
export function podTable(cluster: string, pods: KubernetesObject[], actions: PodActions, metrics?: Map<string, PodStatus>): HTMLElement {
  const withMetrics = metrics !== undefined && metrics.size > 0;
  return h(
    "div",
    { class: "table-scroll" },
    table(
      ["Name", "Status", "Ready", "Restarts", ...(withMetrics ? ["CPU", "Memory"] : []), "Age", ""],
      pods.map((pod) => {
        const status = podStatus(pod);
        const name = pod.metadata?.name ?? "";
        const namespace = pod.metadata?.namespace ?? "";
        const usage = metrics?.get(`${namespace}/${name}`);
        const target = { cluster, namespace, pod: name, container: firstContainer(pod) };
        const button = (testId: string, label: string, onclick: () => void) =>
          h("button", { type: "button", class: "button button-small", "data-testid": testId, "data-pod": name, onclick }, label);
        return [
          h(
            "div",
            { class: "name-cell" },
            h("span", { class: "mono", "data-testid": "pod-name" }, name),
            h("span", { class: "muted small", "data-testid": "pod-namespace" }, namespace),
          ),
          badge(status.label, status.tone, "pod-status"),
          podReady(pod),
          podRestarts(pod),
          ...(withMetrics
            ? [
                usage ? usageCell(usage.cpu, cores, "pod-cpu") : h("span", { class: "muted" }, "–"),
                usage ? usageCell(usage.memory, bytes, "pod-memory") : h("span", { class: "muted" }, "–"),
              ]
            : []),
          age(pod.metadata?.creationTimestamp),
          h(
            "div",
            { class: "row-actions" },
            button("follow-logs", "Logs", () => actions.openLogs(target)),
            button("open-terminal", "Terminal", () => actions.openTerminal(target)),
            button("show-events", "Events", () => actions.showEvents({ cluster, namespace, kind: "Pod", name })),
          ),
        ];
      }),
      "pods",
    ),
  );
}
