import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['**/*.test.ts'],
    exclude: ['node_modules/**'],
    testTimeout: 120_000,
    coverage: {
      provider: 'v8',
      include: ['impl/**/*.ts', 'model/**/*.ts', 'properties/**/*.ts', 'conformance/**/*.ts', 'reports/**/*.ts', 'cli/**/*.ts'],
      exclude: ['**/*.test.ts'],
      reporter: ['text', 'json-summary', 'html'],
      reportsDirectory: 'coverage',
      reportOnFailure: true,
    },
  },
});
