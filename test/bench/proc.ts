/**
 * Processes the bench starts inside its hosts: spawned with the host's prefix, output to a log
 * file, registered for cleanup by PID, stopped by PID; plus the CPU time and peak RSS the kernel
 * keeps for them, and HTTP requests made from inside a host (with curl, so no traffic crosses
 * into the root namespace).
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process'
import { createWriteStream } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import type { Cleanup } from './cleanup.js'
import type { Host } from './hosts.js'

const run = promisify(execFile)
const CLK_TCK = 100

export interface Proc {
  name: string
  host: Host
  child: ChildProcess
  pid: number
  logFile: string
  exited: Promise<void>
  /** SIGTERM by PID, SIGKILL after `graceMs`. */
  stop: (graceMs?: number) => Promise<void>
  logTail: () => Promise<string>
}

export function startProc (host: Host, name: string, argv: string[], logDir: string, cleanup: Cleanup, env?: NodeJS.ProcessEnv): Proc {
  const logFile = join(logDir, `${name}.log`)
  const out = createWriteStream(logFile, { flags: 'a' })
  // DAMSELFLY_PROF_DIR=DIR writes a V8 CPU profile of every node process the bench starts;
  // DAMSELFLY_NODE_FLAGS adds V8/node flags (e.g. --trace-gc) to each
  const isNode = argv[0] === process.execPath
  const prof = process.env.DAMSELFLY_PROF_DIR
  const flags = [...(prof != null ? ['--cpu-prof', '--cpu-prof-dir', prof] : []), ...(process.env.DAMSELFLY_NODE_FLAGS?.split(' ').filter(Boolean) ?? [])]
  const node = isNode ? [argv[0], ...flags, ...argv.slice(1)] : argv
  const full = [...host.prefix, ...node]
  const child = spawn(full[0], full.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env: env ?? process.env })
  if (child.pid === undefined) throw new Error(`could not start ${name} (${argv[0]})`)
  const pid = child.pid
  cleanup.pid(pid, name)
  child.stdout?.pipe(out, { end: false })
  child.stderr?.pipe(out, { end: false })
  const exited = new Promise<void>((resolve) => { child.once('exit', () => { resolve() }) })
  const gone = (): boolean => child.exitCode !== null || child.signalCode !== null
  return {
    name,
    host,
    child,
    pid,
    logFile,
    exited,
    stop: async (graceMs = 5000) => {
      if (!gone()) {
        child.kill('SIGTERM')
        const timer = setTimeout(() => { if (!gone()) child.kill('SIGKILL') }, graceMs)
        await exited
        clearTimeout(timer)
      }
      cleanup.forgetPid(pid)
      out.end()
    },
    logTail: async () => (await readFile(logFile, 'utf8').catch(() => '')).slice(-4000)
  }
}

/**
 * What the kernel counted for one process: CPU time (all threads), peak RSS, and how long its main
 * thread — for the daemons and the supernode, the event loop — was ready to run but waited for a
 * core (run delay). CPU-busy shares are averages; run delay is the latency a relay pays when the
 * machine's cores are contended, even at 70 % busy.
 */
export interface ProcStats { name: string, cpuSeconds: number, peakRssMiB: number, runDelaySeconds: number }

/** The run delay in /proc/PID/schedstat ("time on a core, time waiting for one, slices", in ns), in seconds. */
export function parseSchedstat (text: string): number {
  const waited = Number(text.trim().split(/\s+/)[1])
  if (!Number.isFinite(waited)) throw new Error(`unreadable schedstat: ${text.slice(0, 80)}`)
  return waited / 1e9
}

/** utime + stime, VmHWM and the main thread's run delay of a live process (zeros when it is gone). */
export async function procStats (name: string, pid: number): Promise<ProcStats> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8')
    // fields after the ")" that closes comm: state is field 3, utime 14, stime 15
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    const cpu = (Number(rest[11]) + Number(rest[12])) / CLK_TCK
    const status = await readFile(`/proc/${pid}/status`, 'utf8')
    const hwm = /VmHWM:\s+(\d+) kB/.exec(status)
    const runDelay = parseSchedstat(await readFile(`/proc/${pid}/schedstat`, 'utf8'))
    return { name, cpuSeconds: cpu, peakRssMiB: hwm === null ? 0 : Number(hwm[1]) / 1024, runDelaySeconds: runDelay }
  } catch {
    return { name, cpuSeconds: 0, peakRssMiB: 0, runDelaySeconds: 0 }
  }
}

/** The children of `pid` (nginx's workers). */
export async function childPids (pid: number): Promise<number[]> {
  const text = await readFile(`/proc/${pid}/task/${pid}/children`, 'utf8').catch(() => '')
  return text.trim().split(/\s+/).filter((s) => s !== '').map(Number)
}

/** GET `url` from inside `host`; the body, or undefined when it does not answer 200 (any status with `anyStatus`). */
export async function hostGet (host: Host, url: string, timeoutMs = 3000, anyStatus = false): Promise<string | undefined> {
  const argv = [...host.prefix, 'curl', anyStatus ? '-s' : '-sf', '--max-time', String(timeoutMs / 1000), url]
  try {
    const { stdout } = await run(argv[0], argv.slice(1), { maxBuffer: 64 << 20, timeout: timeoutMs + 2000 })
    return stdout
  } catch {
    return undefined
  }
}

/** Poll `url` (from inside `host`) until it answers 200 (or anything, with `anyStatus`); bounded, fails with the log's tail. */
export async function waitHttp (proc: Proc, url: string, attempts = 200, anyStatus = false): Promise<void> {
  for (let i = 0; i < attempts; i++) {
    if (proc.child.exitCode !== null || proc.child.signalCode !== null) throw new Error(`${proc.name} exited (${proc.child.exitCode ?? proc.child.signalCode}):\n${await proc.logTail()}`)
    if (await hostGet(proc.host, url, 1000, anyStatus) !== undefined) return
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  throw new Error(`${proc.name} did not answer at ${url}:\n${await proc.logTail()}`)
}

/** Sum of a Prometheus metric's samples whose labels include `labels`. */
export function metricSum (text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)$/.exec(line)
    if (m === null || m[1] !== name) continue
    const labelText = m[2] ?? ''
    if (Object.entries(labels).every(([k, v]) => labelText.includes(`${k}="${v}"`))) sum += Number(m[3])
  }
  return sum
}

/** Jiffies the whole machine spent busy and in total so far (first line of /proc/stat). */
export async function machineJiffies (): Promise<{ busy: number, total: number }> {
  const line = (await readFile('/proc/stat', 'utf8')).split('\n')[0]
  const v = line.trim().split(/\s+/).slice(1).map(Number)
  const total = v.reduce((a, b) => a + b, 0)
  const idle = (v[3] ?? 0) + (v[4] ?? 0) // idle + iowait
  return { busy: total - idle, total }
}

/** Share of the machine's cores busy between two `machineJiffies` readings (0 to 1). */
export function busyShare (from: { busy: number, total: number }, to: { busy: number, total: number }): number {
  return (to.busy - from.busy) / Math.max(1, to.total - from.total)
}
