import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["e2e/**/*.e2e.test.ts"],
    // The first run may compile the Rust binaries before starting kubeportal.
    hookTimeout: 600_000,
    testTimeout: 30_000,
  },
});
