/** A catalog entity's workloads on every cluster, by kubernetes-id. */
import type {
  CatalogEntity,
  ClusterObjects,
  KubeportalClient,
  KubernetesFetchError,
  KubernetesObject,
} from "@kubeportal/sdk";
import { h, replace } from "./dom.js";
import { age, deploymentCounts, deploymentReady, firstContainer, podReady, podRestarts, podStatus } from "./format.js";
import type { LogTarget } from "./logs.js";
import { badge, empty, errorAlert, loading, table } from "./ui.js";

export interface WorkloadsContext {
  client: KubeportalClient;
  openLogs(target: LogTarget): void;
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
    pattern: "[A-Za-z0-9][A-Za-z0-9._-]*",
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
      entry.errors.length > 0 ? badge(`${entry.errors.length} error${entry.errors.length === 1 ? "" : "s"}`, "bad") : null,
      cluster.dashboardUrl ? h("a", { href: cluster.dashboardUrl, target: "_blank", rel: "noreferrer" }, "Dashboard") : null,
    ),
    entry.errors.length > 0 ? errorList(entry.errors) : null,
    deployments.length > 0
      ? h(
          "div",
          {},
          h("h4", {}, "Deployments"),
          table(
            ["Name", "Namespace", "Ready", "Up-to-date", "Available", "Age"],
            deployments.map((deployment) => {
              const ready = deploymentReady(deployment);
              const counts = deploymentCounts(deployment);
              return [
                h("span", { class: "mono" }, deployment.metadata?.name ?? ""),
                deployment.metadata?.namespace ?? "",
                badge(ready.label, ready.tone),
                counts.updated,
                counts.available,
                age(deployment.metadata?.creationTimestamp),
              ];
            }),
            "deployments",
          ),
        )
      : null,
    pods.length > 0
      ? h("div", {}, h("h4", {}, "Pods"), podTable(cluster.name, pods, context.openLogs))
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

/** Pods with their status and a button to follow their log. */
export function podTable(cluster: string, pods: KubernetesObject[], openLogs: (target: LogTarget) => void): HTMLElement {
  return table(
    ["Name", "Namespace", "Status", "Ready", "Restarts", "Age", ""],
    pods.map((pod) => {
      const status = podStatus(pod);
      const name = pod.metadata?.name ?? "";
      const namespace = pod.metadata?.namespace ?? "";
      return [
        h("span", { class: "mono", "data-testid": "pod-name" }, name),
        namespace,
        badge(status.label, status.tone, "pod-status"),
        podReady(pod),
        podRestarts(pod),
        age(pod.metadata?.creationTimestamp),
        h(
          "button",
          {
            type: "button",
            class: "button button-small",
            "data-testid": "follow-logs",
            "data-pod": name,
            onclick: () => openLogs({ cluster, namespace, pod: name, container: firstContainer(pod) }),
          },
          "Follow logs",
        ),
      ];
    }),
    "pods",
  );
}
