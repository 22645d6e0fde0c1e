/**
 * One Docker credential helper, `docker-credential-<name>` (the protocol of
 * github.com/docker/docker-credential-helpers): `get`, the server URL on stdin, answers
 * `{"ServerURL","Username","Secret"}` on stdout. The answer "credentials not found in native
 * keychain" (with a non-zero exit) means "none". A Username of `<token>` makes Secret an
 * identity token.
 *
 * Bounded: the program is looked up only in PATH's absolute directories and run without a shell;
 * it is killed after a timeout; stdout and stderr are capped; its stderr is logged with the secret
 * it returned and anything token-like masked. Answers ("none" too) are kept for a short TTL and
 * failures for a shorter one, and concurrent asks for one server URL share one run.
 */
import { spawn } from 'node:child_process'
import { constants as fsConstants } from 'node:fs'
import { access, stat } from 'node:fs/promises'
import { delimiter, isAbsolute, join } from 'node:path'
import { LRUCache } from 'lru-cache'
import type { Logger } from 'pino'
import { ConfigError, DamselflyError } from '../errors.js'
import type { Credentials } from './registry-types.js'

export type HelperCredentials = Extract<Credentials, { kind: 'basic' | 'identity-token' }>

export interface CredentialHelperInit {
  /** The helper's name: runs `docker-credential-<name>`. */
  name: string
  logger: Logger
  /** The helper's environment, and the PATH it is found in (default: this process's). */
  env?: NodeJS.ProcessEnv
  /** Kill a run after this long (default 10 s). */
  timeoutMs?: number
  /** Most stdout bytes taken (default 64 KiB); more is a failure. */
  maxOutputBytes?: number
  /** Keep an answer, "none" included, this long (default 60 s). */
  ttlMs?: number
  /** Keep a failure this long, so a broken helper is not run per request (default 5 s). */
  failureTtlMs?: number
}

export const DEFAULT_HELPER_TIMEOUT_MS = 10_000
export const DEFAULT_HELPER_MAX_OUTPUT_BYTES = 64 * 1024
export const DEFAULT_HELPER_TTL_MS = 60_000
export const DEFAULT_HELPER_FAILURE_TTL_MS = 5_000
const STDERR_LIMIT = 4096
const LOGGED_TEXT_LIMIT = 512
const NOT_FOUND = 'credentials not found in native keychain'
/** The Username by which a helper says Secret is an identity token. */
export const TOKEN_USERNAME = '<token>'
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/

/** A credential helper could not be run, or failed, or answered something unusable. */
export class CredentialHelperError extends DamselflyError {
  static override readonly defaultMessage = 'credential helper failed'
  override readonly code = 'UNAVAILABLE'
  override readonly status = 503
  /** The program, `docker-credential-<name>`. */
  readonly helper: string

  constructor (helper: string, message?: string, options?: ErrorOptions) {
    super(message === undefined ? undefined : `${helper} ${message}`, options)
    this.helper = helper
  }
}

/** A helper name is a program-name suffix, never a path. */
export function isValidHelperName (name: string): boolean {
  return NAME_RE.test(name) && name !== '.' && name !== '..'
}

/** `program` in one of PATH's absolute directories, as an executable regular file. */
export async function findInPath (program: string, pathValue: string | undefined): Promise<string | undefined> {
  for (const dir of (pathValue ?? '').split(delimiter)) {
    if (dir === '' || !isAbsolute(dir)) continue // an empty or relative entry would mean the working directory
    const candidate = join(dir, program)
    try {
      await access(candidate, fsConstants.X_OK)
      if ((await stat(candidate)).isFile()) return candidate
    } catch { /* not here */ }
  }
  return undefined
}

/** Mask `secrets` and any long word with letters and digits (tokens, passwords); one line, capped. */
export function redactHelperText (text: string, secrets: string[] = []): string {
  let out = text
  for (const s of secrets) if (s !== '') out = out.split(s).join('[redacted]')
  out = out.replace(/[A-Za-z0-9+/=_.~-]{16,}/g, (w) => /[A-Za-z]/.test(w) && /[0-9]/.test(w) ? '[redacted]' : w)
  out = out.replace(/[\u0000-\u001f\u007f]+/g, ' ').trim() // eslint-disable-line no-control-regex
  return out.length > LOGGED_TEXT_LIMIT ? `${out.slice(0, LOGGED_TEXT_LIMIT)}…` : out
}

/** A `get` answer → credentials; undefined when it holds none. Throws (without the text) when it is not the protocol's JSON. */
export function parseHelperAnswer (stdout: string, program: string): HelperCredentials | undefined {
  let parsed: unknown
  try {
    parsed = JSON.parse(stdout)
  } catch {
    throw new CredentialHelperError(program, 'answered something that is not JSON')
  }
  const { Username: username, Secret: secret } = (typeof parsed === 'object' && parsed !== null ? parsed : {}) as { Username?: unknown, Secret?: unknown }
  if (typeof username !== 'string' || typeof secret !== 'string') throw new CredentialHelperError(program, 'answered without a string Username and Secret')
  if (secret === '') return undefined
  if (username === TOKEN_USERNAME) return { kind: 'identity-token', token: secret }
  if (username === '') throw new CredentialHelperError(program, 'answered a Secret without a Username')
  return { kind: 'basic', username, password: secret }
}

interface RunResult { code: number | null, signal: NodeJS.Signals | null, stdout: string, stderr: string }

type Cached = { creds: HelperCredentials | undefined } | { error: CredentialHelperError }

