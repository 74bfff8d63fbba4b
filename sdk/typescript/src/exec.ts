/**
 * Exec sessions over a WebSocket, as a browser opens them: a one-time ticket
 * proves the portal identity (browsers cannot set headers on a WebSocket),
 * and the Kubernetes channel protocol `v5.channel.k8s.io` carries the
 * streams. Every binary message starts with its channel byte.
 */

/** The subprotocol the session speaks. */
export const EXEC_PROTOCOL = "v5.channel.k8s.io";

/** The channel bytes of the Kubernetes channel protocol. */
export const ExecChannel = {
  stdin: 0,
  stdout: 1,
  stderr: 2,
  /** A `Status` object: how the command ended. */
  error: 3,
  /** `{"Width": columns, "Height": rows}` (with a tty). */
  resize: 4,
  /** v5: `[255, channel]` closes that stream (stdin: end of input). */
  close: 255,
} as const;

/** How the command ended, from the status channel. */
export interface ExecStatus {
  status: "Success" | "Failure";
  message?: string;
  /** E.g. `NonZeroExitCode`. */
  reason?: string;
  /** The exit code, when the command ran and exited with one (0 on success). */
  exitCode?: number;
}

/** How the session ended. */
export interface ExecResult {
  /** The status the cluster sent; missing when the socket closed without one. */
  status?: ExecStatus;
  /** The WebSocket close code (1000 normal, 1006 dropped, ...). */
  closeCode: number;
  closeReason: string;
}

/** The parts of a WebSocket the session uses: the browser's, or `ws` in Node. */
export interface ExecSocket {
  binaryType: string;
  readonly protocol: string;
  readonly readyState: number;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onerror: ((event: unknown) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  send(data: Uint8Array | string): void;
  close(code?: number, reason?: string): void;
}

/** A WebSocket constructor: `globalThis.WebSocket`, or `ws`'s in Node. */
export type ExecSocketConstructor = new (url: string, protocols: string | string[]) => ExecSocket;

export interface ExecOptions {
  /** The command and its arguments, e.g. `["/bin/sh"]`. */
  command: string[];
  /** The container; required by Kubernetes when the pod has more than one. */
  container?: string;
  /** Allocate a terminal: output is one stream, and `resize` works. */
  tty?: boolean;
  /** Send input (default true). */
  stdin?: boolean;
  /**
   * Output as it arrives (already decoded from the channel protocol). Given
   * before the socket opens, so nothing the command writes first is missed.
   */
  onOutput?: (data: Uint8Array, stream: "stdout" | "stderr") => void;
  /**
   * A token for the cluster itself, sent as the
   * `base64url.bearer.authorization.k8s.io.` subprotocol (clusters whose
   * authProvider takes the caller's own token).
   */
  clusterToken?: string;
  /** The WebSocket to use; defaults to `globalThis.WebSocket`. */
  WebSocket?: ExecSocketConstructor;
}

const OPEN = 1;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** An open exec session. Create one with `client.exec(...)`. */
export class ExecSession {
  /** Settles when the socket closes, with the command's status if it sent one. */
  readonly closed: Promise<ExecResult>;
  private status: ExecStatus | undefined;

  /** @internal Wraps a socket that has just opened. */
  constructor(
    private readonly socket: ExecSocket,
    onOutput: ExecOptions["onOutput"],
  ) {
    socket.binaryType = "arraybuffer";
    socket.onmessage = (event) => {
      const frame = toBytes(event.data);
      if (!frame || frame.length === 0) return;
      const payload = frame.subarray(1);
      switch (frame[0]) {
        case ExecChannel.stdout:
          onOutput?.(payload, "stdout");
          break;
        case ExecChannel.stderr:
          onOutput?.(payload, "stderr");
          break;
        case ExecChannel.error:
          this.status = parseStatus(payload);
          break;
      }
    };
    this.closed = new Promise((resolve) => {
      socket.onclose = (event) => resolve({ status: this.status, closeCode: event.code, closeReason: event.reason });
    });
  }

  /** Whether the socket is still open. */
  get open(): boolean {
    return this.socket.readyState === OPEN;
  }

  /** Sends input (text is sent as UTF-8). */
  write(data: string | Uint8Array): void {
    const bytes = typeof data === "string" ? encoder.encode(data) : data;
    this.sendFrame(ExecChannel.stdin, bytes);
  }

  /** Tells the terminal its size (with a tty). */
  resize(columns: number, rows: number): void {
    this.sendFrame(ExecChannel.resize, encoder.encode(JSON.stringify({ Width: columns, Height: rows })));
  }

  /** Ends the input (v5), as Ctrl-D at a terminal does for most programs. */
  closeStdin(): void {
    if (this.open) this.socket.send(Uint8Array.of(ExecChannel.close, ExecChannel.stdin));
  }

  /** Closes the socket; the command is ended by the cluster. */
  close(): void {
    this.socket.close(1000, "");
  }

  private sendFrame(channel: number, payload: Uint8Array): void {
    if (!this.open) return;
    const frame = new Uint8Array(payload.length + 1);
    frame[0] = channel;
    frame.set(payload, 1);
    this.socket.send(frame);
  }
}

/** Opens `url` and resolves once it is open, or rejects when it fails to. */
export function openExecSession(url: string, protocols: string[], options: ExecOptions): Promise<ExecSession> {
  const Socket = options.WebSocket ?? (globalThis as { WebSocket?: ExecSocketConstructor }).WebSocket;
  if (!Socket) throw new Error("no WebSocket: pass options.WebSocket (e.g. the ws package in Node)");
  const socket = new Socket(url, protocols);
  return new Promise((resolve, reject) => {
    // The session's handlers are set as soon as it opens, before any message.
    socket.onopen = () => {
      socket.onerror = null;
      resolve(new ExecSession(socket, options.onOutput));
    };
    socket.onerror = () => {
      reject(new Error("the exec WebSocket could not be opened (the ticket may be spent or expired, or the pod gone)"));
    };
    socket.onclose = (event) => {
      reject(new Error(`the exec WebSocket closed before it opened (${event.code}${event.reason ? `: ${event.reason}` : ""})`));
    };
  });
}

/** The subprotocols to offer: the channel protocol, and the cluster token if any. */
export function execProtocols(clusterToken: string | undefined): string[] {
  const protocols = [EXEC_PROTOCOL];
  if (clusterToken !== undefined) {
    protocols.unshift(`base64url.bearer.authorization.k8s.io.${base64Url(clusterToken)}`);
  }
  return protocols;
}

function base64Url(text: string): string {
  let binary = "";
  for (const byte of encoder.encode(text)) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function toBytes(data: unknown): Uint8Array | undefined {
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  return undefined;
}

/** The status channel's `Status`, with the exit code read from its causes. */
export function parseStatus(payload: Uint8Array): ExecStatus {
  let body: {
    status?: string;
    message?: string;
    reason?: string;
    details?: { causes?: Array<{ reason?: string; message?: string }> };
  };
  try {
    body = JSON.parse(decoder.decode(payload)) as typeof body;
  } catch {
    // channel.k8s.io (v1) sends a plain message, and only on failure.
    return { status: "Failure", message: decoder.decode(payload) };
  }
  if (body.status === "Success") return { status: "Success", exitCode: 0 };
  const cause = body.details?.causes?.find((candidate) => candidate.reason === "ExitCode");
  const exitCode = cause?.message !== undefined ? Number.parseInt(cause.message, 10) : Number.NaN;
  return {
    status: "Failure",
    message: body.message,
    reason: body.reason,
    ...(Number.isNaN(exitCode) ? {} : { exitCode }),
  };
}
