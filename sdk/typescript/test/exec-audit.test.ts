/**
 * Browser-style exec (a ticket, then the v5 channel protocol over a
 * WebSocket: `ws` here, the browser's own in the web demo), the audit trail
 * and session recordings, against the live kubeportal of global-setup (every
 * session recorded; only admins read the audit trail; the viewer is denied
 * exec by a described rule).
 */
import { describe, expect, inject, it } from "vitest";
import WebSocket from "ws";
import {
  createClient,
  KubeportalError,
  parseStatus,
  type ExecResult,
  type ExecSession,
  type ExecSocketConstructor,
  type ExecTarget,
  type StoredAuditRecord,
} from "../src/index.js";
import { CLUSTER, DEMO, EXEC_DENIED_REASON, TOKENS } from "./support/portal.js";

const baseUrl = inject("portalUrl");
const admin = createClient({ baseUrl, getToken: () => TOKENS.admin });
const viewer = createClient({ baseUrl, getToken: () => TOKENS.viewer });
const guest = createClient({ baseUrl });
const target: ExecTarget = { cluster: CLUSTER, namespace: DEMO.namespace, pod: DEMO.pods[0] };
const Socket = WebSocket as unknown as ExecSocketConstructor;

/** A session whose output is collected as text. */
async function open(command: string[], tty: boolean): Promise<{ session: ExecSession; output: () => string; stderr: () => string }> {
  let stdout = "";
  let stderr = "";
  const decoder = new TextDecoder();
  const session = await admin.exec(target, {
    command,
    tty,
    WebSocket: Socket,
    onOutput: (data, stream) => {
      if (stream === "stdout") stdout += decoder.decode(data, { stream: true });
      else stderr += decoder.decode(data);
    },
  });
  return { session, output: () => stdout, stderr: () => stderr };
}

async function until(condition: () => boolean | Promise<boolean>, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((wait) => setTimeout(wait, 50));
  }
}

async function rejection(promise: Promise<unknown>): Promise<KubeportalError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(KubeportalError);
    return error as KubeportalError;
  }
  throw new Error("expected the call to fail");
}

describe("exec over a WebSocket with a ticket", () => {
  it("issues a one-time ticket for a pod's exec, and only for sessions", async () => {
    const issued = await admin.ticket(CLUSTER, `/api/v1/namespaces/${DEMO.namespace}/pods/${DEMO.pods[0]}/exec`);
    expect(issued.ticket).toMatch(/^kt1\./);
    expect(issued.expiresInSeconds).toBe(30);
    const notASession = await rejection(admin.ticket(CLUSTER, `/api/v1/namespaces/${DEMO.namespace}/pods`));
    expect(notASession).toMatchObject({ name: "InputError", status: 400 });
  });

  it("runs a command and reports how it ended", async () => {
    const { session, output } = await open(["echo", "hello", "from", "node"], false);
    const result = await session.closed;
    expect(output()).toBe("hello from node\n");
    expect(result).toMatchObject({ status: { status: "Success", exitCode: 0 }, closeCode: 1000 });
  });

  it("drives an interactive shell with a tty: echo, resize, exit code", async () => {
    const { session, output } = await open(["/bin/sh"], true);
    await until(() => output() === "$ ", "the prompt");
    session.write("echo hello-from-node\r");
    await until(() => output().includes("hello-from-node\r\n$ "), "the echo");
    expect(output()).toBe("$ echo hello-from-node\r\nhello-from-node\r\n$ ");

    session.resize(100, 40);
    session.write("stty size\r");
    await until(() => output().includes("40 100\r\n"), "stty size");

    session.write("exit 3\r");
    const result: ExecResult = await session.closed;
    expect(result.status).toMatchObject({ status: "Failure", reason: "NonZeroExitCode", exitCode: 3 });
  });

  it("ends the shell when stdin closes", async () => {
    const { session, output } = await open(["sh"], false);
    session.write("echo one\nno-such-command\n");
    await until(() => output() === "one\n", "the first line");
    session.closeStdin();
    const result = await session.closed;
    expect(result.status).toMatchObject({ status: "Failure", exitCode: 127 });
  });

  it("shows the deny rule's description to a caller the policy refuses", async () => {
    const denied = await rejection(viewer.exec(target, { command: ["/bin/sh"], tty: true, WebSocket: Socket }));
    expect(denied).toMatchObject({ name: "NotAllowedError", status: 403 });
    expect(denied.message).toBe(`Unauthorized: ${EXEC_DENIED_REASON}`);
  });

  it("reads the exit code from the status channel", () => {
    const encode = (value: unknown) => new TextEncoder().encode(JSON.stringify(value));
    expect(parseStatus(encode({ status: "Success" }))).toEqual({ status: "Success", exitCode: 0 });
    expect(
      parseStatus(
        encode({ status: "Failure", reason: "NonZeroExitCode", message: "m", details: { causes: [{ reason: "ExitCode", message: "2" }] } }),
      ),
    ).toEqual({ status: "Failure", reason: "NonZeroExitCode", message: "m", exitCode: 2 });
    expect(parseStatus(new TextEncoder().encode("plain failure"))).toEqual({ status: "Failure", message: "plain failure" });
  });
});

