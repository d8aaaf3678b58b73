// Vite multi-page build of the command client into dist/ (embedded by
// embed.go). dist/.keep is rewritten after each build so the Go embed
// compiles on a fresh clone.
import { defineConfig } from 'vite'
import { resolve } from 'node:path'
import { writeFileSync } from 'node:fs'

const root = import.meta.dirname

export default defineConfig({
  base: '/',
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    chunkSizeWarningLimit: 2000,
    rollupOptions: {
      input: {
        index: resolve(root, 'index.html'),
        planner: resolve(root, 'planner.html'),
        field: resolve(root, 'field.html'),
      },
    },
  },
  plugins: [{
    name: 'keep-dist-keep',
    closeBundle() { writeFileSync(resolve(root, 'dist/.keep'), '') },
  }],
  test: { include: ['test/**/*.test.js'], environment: 'node' },
})
