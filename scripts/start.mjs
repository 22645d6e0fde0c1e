#!/usr/bin/env node
// `npm start`: build if needed, then run a supernode and a dfdaemon together on
// this host with the default ports and data under ./data. Flags after `--` go
// to the dfdaemon; --registry-endpoint, --insecure-registry and --log-level go
// to both. Ctrl-C stops both cleanly.
import { spawn, spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, statSync, readdirSync } from 'node:fs'
import { join } from 'node:path'

const root = new URL('..', import.meta.url).pathname
const dist = join(root, 'dist')

function newestMtime (dir) {
  let newest = 0
  for (const name of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, name.name)
    if (name.isDirectory()) newest = Math.max(newest, newestMtime(p))
    else if (name.name.endsWith('.ts')) newest = Math.max(newest, statSync(p).mtimeMs)
  }
  return newest
}

const entry = join(dist, 'dfdaemon', 'main.js')
const sourcesNewer = ['shared', 'supernode', 'dfdaemon'].some(d => newestMtime(join(root, d)) > (existsSync(entry) ? statSync(entry).mtimeMs : 0))
if (!existsSync(entry) || sourcesNewer) {
  console.log('start: building…')
  const res = spawnSync('npm', ['run', '-s', 'build'], { cwd: root, stdio: 'inherit' })
  if (res.status !== 0) process.exit(res.status ?? 1)
}

const args = process.argv.slice(2)
const shared = []
for (let i = 0; i < args.length; i++) {
  if (['--registry-endpoint', '--insecure-registry', '--log-level'].includes(args[i]) && i + 1 < args.length) shared.push(args[i], args[i + 1])
}

const data = join(root, 'data')
mkdirSync(data, { recursive: true })
const children = []
function run (name, argv) {
  const child = spawn(process.execPath, [join(dist, name, 'main.js'), ...argv], { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] })
  child.on('exit', (code, signal) => {
    if (!stopping) {
      console.error(`start: ${name} exited (${signal ?? code}); stopping`)
      stop(code ?? 1)
    }
  })
  children.push(child)
}

let stopping = false
function stop (code = 0) {
  if (stopping) return
  stopping = true
  for (const c of children) if (c.exitCode === null) c.kill('SIGTERM')
  const timer = setTimeout(() => { for (const c of children) if (c.exitCode === null) c.kill('SIGKILL') }, 10_000)
  Promise.all(children.map(c => c.exitCode !== null ? null : new Promise(resolve => c.once('exit', resolve))))
    .then(() => { clearTimeout(timer); process.exit(code) })
}
process.on('SIGINT', () => stop(0))
process.on('SIGTERM', () => stop(0))

run('supernode', ['--port', '8002', '--p2p-port', '8003', '--data-dir', join(data, 'supernode'), ...shared])
run('dfdaemon', ['--supernode', 'http://127.0.0.1:8002', '--port', '65001', '--p2p-port', '65002', '--data-dir', join(data, 'dfdaemon'), ...args])
console.log('start: supernode on http://127.0.0.1:8002, dfdaemon mirror on http://127.0.0.1:65001 (Ctrl-C stops both)')
