/**
 * A private dockerd (Debian `docker.io`) for pull tests: its own data root, exec root, pidfile,
 * socket, key and config file in a temp dir; no bridge, no iptables (the machine's network is
 * left alone), vfs storage. Meant to run inside a loopback-only network namespace, so that its
 * fallback to Docker Hub when the mirror fails cannot leave the machine. The CLI talks to it over
 * its unix socket, which works from any namespace.
 */
import { execFile, spawn } from 'node:child_process'
import { createWriteStream } from 'node:fs'
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'

const run = promisify(execFile)
/** Debian's CLI; a `docker` earlier in PATH may be another build. */
const DOCKER_CLI = '/usr/bin/docker'

export interface DockerdProcess {
  dir: string
  socket: string
  pid: number
  docker: (args: string[]) => Promise<string>
  logs: () => Promise<string>
  /** SIGTERM (dockerd stops its own containerd), SIGKILL after a grace period; leftover children killed by PID. */
  stop: () => Promise<void>
}

export async function startDockerd (opts: { dir: string, mirror: string, prefix?: string[] }): Promise<DockerdProcess> {
  const { dir } = opts
  await mkdir(join(dir, 'cli'), { recursive: true })
  const configFile = join(dir, 'daemon.json')
  // the trust key would otherwise go to /etc/docker/key.json
  await writeFile(configFile, JSON.stringify({ 'deprecated-key-path': join(dir, 'key.json') }) + '\n')
  const socket = join(dir, 'docker.sock')
  const args = [
    '--config-file', configFile, '--data-root', join(dir, 'root'), '--exec-root', join(dir, 'exec'), '--pidfile', join(dir, 'docker.pid'),
    '-H', `unix://${socket}`, '--storage-driver', 'vfs',
    '--bridge', 'none', '--iptables=false', '--ip6tables=false', '--ip-masq=false', '--registry-mirror', opts.mirror
  ]
  const argv = [...(opts.prefix ?? []), 'dockerd', ...args]
  const logFile = join(dir, 'dockerd.log')
  const out = createWriteStream(logFile, { flags: 'a' })
  const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] })
  child.stdout.pipe(out, { end: false })
  child.stderr.pipe(out, { end: false })
  const exited = new Promise<void>((resolve) => { child.once('exit', () => { resolve() }) })
  const pid = child.pid ?? -1
  const docker = async (cli: string[]): Promise<string> => (await run(DOCKER_CLI, ['-H', `unix://${socket}`, ...cli], {
    env: { ...process.env, DOCKER_CONFIG: join(dir, 'cli') }, timeout: 300_000, maxBuffer: 16 << 20
  })).stdout
  const logs = async (): Promise<string> => await readFile(logFile, 'utf8').catch(() => '')
  let children: number[] = []
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      children = await descendants(pid)
      child.kill('SIGTERM')
      const timer = setTimeout(() => { child.kill('SIGKILL') }, 20_000)
      await exited
      clearTimeout(timer)
    }
    for (const p of children) {
      try { process.kill(p, 'SIGKILL') } catch { /* already gone */ }
    }
  }
  for (let i = 0; ; i++) {
    if (child.exitCode !== null) throw new Error(`dockerd exited (${child.exitCode}):\n${await logs()}`)
    try {
      await docker(['version'])
      break
    } catch (err) {
      if (i >= 300) {
        await stop()
        throw new Error(`dockerd did not come up: ${(err as Error).message}\n${await logs()}`)
      }
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
  }
  return { dir, socket, pid, docker, logs, stop }
}

/** PIDs of a process's children, grandchildren, ... (dockerd's own containerd and shims). */
async function descendants (pid: number): Promise<number[]> {
  const out: number[] = []
  const visit = async (p: number): Promise<void> => {
    let tasks: string[] = []
    try { tasks = await readdir(`/proc/${p}/task`) } catch { return }
    for (const t of tasks) {
      const text = await readFile(`/proc/${p}/task/${t}/children`, 'utf8').catch(() => '')
      for (const c of text.trim().split(/\s+/).filter(Boolean).map(Number)) {
        out.push(c)
        await visit(c)
      }
    }
  }
  await visit(pid)
  return out
}

/** Unmount anything a crashed dockerd may have left mounted under `dir` (deepest first). */
export async function unmountUnder (dir: string): Promise<void> {
  const text = await readFile('/proc/self/mountinfo', 'utf8').catch(() => '')
  const points = text.split('\n').map((l) => l.split(' ')[4]).filter((p): p is string => p !== undefined && (p === dir || p.startsWith(`${dir}/`)))
  for (const p of points.sort((a, b) => b.length - a.length)) await run('umount', ['-l', p]).catch(() => undefined)
}
