/**
 * Starts a real kubeportal in front of a Kubernetes API test double
 * (`kube-double --seed-demo`), for the SDK tests, the client-node test and
 * the web demo's browser test.
 *
 * The binaries come from `cargo build -p kubeportal-server -p kube-double`
 * (run here; a no-op when they are up to date), or from `KUBEPORTAL_TEST_BIN_DIR`
 * when set (then nothing is built).
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer as createHttpServer, get as httpGet } from "node:http";
import { get as httpsGet } from "node:https";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../../../..");

/** Static tokens the test portal accepts. */
export const TOKENS = {
  /** `user:default/admin` in `group:default/admins`: may do anything. */
  admin: "kubeportal-admin-token",
  /** `user:default/viewer`: may read, may not manage clusters or write through the proxy. */
  viewer: "kubeportal-viewer-token",
} as const;

/** The cluster every test portal has: the seeded test double. */
export const CLUSTER = "dev";

/** A second cluster whose API server is unreachable (connection refused). */
export const OFFLINE_CLUSTER = "offline";

/**
 * The seeded double again, as a cluster that authenticates each caller with
 * their own OIDC token (provider `okta`): without one it cannot be read.
 */
export const OIDC_CLUSTER = "sso";

/** The seeded double once more, for callers who send any cluster token (`authProvider: client`). */
export const CLIENT_CLUSTER = "byo";

/** What the seeded double holds (see tests/kube-double/src/demo.rs). */
export const DEMO = {
  namespace: "shop",
  kubernetesId: "shop-api",
  pods: ["shop-api-7d9f8b6c5-abcde", "shop-api-7d9f8b6c5-fghij"],
  /** The catalog entity of the demo service, as the test catalog serves it. */
  entityRef: "component:default/shop-api",
  entity: {
    apiVersion: "backstage.io/v1alpha1",
    kind: "Component",
    metadata: { name: "shop-api", namespace: "default", annotations: { "backstage.io/kubernetes-id": "shop-api" } },
    spec: { type: "service", lifecycle: "production", owner: "group:default/team-a" },
  },
} as const;

/** Why the viewer may not open a terminal: the description of the rule that denies it. */
export const EXEC_DENIED_REASON = "Terminals are for the on-call team: ask in #platform for access";

/**
 * The policy: admins manage; the viewer may only read through the proxy (a
 * described rule denies it exec) and may not manage clusters; everyone else
 * (the guest included) may read and proxy. Only admins read the audit trail.
 */
const RULES = [
  { permission: "kubernetes.clusters.manage", subjects: ["group:default/admins"], decision: "allow" },
  { permission: "kubernetes.audit.read", subjects: ["group:default/admins"], decision: "allow" },
  { permission: "kubernetes.audit.read", subjects: ["*"], decision: "deny" },
  {
    permission: "kubernetes.proxy",
    subjects: ["user:default/viewer"],
    actions: ["exec"],
    decision: "deny",
    description: EXEC_DENIED_REASON,
  },
  { permission: "kubernetes.clusters.manage", subjects: ["*"], decision: "deny" },
  { permission: "kubernetes.proxy", subjects: ["user:default/viewer"], actions: ["read"], decision: "allow" },
  { permission: "kubernetes.proxy", subjects: ["user:default/viewer"], decision: "deny" },
  { permission: "*", subjects: ["*"], decision: "allow" },
];

export interface PortalOptions {
  /** Serve this directory (a built web demo) at `/`. */
  webRoot?: string;
  /**
   * Serve HTTPS with a self-signed certificate for 127.0.0.1 (made with
   * `openssl`), which the served kubeconfig then trusts.
   */
  tls?: boolean;
  /**
   * Instead of the seeded double and its clusters (`dev`, `sso`, `byo`,
   * `offline`): one empty test double per name, each registered as a cluster
   * of that name (`serviceAccount`, token `double-token`).
   */
  clusters?: string[];
}

export interface RunningPortal {
  /** kubeportal's base URL, e.g. `http://127.0.0.1:41234`. */
  url: string;
  /** The test double's URL (HTTPS). */
  doubleUrl: string;
  /** With `tls`, the certificate (PEM) clients must trust. */
  caPem?: string;
  /** Stops both processes and removes their files. */
  stop(): Promise<void>;
}