export class CredentialHelper {
  /** `docker-credential-<name>` */
  readonly program: string
  private readonly log: Logger
  private readonly cache: LRUCache<string, Cached>
  private readonly inflight = new Map<string, Promise<Cached>>()

  constructor (private readonly init: CredentialHelperInit) {
    if (!isValidHelperName(init.name)) throw new ConfigError(`invalid credential helper name ${JSON.stringify(init.name.slice(0, 80))}`)
    this.program = `docker-credential-${init.name}`
    this.log = init.logger.child({ component: 'credential-helper', helper: this.program })
    this.cache = new LRUCache<string, Cached>({ max: 256, ttlAutopurge: false })
  }

  /** Where the program is, if PATH has it (for a warning at startup; `get` looks again). */
  async locate (): Promise<string | undefined> {
    return await findInPath(this.program, (this.init.env ?? process.env).PATH)
  }

  /** The helper's credentials for `serverUrl`, or undefined when it has none. Throws CredentialHelperError. */
  async get (serverUrl: string): Promise<HelperCredentials | undefined> {
    let entry = this.cache.get(serverUrl)
    if (entry === undefined) {
      let p = this.inflight.get(serverUrl)
      if (p === undefined) {
        p = this.lookup(serverUrl).finally(() => this.inflight.delete(serverUrl))
        this.inflight.set(serverUrl, p)
      }
      entry = await p
    }
    if ('error' in entry) throw entry.error
    return entry.creds
  }

  /** Empty the cache (e.g. after a login changed what the helper holds). */
  clear (): void {
    this.cache.clear()
  }

  private async lookup (serverUrl: string): Promise<Cached> {
    let entry: Cached
    let ttl: number
    try {
      entry = { creds: await this.query(serverUrl) }
      ttl = this.init.ttlMs ?? DEFAULT_HELPER_TTL_MS
    } catch (err) {
      const error = err instanceof CredentialHelperError ? err : new CredentialHelperError(this.program, (err as Error).message, { cause: err })
      entry = { error }
      ttl = this.init.failureTtlMs ?? DEFAULT_HELPER_FAILURE_TTL_MS
      this.log.warn({ server: serverUrl, err: { name: error.name, message: error.message } }, 'credential helper failed')
    }
    if (ttl > 0) this.cache.set(serverUrl, entry, { ttl }) // (a ttl of 0 would mean "forever" to the cache)
    return entry
  }

  private async query (serverUrl: string): Promise<HelperCredentials | undefined> {
    const path = await this.locate()
    if (path === undefined) throw new CredentialHelperError(this.program, 'not found in PATH')
    const run = await this.run(path, serverUrl)
    const stdout = run.stdout.trim()
    if (run.code !== 0) {
      if (stdout === NOT_FOUND || run.stderr.trim() === NOT_FOUND) {
        this.log.debug({ server: serverUrl }, 'credential helper has no credentials')
        return undefined
      }
      this.log.warn({ server: serverUrl, exit: run.code, signal: run.signal, stdout: redactHelperText(stdout), stderr: redactHelperText(run.stderr) }, 'credential helper exited with an error')
      throw new CredentialHelperError(this.program, `get failed (${run.code !== null ? `exit ${run.code}` : `signal ${run.signal ?? '?'}`})`)
    }
    const creds = parseHelperAnswer(stdout, this.program)
    const secrets = creds === undefined ? [] : [creds.kind === 'basic' ? creds.password : creds.token]
    if (run.stderr.trim() !== '') this.log.debug({ server: serverUrl, stderr: redactHelperText(run.stderr, secrets) }, 'credential helper stderr')
    this.log.debug({ server: serverUrl, found: creds !== undefined, kind: creds?.kind }, 'credential helper answered')
    return creds
  }

  /** One `get` run, bounded by the timeout and the output cap. */
  private async run (path: string, serverUrl: string): Promise<RunResult> {
    const timeoutMs = this.init.timeoutMs ?? DEFAULT_HELPER_TIMEOUT_MS
    const maxOutput = this.init.maxOutputBytes ?? DEFAULT_HELPER_MAX_OUTPUT_BYTES
    return await new Promise<RunResult>((resolve, reject) => {
      const child = spawn(path, ['get'], { env: this.init.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'], shell: false, windowsHide: true })
      const out: Buffer[] = []
      let outBytes = 0
      let stderr = ''
      let settled = false
      const fail = (message: string, cause?: unknown): void => {
        if (settled) return
        settled = true
        clearTimeout(timer)
        child.kill('SIGKILL')
        reject(new CredentialHelperError(this.program, message, cause !== undefined ? { cause } : undefined))
      }
      const timer = setTimeout(() => { fail(`did not answer within ${timeoutMs} ms`) }, timeoutMs)
      child.on('error', (err) => { fail(`could not be run: ${(err as NodeJS.ErrnoException).code ?? err.message}`, err) })
      child.stdout.on('data', (chunk: Buffer) => {
        outBytes += chunk.length
        if (outBytes > maxOutput) fail(`answered more than ${maxOutput} bytes`)
        else out.push(chunk)
      })
      child.stderr.setEncoding('utf8').on('data', (chunk: string) => { if (stderr.length < STDERR_LIMIT) stderr = (stderr + chunk).slice(0, STDERR_LIMIT) })
      child.stdin.on('error', () => { /* a helper that exits without reading stdin: its exit status tells */ })
      child.stdin.end(serverUrl) // Docker writes the URL without a newline
      child.on('close', (code, signal) => {
        if (settled) return
        settled = true
        clearTimeout(timer)
        resolve({ code, signal, stdout: Buffer.concat(out).toString('utf8'), stderr })
      })
    })
  }
}
