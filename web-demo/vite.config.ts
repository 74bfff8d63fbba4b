import { defineConfig } from "vite";

/** Where `npm run dev` sends `/api` (a running kubeportal). */
const portal = process.env.KUBEPORTAL_URL ?? "http://127.0.0.1:7007";

export default defineConfig({
  // Served by kubeportal at `/` (server.webRoot), or by `vite` in development.
  base: "/",
  server: {
    proxy: {
      "/api": { target: portal, changeOrigin: false, ws: true },
    },
  },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    sourcemap: true,
  },
});
