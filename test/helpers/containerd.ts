/**
 * A private containerd for pull tests: its own root, state, sockets and config in a temp
 * directory, registry host configuration under `<dir>/certs.d` (set as `config_path`; `ctr`
 * is given it with `--hosts-dir`). The CRI plugin is off, pulls use the native snapshotter.
 */
import { execFile, spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { createWriteStream } from 'node:fs'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'

const run = promisify(execFile)
export const CTR_NAMESPACE = 'damselfly-test'

export interface ContainerdProcess {
  dir: string
  socket: string
  /** `certs.d`: one folder per registry name, each with a hosts.toml. */
  hostsDir: string
  pid: number
  /** Run `ctr -a SOCK -n damselfly-test ARGS`; resolves with stdout. */
  ctr: (args: string[], timeoutMs?: number) => Promise<string>
  /** `sha256:` of the bytes `ctr content get DIGEST` returns. */
  contentDigest: (digest: string) => Promise<string>
  /** Write `certs.d/<registry>/hosts.toml`. */
  writeHosts: (registry: string, toml: string) => Promise<void>
  logs: () => Promise<string>
  stop: () => Promise<void>
}

function configToml (dir: string): string {
  return `version = 2
root = "${dir}/root"
state = "${dir}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "${dir}/containerd.sock"
[ttrpc]
  address = "${dir}/containerd.sock.ttrpc"
[debug]
  level = "info"
[plugins."io.containerd.internal.v1.opt"]
  path = "${dir}/opt"
[plugins."io.containerd.grpc.v1.cri".registry]
  config_path = "${dir}/certs.d"
`
}

export async function startContainerd (dir: string): Promise<ContainerdProcess> {
  await mkdir(join(dir, 'certs.d'), { recursive: true })
  const configPath = join(dir, 'config.toml')
  await writeFile(configPath, configToml(dir))
  const logFile = join(dir, 'containerd.log')
  const out = createWriteStream(logFile, { flags: 'a' })
  const child = spawn('containerd', ['--config', configPath], { stdio: ['ignore', 'pipe', 'pipe'] })
  child.stdout.pipe(out, { end: false })
  child.stderr.pipe(out, { end: false })
  const exited = new Promise<void>((resolve) => { child.once('exit', () => { resolve() }) })
  const socket = join(dir, 'containerd.sock')
  const ctr = async (args: string[], timeoutMs = 300_000): Promise<string> =>
    (await run('ctr', ['-a', socket, '-n', CTR_NAMESPACE, ...args], { timeout: timeoutMs, maxBuffer: 16 << 20 })).stdout
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return
    child.kill('SIGTERM')
    const timer = setTimeout(() => { child.kill('SIGKILL') }, 10_000)
    await exited
    clearTimeout(timer)
  }
  const logs = async (): Promise<string> => await readFile(logFile, 'utf8').catch(() => '')
  for (let i = 0; ; i++) {
    if (child.exitCode !== null) throw new Error(`containerd exited (${child.exitCode}):\n${await logs()}`)
    try {
      await ctr(['version'], 5000)
      break
    } catch (err) {
      if (i >= 200) {
        await stop()
        throw new Error(`containerd did not come up: ${(err as Error).message}\n${await logs()}`)
      }
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
  }
  return {
    dir,
    socket,
    hostsDir: join(dir, 'certs.d'),
    pid: child.pid ?? -1,
    ctr,
    contentDigest: async (digest) => {
      const { stdout } = await run('ctr', ['-a', socket, '-n', CTR_NAMESPACE, 'content', 'get', digest], { encoding: 'buffer', timeout: 60_000, maxBuffer: 256 << 20 })
      return `sha256:${createHash('sha256').update(stdout).digest('hex')}`
    },
    writeHosts: async (registry, toml) => {
      await mkdir(join(dir, 'certs.d', registry), { recursive: true })
      await writeFile(join(dir, 'certs.d', registry, 'hosts.toml'), toml)
    },
    logs,
    stop
  }
}

/** A hosts.toml: the mirror first (pull + resolve), the registry itself (`server`) as fallback. */
export function mirrorHostsToml (server: string, mirror: string): string {
  return `server = "${server}"

[host."${mirror}"]
  capabilities = ["pull", "resolve"]
`
}

/** The digests in `ctr content ls`. */
export function parseContentList (text: string): Set<string> {
  const out = new Set<string>()
  for (const line of text.split('\n').slice(1)) {
    const digest = line.trim().split(/\s+/)[0]
    if (digest?.startsWith('sha256:') === true) out.add(digest)
  }
  return out
}

/** `ctr images ls` as ref → target digest. */
export function parseImageList (text: string): Map<string, string> {
  const out = new Map<string, string>()
  for (const line of text.split('\n').slice(1)) {
    const cols = line.trim().split(/\s+/)
    const digest = cols.find((c) => c.startsWith('sha256:'))
    if (cols[0] !== undefined && cols[0] !== '' && digest !== undefined) out.set(cols[0], digest)
  }
  return out
}
