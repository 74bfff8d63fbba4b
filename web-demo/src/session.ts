/** Who the demo calls kubeportal as: a portal token, or the guest. */
import { createClient, type KubeportalClient } from "@kubeportal/sdk";

const STORAGE_KEY = "kubeportal-demo.session";

export interface Session {
  /** The portal token, or `null` for the guest. */
  token: string | null;
}

export function loadSession(): Session | null {
  const stored = sessionStorage.getItem(STORAGE_KEY);
  if (stored === null) return null;
  try {
    const parsed = JSON.parse(stored) as Session;
    return { token: typeof parsed.token === "string" && parsed.token ? parsed.token : null };
  } catch {
    return null;
  }
}

export function saveSession(session: Session): void {
  sessionStorage.setItem(STORAGE_KEY, JSON.stringify(session));
}

export function clearSession(): void {
  sessionStorage.removeItem(STORAGE_KEY);
}

/** A client for the kubeportal that serves this page (same origin). */
export function clientFor(session: Session): KubeportalClient {
  return createClient({ baseUrl: "", getToken: () => session.token });
}

/** "Guest", or the token with all but its last characters hidden. */
export function describeSession(session: Session): string {
  if (!session.token) return "Guest";
  return `Token ••••${session.token.slice(-4)}`;
}
