#!/usr/bin/env node
// Runs the compiled test files (dist/test/**/*.test.js) with node's test runner,
// the Node 20 polyfill loaded first. Usage: run-tests.mjs [unit|integration|e2e|PATH-FRAGMENT ...]
import { readdirSync, statSync } from 'node:fs'
import { join, relative } from 'node:path'
import { spawnSync } from 'node:child_process'

const root = new URL('..', import.meta.url).pathname
const testDir = join(root, 'dist', 'test')

function walk (dir) {
  const out = []
  for (const name of readdirSync(dir)) {
    const p = join(dir, name)
    if (statSync(p).isDirectory()) out.push(...walk(p))
    else if (name.endsWith('.test.js')) out.push(p)
  }
  return out
}

const filters = process.argv.slice(2)
// unit first, then integration, then end to end: cheap failures show first
const order = (f) => ['/unit/', '/integration/', '/e2e/', '/bench/'].findIndex(k => f.includes(k))
const files = walk(testDir)
  .filter(f => filters.length === 0 || filters.some(x => relative(testDir, f).includes(x)))
  .sort((a, b) => order(a) - order(b) || a.localeCompare(b))

if (files.length === 0) {
  console.error('run-tests: no test files matched')
  process.exit(1)
}

const res = spawnSync(process.execPath, [
  '--import', join(root, 'dist', 'shared', 'polyfill.js'),
  '--test',
  '--test-concurrency=1',
  '--test-timeout=600000',
  ...files
], { stdio: 'inherit', cwd: root })
process.exit(res.status ?? 1)
