/**
 * Whether a client may pull a blob, as its origin registry says: a HEAD of the
 * blob in the repository asked for, anonymously first (a blob some repository
 * serves to anyone is public) and then with the client's own credentials.
 * Asking for the blob rather than the repository's manifest also proves the
 * repository holds that blob: naming a repository one may read never unlocks
 * a digest seen in another. Decisions are cached per (registry, repository,
 * digest, credential hash) for a short TTL, refusals for a shorter one, and
 * concurrent identical checks share one request.
 */
import { createHash } from 'node:crypto'
import { LRUCache } from 'lru-cache'
import type { Logger } from 'pino'
import type { RegistryEndpoint } from '../oci/endpoints.js'
import { ANONYMOUS, type BlobOptions, type Credentials } from '../oci/registry-types.js'
import { DamselflyError } from '../errors.js'

/** What the checker needs of a registry client (RegistryClient satisfies it). */
export interface AccessClient {
  headBlob: (endpoint: RegistryEndpoint, repository: string, digest: string, opts: BlobOptions) => Promise<unknown>
}

export interface AccessRequest {
  registry: string
  repository: string
  digest: string
  credentials: Credentials
}

/** `public`: anyone may pull it from the origin; `private`: these credentials may. */
export type Visibility = 'public' | 'private'

export interface AccessCheckerComponents {
  client: AccessClient
  resolveEndpoint: (registry: string) => RegistryEndpoint
  logger: Logger
}

export interface AccessCheckerInit {
  /** How long a grant is remembered. */
  ttlMs?: number
  /** How long a refusal is remembered (short: access may just have been granted). */
  refusalTtlMs?: number
  maxEntries?: number
  /** Deadline for one origin check. */
  timeoutMs?: number
}

export const DEFAULT_ACCESS_TTL_MS = 60_000
export const DEFAULT_REFUSAL_TTL_MS = 10_000

/** Origin answers that mean "not for these credentials" (anything else is the origin failing). */
const REFUSALS = new Set(['UnauthorizedError', 'DeniedError', 'BlobUnknownError', 'NameUnknownError'])

type Outcome = { ok: true } | { ok: false, error: DamselflyError }

export class AccessChecker {
  private readonly c: AccessCheckerComponents
  private readonly ttlMs: number
  private readonly refusalTtlMs: number
  private readonly timeoutMs: number
  private readonly cache: LRUCache<string, Outcome>
  private readonly inflight = new Map<string, Promise<Outcome>>()
  private readonly log: Logger
  /** Origin checks made (for tests and metrics). */
  checks = 0

  constructor (components: AccessCheckerComponents, init: AccessCheckerInit = {}) {
    this.c = components
    this.ttlMs = init.ttlMs ?? DEFAULT_ACCESS_TTL_MS
    this.refusalTtlMs = Math.min(init.refusalTtlMs ?? DEFAULT_REFUSAL_TTL_MS, this.ttlMs)
    this.timeoutMs = init.timeoutMs ?? 15_000
    this.cache = new LRUCache({ max: init.maxEntries ?? 10_000, ttl: this.ttlMs, ttlAutopurge: false })
    this.log = components.logger.child({ component: 'access' })
  }

  /**
   * Resolves with the blob's visibility when `req.credentials` may pull it;
   * rejects with the origin's refusal (UnauthorizedError with its challenge,
   * DeniedError, BlobUnknownError) or, when the origin cannot be asked, its
   * transport error (never cached).
   */
  async check (req: AccessRequest, signal?: AbortSignal): Promise<Visibility> {
    const anon = await this.outcome(req, ANONYMOUS, signal)
    if (anon.ok) return 'public'
    if (req.credentials.kind === 'anonymous') throw anon.error
    const own = await this.outcome(req, req.credentials, signal)
    if (own.ok) return 'private'
    throw own.error
  }

  /** Forget every decision (tests, credential rotation). */
  clear (): void {
    this.cache.clear()
  }

  private async outcome (req: AccessRequest, credentials: Credentials, signal?: AbortSignal): Promise<Outcome> {
    const key = JSON.stringify([req.registry, req.repository, req.digest, credentialHash(credentials)])
    const cached = this.cache.get(key)
    if (cached != null) return cached
    const running = this.inflight.get(key)
    if (running != null) return await running
    const p = this.ask(req, credentials, signal)
    this.inflight.set(key, p)
    try {
      const outcome = await p
      this.cache.set(key, outcome, { ttl: outcome.ok ? this.ttlMs : this.refusalTtlMs })
      return outcome
    } finally {
      this.inflight.delete(key)
    }
  }

  private async ask (req: AccessRequest, credentials: Credentials, signal?: AbortSignal): Promise<Outcome> {
    this.checks++
    const timeout = AbortSignal.timeout(this.timeoutMs)
    try {
      await this.c.client.headBlob(this.c.resolveEndpoint(req.registry), req.repository, req.digest, {
        credentials,
        signal: signal == null ? timeout : AbortSignal.any([signal, timeout])
      })
      return { ok: true }
    } catch (err) {
      if (err instanceof DamselflyError && REFUSALS.has(err.name)) {
        this.log.debug({ registry: req.registry, repository: req.repository, digest: req.digest, anonymous: credentials.kind === 'anonymous', refusal: err.name }, 'origin refused access')
        return { ok: false, error: err }
      }
      throw err
    }
  }
}

/** A digest of the credentials, so the cache never holds them; '' for anonymous. */
export function credentialHash (c: Credentials): string {
  if (c.kind === 'anonymous') return ''
  const material = c.kind === 'basic'
    ? `basic\0${c.username}\0${c.password}`
    : c.kind === 'identity-token' ? `identity-token\0${c.token}` : `authorization\0${c.header}`
  return createHash('sha256').update(material).digest('base64url')
}
