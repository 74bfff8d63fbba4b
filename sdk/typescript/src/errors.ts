import type { ErrorResponse } from "./types.js";

/** Where an error came from: kubeportal itself, or the Kubernetes cluster behind the proxy. */
export type ErrorOrigin = "portal" | "cluster";

/**
 * A non-2xx answer, typed.
 *
 * `name` is the portal's error name (`InputError`, `AuthenticationError`,
 * `NotAllowedError`, `NotFoundError`, `ConflictError`, or a 5xx name such as
 * `BadGatewayError`); for an error a cluster answered (only thrown by the
 * streaming helpers, `podLogs`, `watch` and `fleet.watch`) it is the
 * Kubernetes `Status` reason, e.g. `NotFound`, or `Expired` (410) when a
 * watch's position is gone.
 */
export class KubeportalError extends Error {
  override readonly name: string;
  /** The HTTP status code. */
  readonly status: number;
  readonly origin: ErrorOrigin;
  /** The request as the server reported it (portal errors only). */
  readonly request?: { method: string; url: string };

  constructor(init: {
    name: string;
    status: number;
    message: string;
    origin?: ErrorOrigin;
    request?: { method: string; url: string };
  }) {
    super(init.message);
    this.name = init.name;
    this.status = init.status;
    this.origin = init.origin ?? "portal";
    this.request = init.request;
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Whether `body` is the portal's error envelope. */
export function isErrorResponse(body: unknown): body is ErrorResponse {
  if (!isRecord(body) || !isRecord(body.error) || !isRecord(body.response)) {
    return false;
  }
  return (
    typeof body.error.name === "string" &&
    typeof body.error.message === "string" &&
    typeof body.response.statusCode === "number"
  );
}

interface StatusLike {
  kind: "Status";
  message?: string;
  reason?: string;
  code?: number;
}

function isKubernetesStatus(body: unknown): body is StatusLike {
  return isRecord(body) && body.kind === "Status";
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** The portal error a failed response carries, or `undefined` when its body is not the envelope. */
export async function portalErrorOf(response: Response): Promise<KubeportalError | undefined> {
  const body = parseJson(await response.clone().text());
  if (!isErrorResponse(body)) {
    return undefined;
  }
  return new KubeportalError({
    name: body.error.name,
    status: response.status,
    message: body.error.message,
    origin: "portal",
    request: body.request,
  });
}

/**
 * The error for any failed response: the portal envelope when that is what
 * came back, else a Kubernetes `Status`, else a generic error naming the status.
 */
export async function errorOf(response: Response, origin: ErrorOrigin): Promise<KubeportalError> {
  const text = await response.text();
  const body = parseJson(text);
  if (isErrorResponse(body)) {
    return new KubeportalError({
      name: body.error.name,
      status: response.status,
      message: body.error.message,
      origin: "portal",
      request: body.request,
    });
  }
  if (isKubernetesStatus(body)) {
    return new KubeportalError({
      name: body.reason || "KubernetesError",
      status: response.status,
      message: body.message || `the cluster answered ${response.status}`,
      origin,
    });
  }
  const snippet = text.trim().slice(0, 200);
  return new KubeportalError({
    name: "ResponseError",
    status: response.status,
    message: `${response.status} ${response.statusText}${snippet ? `: ${snippet}` : ""}`.trim(),
    origin,
  });
}
