/** Turning Kubernetes objects and errors into what people read. */
import { KubeportalError, type KubernetesObject } from "@kubeportal/sdk";

export type Tone = "ok" | "warn" | "bad" | "neutral";

interface ContainerStatus {
  name?: string;
  ready?: boolean;
  restartCount?: number;
  state?: { waiting?: { reason?: string }; terminated?: { reason?: string } };
}

interface PodFields {
  spec?: { containers?: Array<{ name?: string }> };
  status?: { phase?: string; containerStatuses?: ContainerStatus[] };
}

interface DeploymentFields {
  spec?: { replicas?: number };
  status?: { replicas?: number; readyReplicas?: number; updatedReplicas?: number; availableReplicas?: number };
}

/** The status kubectl would show for a pod, and how worrying it is. */
export function podStatus(pod: KubernetesObject): { label: string; tone: Tone } {
  const { status } = pod as PodFields;
  if (pod.metadata?.deletionTimestamp) return { label: "Terminating", tone: "warn" };
  for (const container of status?.containerStatuses ?? []) {
    const reason = container.state?.waiting?.reason ?? container.state?.terminated?.reason;
    if (reason) return { label: reason, tone: reason === "Completed" ? "neutral" : "bad" };
  }
  const phase = status?.phase ?? "Unknown";
  const tone: Tone =
    phase === "Running" ? "ok" : phase === "Pending" ? "warn" : phase === "Succeeded" ? "neutral" : "bad";
  return { label: phase, tone };
}

/** Ready containers over containers, e.g. `1/1`. */
export function podReady(pod: KubernetesObject): string {
  const { spec, status } = pod as PodFields;
  const statuses = status?.containerStatuses ?? [];
  const total = spec?.containers?.length ?? statuses.length;
  return `${statuses.filter((container) => container.ready).length}/${total}`;
}

export function podRestarts(pod: KubernetesObject): number {
  const { status } = pod as PodFields;
  return (status?.containerStatuses ?? []).reduce((sum, container) => sum + (container.restartCount ?? 0), 0);
}

/** The container to read logs from (the first one). */
export function firstContainer(pod: KubernetesObject): string | undefined {
  return (pod as PodFields).spec?.containers?.[0]?.name;
}

/** Ready over desired replicas, and whether that is all of them. */
export function deploymentReady(deployment: KubernetesObject): { label: string; tone: Tone } {
  const { spec, status } = deployment as DeploymentFields;
  const desired = spec?.replicas ?? status?.replicas ?? 0;
  const ready = status?.readyReplicas ?? 0;
  return { label: `${ready}/${desired}`, tone: ready >= desired ? "ok" : ready > 0 ? "warn" : "bad" };
}

export function deploymentCounts(deployment: KubernetesObject): { updated: number; available: number } {
  const { status } = deployment as DeploymentFields;
  return { updated: status?.updatedReplicas ?? 0, available: status?.availableReplicas ?? 0 };
}

/** "3m", "2h", "5d" since a timestamp. */
export function age(timestamp: string | undefined, now = Date.now()): string {
  if (!timestamp) return "–";
  const seconds = Math.max(0, Math.floor((now - Date.parse(timestamp)) / 1000));
  if (Number.isNaN(seconds)) return "–";
  if (seconds < 60) return `${seconds}s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m`;
  if (seconds < 86_400) return `${Math.floor(seconds / 3600)}h`;
  return `${Math.floor(seconds / 86_400)}d`;
}

/** A title and a sentence for any error, for an alert. */
export function describeError(error: unknown): { title: string; detail: string } {
  if (error instanceof KubeportalError) {
    const hints: Record<string, string> = {
      AuthenticationError: "Your token was not accepted. Sign in again with a valid token.",
      NotAllowedError: "The portal's policy does not allow this for you.",
    };
    const hint = hints[error.name];
    return { title: `${error.name} (${error.status})`, detail: hint ? `${error.message}. ${hint}` : error.message };
  }
  if (error instanceof Error) return { title: "Request failed", detail: error.message };
  return { title: "Request failed", detail: String(error) };
}

/** CPU in cores as people write it: `5m`, `250m`, `1.5`. */
export function cores(value: number): string {
  if (!Number.isFinite(value) || value <= 0) return "0";
  if (value < 1) return `${Math.max(1, Math.round(value * 1000))}m`;
  return `${Number(value.toFixed(2))}`;
}

/** Memory in bytes as people write it: `32Mi`, `1.5Gi`. */
export function bytes(value: number): string {
  if (!Number.isFinite(value) || value <= 0) return "0";
  const units = ["", "Ki", "Mi", "Gi", "Ti"];
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${Number(value.toFixed(value < 10 ? 1 : 0))}${units[unit]}`;
}

/** A number from a Backstage usage field, which may come as a string. */
export function numeric(value: number | string | undefined): number {
  if (typeof value === "number") return value;
  const parsed = Number.parseFloat(value ?? "");
  return Number.isNaN(parsed) ? 0 : parsed;
}

/** The reason a policy gave for a denial (`Unauthorized: <reason>`), if it gave one. */
export function denialReason(message: string): string | undefined {
  const match = /^Unauthorized: (.+)$/s.exec(message);
  return match?.[1];
}

/** "2026-01-01 12:00:05" in the page's time zone. */
export function dateTime(timestamp: string): string {
  const date = new Date(timestamp);
  if (Number.isNaN(date.getTime())) return timestamp;
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
}
