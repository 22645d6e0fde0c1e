/**
 * Real damselfly processes for end-to-end tests: the built supernode and
 * dfdaemon entry points started as child processes, logs kept in a file,
 * stopped by PID.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { createWriteStream } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { request } from 'undici'
import { freePort } from './ports.js'

const DIST = fileURLToPath(new URL('../../', import.meta.url))
export const SUPERNODE_BIN = join(DIST, 'supernode', 'main.js')
export const DFDAEMON_BIN = join(DIST, 'dfdaemon', 'main.js')

export interface RunningProcess {
  name: string
  child: ChildProcess
  logFile: string
  /** SIGTERM, then SIGKILL after `graceMs`; resolves when the process is gone. */
  stop: (graceMs?: number) => Promise<void>
  /** SIGKILL now. */
  kill: () => Promise<void>
  logs: () => Promise<string>
}

/** A network namespace to run in (see helpers/netns.ts): a command prefix and a way in for the test. */
export interface InNetns { prefix: string[], forward: (port: number) => Promise<string> }

/** `prefix` (e.g. `nsenter --net=...`, which execs: the child's PID is node's) runs it elsewhere; `env` replaces this process's environment. */
export function spawnNode (name: string, entry: string, args: string[], logDir: string, prefix: string[] = [], env?: NodeJS.ProcessEnv): RunningProcess {
  const logFile = join(logDir, `${name}.log`)
  const out = createWriteStream(logFile, { flags: 'a' })
  const argv = [...prefix, process.execPath, ...(process.env.DAMSELFLY_PROF_DIR != null ? ['--cpu-prof', '--cpu-prof-dir', process.env.DAMSELFLY_PROF_DIR] : []), entry, ...args]
  const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], ...(env !== undefined ? { env } : {}) })
  child.stdout?.pipe(out, { end: false })
  child.stderr?.pipe(out, { end: false })
  const exited = new Promise<void>(resolve => { child.once('exit', () => { resolve() }) })
  const gone = (): boolean => child.exitCode !== null || child.signalCode !== null
  return {
    name,
    child,
    logFile,
    async stop (graceMs = 10_000) {
      if (gone()) return
      child.kill('SIGTERM')
      const timer = setTimeout(() => { if (!gone()) child.kill('SIGKILL') }, graceMs)
      await exited
      clearTimeout(timer)
    },
    async kill () {
      if (gone()) return
      child.kill('SIGKILL')
      await exited
    },
    logs: async () => await readFile(logFile, 'utf8').catch(() => '')
  }
}

/** Poll `url` until it answers 200, the process dies, or `attempts` run out. */
export async function waitHealthy (url: string, proc: RunningProcess, attempts = 300): Promise<void> {
  for (let i = 0; i < attempts; i++) {
    if (proc.child.exitCode !== null) throw new Error(`${proc.name} exited with ${proc.child.exitCode}:\n${await proc.logs()}`)
    try {
      const res = await request(url, { signal: AbortSignal.timeout(2000) })
      await res.body.dump()
      if (res.statusCode === 200) return
    } catch { /* not up yet */ }
    await new Promise(resolve => setTimeout(resolve, 100))
  }
  throw new Error(`${proc.name} did not become healthy at ${url}:\n${await proc.logs()}`)
}

/**
 * Wait until a just-started process answers /healthz on `port` (through the
 * namespace relay when it runs in one); kill it if it never does.
 */
async function healthyOrKilled (proc: RunningProcess, port: number, netns?: InNetns): Promise<{ url: string, testUrl: string }> {
  const url = `http://127.0.0.1:${port}`
  try {
    const testUrl = netns != null ? await netns.forward(port) : url
    await waitHealthy(`${testUrl}/healthz`, proc)
    return { url, testUrl }
  } catch (err) {
    await proc.kill()
    throw err
  }
}

export interface SupernodeProcess extends RunningProcess {
  url: string
  /** Where this test process reaches `url` (differs when it runs in a network namespace). */
  testUrl: string
  port: number
  p2pPort: number
}

export async function startSupernode (opts: { dataDir: string, logDir: string, name?: string, port?: number, p2pPort?: number, extraArgs?: string[], netns?: InNetns, env?: NodeJS.ProcessEnv }): Promise<SupernodeProcess> {
  const port = opts.port ?? await freePort()
  const p2pPort = opts.p2pPort ?? await freePort()
  const proc = spawnNode(opts.name ?? 'supernode', SUPERNODE_BIN, [
    '--port', String(port), '--p2p-port', String(p2pPort), '--data-dir', opts.dataDir, '--host', '127.0.0.1', '--log-level', 'debug', ...(opts.extraArgs ?? [])
  ], opts.logDir, opts.netns?.prefix, opts.env)
  const { url, testUrl } = await healthyOrKilled(proc, port, opts.netns)
  return { ...proc, url, testUrl, port, p2pPort }
}

export interface DaemonProcess extends RunningProcess {
  url: string
  /** Where this test process reaches `url` (differs when it runs in a network namespace). */
  testUrl: string
  /** host:port of the mirror, as a registry name for clients. */
  host: string
  port: number
  p2pPort: number
}

export async function startDaemon (opts: { name: string, supernode: string, upstream: string, dataDir: string, logDir: string, port?: number, p2pPort?: number, extraArgs?: string[], netns?: InNetns }): Promise<DaemonProcess> {
  const port = opts.port ?? await freePort()
  const p2pPort = opts.p2pPort ?? await freePort()
  const proc = spawnNode(opts.name, DFDAEMON_BIN, [
    '--supernode', opts.supernode, '--upstream', opts.upstream, '--port', String(port), '--p2p-port', String(p2pPort),
    '--data-dir', opts.dataDir, '--host', '127.0.0.1', '--log-level', 'debug', ...(opts.extraArgs ?? [])
  ], opts.logDir, opts.netns?.prefix)
  const { url, testUrl } = await healthyOrKilled(proc, port, opts.netns)
  return { ...proc, url, testUrl, host: `127.0.0.1:${port}`, port, p2pPort }
}

/** One sample of a Prometheus metric from a /metrics endpoint (sum over series matching `labels`). */
export async function scrapeMetric (baseUrl: string, name: string, labels: Record<string, string> = {}): Promise<number> {
  const res = await request(`${baseUrl}/metrics`)
  const text = await res.body.text()
  let sum = 0
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue
    const m = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)$/.exec(line)
    if (m == null || m[1] !== name) continue
    const labelText = m[2] ?? ''
    if (Object.entries(labels).every(([k, v]) => labelText.includes(`${k}="${v}"`))) sum += Number(m[3])
  }
  return sum
}