/** Where the binaries are, building them first unless `KUBEPORTAL_TEST_BIN_DIR` is set. */
export function ensureBinaries(): { kubeportal: string; kubeDouble: string } {
  const given = process.env.KUBEPORTAL_TEST_BIN_DIR;
  if (!given) {
    const build = spawnSync("cargo", ["build", "--quiet", "-p", "kubeportal-server", "-p", "kube-double"], {
      cwd: REPO_ROOT,
      stdio: ["ignore", "inherit", "inherit"],
    });
    if (build.status !== 0) {
      throw new Error(`cargo build failed (${build.error?.message ?? `exit ${build.status}`})`);
    }
  }
  const dir = given ? resolve(given) : join(process.env.CARGO_TARGET_DIR ?? join(REPO_ROOT, "target"), "debug");
  return { kubeportal: join(dir, "kubeportal"), kubeDouble: join(dir, "kube-double") };
}

/** A free loopback port (released just before kubeportal binds it). */
async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolvePort(port));
    });
  });
}

/** The environment for child processes, without anything that would override their configuration. */
function childEnvironment(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (key.startsWith("KUBEPORTAL_") || key === "DATABASE_URL") continue;
    env[key] = value;
  }
  env.RUST_LOG = process.env.KUBEPORTAL_TEST_LOG ?? "warn";
  env.RUST_BACKTRACE = "0";
  return env;
}

/**
 * A Backstage catalog stand-in: serves {@link DEMO}'s entity at
 * `/api/catalog/entities/by-name/component/default/shop-api`.
 */
async function startCatalog(): Promise<{ url: string; close(): Promise<void> }> {
  const entityPath = "/api/catalog/entities/by-name/component/default/shop-api";
  const server = createHttpServer((request, response) => {
    const found = request.method === "GET" && request.url === entityPath;
    response.writeHead(found ? 200 : 404, { "Content-Type": "application/json" });
    response.end(JSON.stringify(found ? DEMO.entity : { error: { name: "NotFoundError", message: "no such entity" } }));
  });
  await new Promise<void>((listening) => server.listen(0, "127.0.0.1", listening));
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : 0;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => new Promise((closed) => server.close(() => closed())),
  };
}

/** Collects a child's stderr, to explain a failure. */
function captureOutput(child: ChildProcess): () => string {
  let output = "";
  child.stderr?.on("data", (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-8000);
  });
  return () => output;
}

async function startDouble(
  binary: string,
  dir: string,
  name = "double",
  seed = true,
): Promise<{ child: ChildProcess; url: string; caPem: string }> {
  const caFile = join(dir, `${name}-ca.pem`);
  const args = ["--listen", "127.0.0.1:0", "--ca-out", caFile, "--metrics-api", ...(seed ? ["--seed-demo"] : [])];
  const child = spawn(binary, args, {
    env: childEnvironment(),
    stdio: ["ignore", "pipe", "pipe"],
  });
  const output = captureOutput(child);
  const url = await new Promise<string>((resolveUrl, reject) => {
    const lines = createInterface({ input: child.stdout! });
    lines.once("line", (line) => resolveUrl(line.trim()));
    child.once("exit", (code) => reject(new Error(`kube-double exited (${code}): ${output()}`)));
  });
  return { child, url, caPem: readFileSync(caFile, "utf8") };
}

/** A self-signed certificate and key for 127.0.0.1 and localhost. */
function selfSignedCertificate(dir: string): { certFile: string; keyFile: string } {
  const certFile = join(dir, "tls.crt");
  const keyFile = join(dir, "tls.key");
  const made = spawnSync(
    "openssl",
    [
      "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
      "-keyout", keyFile, "-out", certFile, "-days", "2", "-subj", "/CN=kubeportal test",
      "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
    ],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  if (made.status !== 0) {
    throw new Error(`openssl could not make a test certificate: ${made.error?.message ?? made.stderr}`);
  }
  return { certFile, keyFile };
}

/** Answers whether GET `url` is a 2xx, trusting `caPem` for HTTPS. */
function isOk(url: string, caPem: string | undefined): Promise<boolean> {
  return new Promise((resolveOk) => {
    const request = (url.startsWith("https:") ? httpsGet : httpGet)(url, { ca: caPem }, (response) => {
      response.resume();
      resolveOk((response.statusCode ?? 0) >= 200 && (response.statusCode ?? 0) < 300);
    });
    request.on("error", () => resolveOk(false));
  });
}

async function waitUntilHealthy(url: string, caPem: string | undefined, child: ChildProcess, output: () => string): Promise<void> {
  const deadline = Date.now() + 30_000;
  let exited: number | null = null;
  child.once("exit", (code) => {
    exited = code ?? -1;
  });
  while (Date.now() < deadline) {
    if (exited !== null) throw new Error(`kubeportal exited (${exited}): ${output()}`);
    if (await isOk(`${url}/readyz`, caPem)) return;
    await new Promise((wait) => setTimeout(wait, 100));
  }
  throw new Error(`kubeportal did not become ready at ${url}: ${output()}`);
}

function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((done) => {
    const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
    child.once("exit", () => {
      clearTimeout(timer);
      done();
    });
    child.kill("SIGTERM");
  });
}