describe("audit trail and recordings", () => {
  it("lists an exec session with its recording, filters and pages, and replays it", async () => {
    const since = new Date();
    const marker = `audited-${Date.now().toString(36)}`;
    const { session, output } = await open(["/bin/sh"], true);
    await until(() => output().endsWith("$ "), "the prompt");
    session.write(`echo ${marker}\r`);
    await until(() => output().includes(`${marker}\r\n$ `), "the echo");
    session.write("exit\r");
    await session.closed;

    // The session's record is written when it ends, in a batch.
    let record: StoredAuditRecord | undefined;
    await until(async () => {
      const page = await admin.audit({ cluster: CLUSTER, subject: "user:default/admin", status: 101, since });
      // The shell with a tty: this test's session (an earlier test's may end within the window too).
      record = page.items.find((item) => item.query?.includes("command=%2Fbin%2Fsh") && item.query.includes("tty=true"));
      return record !== undefined;
    }, "the session's audit record");
    expect(record).toMatchObject({
      method: "GET",
      status: 101,
      cluster: CLUSTER,
      decision: "allow",
      verb: "create",
      path: `/api/v1/namespaces/${DEMO.namespace}/pods/${DEMO.pods[0]}/exec`,
    });
    expect(record?.recording).toBeTruthy();
    // The cluster never saw the ticket.
    expect(record?.query).toContain("command=%2Fbin%2Fsh");
    expect(record?.query).not.toContain("ticket");

    // Filters: another subject sees none of it.
    const others = await admin.audit({ subject: "user:default/nobody", since });
    expect(others.items).toEqual([]);

    // Paging: one record a page, newest first, no record twice.
    const first = await admin.audit({ limit: 1 });
    expect(first.items).toHaveLength(1);
    expect(first.nextCursor).toBeTypeOf("number");
    const second = await admin.audit({ limit: 1, cursor: first.nextCursor ?? undefined });
    expect(second.items).toHaveLength(1);
    expect(second.items[0]!.id).toBeLessThan(first.items[0]!.id);

    const recordings = await admin.recordings({ cluster: CLUSTER, subject: "user:default/admin", since });
    const info = recordings.items.find((item) => item.id === record?.recording);
    expect(info).toMatchObject({ cluster: CLUSTER, protocol: "websocket", truncated: false });

    const cast = await admin.recording(record!.recording!);
    const [header, ...events] = cast.trim().split("\n");
    expect(JSON.parse(header!)).toMatchObject({ version: 2 });
    const printed = events
      .map((line) => JSON.parse(line) as [number, string, string])
      .filter(([, code]) => code === "o")
      .map(([, , data]) => data)
      .join("");
    expect(printed).toContain(`${marker}\r\n`);
  });

  it("is for admins only", async () => {
    expect(await rejection(viewer.audit())).toMatchObject({ name: "NotAllowedError", status: 403 });
    expect(await rejection(guest.recordings())).toMatchObject({ status: 403 });
    expect(await rejection(admin.recording("no-such-recording"))).toMatchObject({ status: 404 });
  });
});
