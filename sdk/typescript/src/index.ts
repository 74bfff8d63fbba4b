/**
 * @kubeportal/sdk: a typed client for kubeportal.
 *
 * ```ts
 * const portal = createClient({ baseUrl: "https://portal.example", getToken: () => token });
 * const clusters = await portal.clusters();
 * for await (const line of portal.podLogs("prod", "shop", "shop-api-0", { follow: true })) console.log(line);
 * ```
 */
export { createClient, KubeportalClient } from "./client.js";
export type {
  AuditFilters,
  ClientOptions,
  ClusterPageOptions,
  ExecTarget,
  PodLogsOptions,
  ProxyInit,
  VersionedClusterUpdate,
  WatchEvent,
  RecordingFilters,
  WatchOptions,
} from "./client.js";
export { EXEC_PROTOCOL, ExecChannel, ExecSession, parseStatus } from "./exec.js";
export type { ExecOptions, ExecResult, ExecSocket, ExecSocketConstructor, ExecStatus } from "./exec.js";
export { FleetClient, FLEET_CLUSTER_ANNOTATION } from "./fleet.js";
export type {
  FleetClusterStatus,
  FleetItem,
  FleetList,
  FleetListOptions,
  FleetWatchEvent,
  FleetWatchOptions,
} from "./fleet.js";
export { KubeportalError, isErrorResponse } from "./errors.js";
export type { ErrorOrigin } from "./errors.js";
export { readLines } from "./lines.js";
export type * from "./objects.js";
export type * from "./types.js";
export type { components, operations, paths } from "./schema.js";