/** The clusters of a portal with `options.clusters`: one fresh, empty double each. */
async function emptyDoubles(
  binary: string,
  dir: string,
  names: string[],
  children: ChildProcess[],
): Promise<Array<Record<string, unknown>>> {
  const clusters: Array<Record<string, unknown>> = [];
  for (const name of names) {
    const double = await startDouble(binary, dir, `double-${name}`, false);
    children.push(double.child);
    clusters.push({
      name,
      url: double.url,
      authProvider: "serviceAccount",
      serviceAccountToken: "double-token",
      caData: double.caPem,
    });
  }
  return clusters;
}

/**
 * Starts the seeded test double and a kubeportal with the clusters `dev`,
 * `sso`, `byo` and `offline` (or, with `options.clusters`, one empty double
 * per name).
 */
export async function startPortal(options: PortalOptions = {}): Promise<RunningPortal> {
  const binaries = ensureBinaries();
  const dir = mkdtempSync(join(tmpdir(), "kubeportal-js-"));
  const children: ChildProcess[] = [];
  const closers: Array<() => Promise<void>> = [];
  const stop = async () => {
    await Promise.all([...children.map(stopChild), ...closers.map((close) => close())]);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const double = await startDouble(binaries.kubeDouble, dir);
    children.push(double.child);
    const own = options.clusters
      ? await emptyDoubles(binaries.kubeDouble, dir, options.clusters, children)
      : undefined;

    const catalog = await startCatalog();
    closers.push(catalog.close);

    const port = await freePort();
    const offlinePort = await freePort();
    const tls = options.tls ? selfSignedCertificate(dir) : undefined;
    const config = {
      server: {
        listen: `127.0.0.1:${port}`,
        ...(options.webRoot ? { webRoot: options.webRoot } : {}),
        ...(tls ? { tls: { ...tls, caFile: tls.certFile } } : {}),
      },
      database: { url: `sqlite://${join(dir, "kubeportal.db")}` },
      auth: {
        guest: true,
        staticTokens: [
          { token: TOKENS.admin, subject: "user:default/admin", groups: ["group:default/admins"] },
          { token: TOKENS.viewer, subject: "user:default/viewer", groups: [] },
        ],
      },
      permissions: { rules: RULES },
      // Every exec and attach session is recorded (asciicast, in the database).
      recording: { rules: [{ clusters: ["*"], mode: "best-effort" }] },
      catalog: { baseUrl: catalog.url },
      kubernetes: {
        clusters: own ?? [
          {
            name: CLUSTER,
            title: "Development",
            url: double.url,
            authProvider: "serviceAccount",
            serviceAccountToken: "double-token",
            caData: double.caPem,
          },
          {
            name: OIDC_CLUSTER,
            title: "Single sign-on",
            url: double.url,
            authProvider: "oidc",
            oidcTokenProvider: "okta",
            caData: double.caPem,
          },
          {
            name: CLIENT_CLUSTER,
            title: "Bring your own token",
            url: double.url,
            authProvider: "client",
            caData: double.caPem,
          },
          {
            name: OFFLINE_CLUSTER,
            title: "Offline",
            url: `https://127.0.0.1:${offlinePort}`,
            authProvider: "serviceAccount",
            serviceAccountToken: "double-token",
            caData: double.caPem,
          },
        ],
      },
    };
    // JSON is YAML.
    const configFile = join(dir, "kubeportal.yaml");
    writeFileSync(configFile, JSON.stringify(config, null, 2));

    const portal = spawn(binaries.kubeportal, ["serve", "--config", configFile], {
      env: childEnvironment(),
      stdio: ["ignore", "ignore", "pipe"],
    });
    children.push(portal);
    const caPem = tls ? readFileSync(tls.certFile, "utf8") : undefined;
    const url = `${tls ? "https" : "http"}://127.0.0.1:${port}`;
    await waitUntilHealthy(url, caPem, portal, captureOutput(portal));
    return { url, doubleUrl: double.url, caPem, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}
