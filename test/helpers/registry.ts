/**
 * A real distribution registry (`/usr/bin/docker-registry`, 2.8) on 127.0.0.1 for tests, with
 * no auth, htpasswd basic auth, or token auth backed by our in-process token server.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { promisify } from 'node:util'
import { request } from 'undici'
import { freePort } from './ports.js'
import { startTokenServer, type TokenServer } from './token-server.js'

const run = promisify(execFile)
const REGISTRY_BIN = '/usr/bin/docker-registry'
export const TOKEN_SERVICE = 'damselfly-test-registry'
export const TOKEN_ISSUER = 'damselfly-test-issuer'

export type AuthMode = 'none' | 'basic' | 'token'

export interface RegistryOptions {
  auth?: AuthMode
  users?: Record<string, string>
  /** user → allowed repository prefixes ('' = anonymous); token mode only. */
  acl?: Record<string, string[]>
  /** Token mode: anonymous clients may pull. */
  anonymousPull?: boolean
  /** Token lifetime in seconds (token mode). */
  tokenExpiresIn?: number
  /** Run the registry inside this network namespace (see helpers/netns.ts); `url` is then its address in there. */
  netns?: { prefix: string[], forward: (port: number) => Promise<string> }
}

export interface RequestLogEntry { method: string, path: string, status: number }

export interface TestRegistry {
  /** Where the registry listens (inside its network namespace, when it runs in one). */
  url: string
  /** Where this test process reaches it: `url`, or a forward into the namespace. */
  testUrl: string
  host: string
  dir: string
  auth: AuthMode
  username: string
  password: string
  /** Token mode only. */
  tokenServer?: TokenServer
  /** GETs of /v2/.../blobs/<digest> answered 200/206 (all blobs when no digest). */
  blobRequests: (digest?: string) => number
  requests: () => RequestLogEntry[]
  /**
   * Wait until the access log has caught up with requests answered before this call (a marker
   * request is logged), then until `until` holds (checked for a bounded time; no error on timeout:
   * the caller's assertion reports it).
   */
  flushLog: (until?: () => boolean) => Promise<void>
  /** Path of a stored blob's data file. */
  blobPath: (digest: string) => string
  stop: () => Promise<void>
}

const ACCESS_LINE = /"([A-Z]+) (\S+) HTTP\/[\d.]+" (\d{3}) /

function configYaml (dir: string, port: number, auth: string): string {
  return `version: 0.1
log:
  level: warn
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: ${join(dir, 'data')}
  delete:
    enabled: true
  redirect:
    disable: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:${port}
  secret: ${randomBytes(16).toString('hex')}
${auth}`
}

async function waitReady (url: string, child: ChildProcess, stderr: () => string): Promise<void> {
  for (let attempt = 0; attempt < 200; attempt++) {
    if (child.exitCode !== null) throw new Error(`docker-registry exited (${child.exitCode}): ${stderr()}`)
    try {
      const res = await request(`${url}/v2/`)
      await res.body.dump()
      if (res.statusCode === 200 || res.statusCode === 401) return
    } catch { /* not listening yet */ }
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  throw new Error(`docker-registry did not become ready: ${stderr()}`)
}

export async function startRegistry (opts: RegistryOptions = {}): Promise<TestRegistry> {
  const auth = opts.auth ?? 'none'
  const dir = await mkdtemp(join(tmpdir(), 'damselfly-registry-'))
  const users = opts.users ?? { tester: randomBytes(9).toString('base64url') }
  const [username, password] = Object.entries(users)[0] ?? ['', '']
  let tokenServer: TokenServer | undefined
  const cleanup = async (): Promise<void> => {
    await tokenServer?.stop()
    await rm(dir, { recursive: true, force: true })
  }
  try {
    let authYaml = ''
    if (auth === 'basic') {
      const lines = await Promise.all(Object.entries(users).map(async ([u, p]) => (await run('htpasswd', ['-Bbn', u, p])).stdout.trim()))
      await writeFile(join(dir, 'htpasswd'), lines.join('\n') + '\n')
      authYaml = `auth:\n  htpasswd:\n    realm: damselfly-test\n    path: ${join(dir, 'htpasswd')}\n`
    } else if (auth === 'token') {
      tokenServer = await startTokenServer({
        dir, service: TOKEN_SERVICE, issuer: TOKEN_ISSUER, users, acl: opts.acl, anonymousPull: opts.anonymousPull, expiresIn: opts.tokenExpiresIn
      })
      authYaml = `auth:\n  token:\n    realm: ${tokenServer.realm}\n    service: ${TOKEN_SERVICE}\n    issuer: ${TOKEN_ISSUER}\n    rootcertbundle: ${tokenServer.certPath}\n`
    }

    // The port may be taken between freePort() and the registry's bind: try a few times.
    for (let attempt = 0; ; attempt++) {
      const port = await freePort()
      const configPath = join(dir, 'config.yml')
      await writeFile(configPath, configYaml(dir, port, authYaml))
      const prefix = opts.netns?.prefix ?? []
      const argv = [...prefix, REGISTRY_BIN, 'serve', configPath]
      const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] })
      const log: RequestLogEntry[] = []
      let errText = ''
      let partial = ''
      child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
        const lines = (partial + chunk).split('\n')
        partial = lines.pop() ?? ''
        for (const line of lines) {
          const m = ACCESS_LINE.exec(line)
          if (m !== null) log.push({ method: m[1], path: m[2], status: Number(m[3]) })
        }
      })
      child.stderr.setEncoding('utf8').on('data', (chunk: string) => { errText = (errText + chunk).slice(-8192) })
      const url = `http://127.0.0.1:${port}`
      const testUrl = opts.netns != null ? await opts.netns.forward(port) : url
      try {
        await waitReady(testUrl, child, () => errText)
      } catch (err) {
        child.kill('SIGKILL')
        if (attempt < 3 && /address already in use/.test(errText)) continue
        throw err
      }
      const exited = new Promise<void>((resolve) => { child.once('exit', () => { resolve() }) })
      let flushes = 0
      return {
        url,
        testUrl,
        host: `127.0.0.1:${port}`,
        dir,
        auth,
        username,
        password,
        tokenServer,
        requests: () => [...log],
        // the query is ignored: containerd adds `?ns=` even when it falls back to the registry itself
        blobRequests: (digest?: string) => log.map((e) => ({ ...e, path: e.path.replace(/\?.*$/, '') })).filter((e) => e.method === 'GET' && (e.status === 200 || e.status === 206) &&
          /\/blobs\/sha256:[a-f0-9]{64}$/.test(e.path) && (digest === undefined || e.path.endsWith(`/blobs/${digest}`))).length,
        flushLog: async (until?: () => boolean) => {
          const marker = `/v2/?flush=${++flushes}`
          const res = await request(`${testUrl}${marker}`)
          await res.body.dump()
          const done = (): boolean => log.some((e) => e.path === marker) && (until?.() ?? true)
          for (let i = 0; i < 1000 && !done(); i++) await new Promise((resolve) => setTimeout(resolve, 5))
        },
        blobPath: (digest: string) => {
          const hex = digest.replace(/^sha256:/, '')
          return join(dir, 'data', 'docker', 'registry', 'v2', 'blobs', 'sha256', hex.slice(0, 2), hex, 'data')
        },
        stop: async () => {
          if (child.exitCode === null && child.signalCode === null) {
            child.kill('SIGTERM')
            const timer = setTimeout(() => { child.kill('SIGKILL') }, 5000)
            await exited
            clearTimeout(timer)
          }
          await cleanup()
        }
      }
    }
  } catch (err) {
    await cleanup()
    throw err
  }
}
