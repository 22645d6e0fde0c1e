/**
 * Answers registry auth challenges for anonymous, basic and identity-token credentials: Basic
 * directly, Bearer through the token server named in the challenge (tokens cached in a
 * TokenCache). Remembers how each endpoint authenticates so later requests send the right
 * header up front.
 *
 * Token requests (distribution's token and OAuth2 specs): anonymous and basic credentials GET
 * the realm (Basic header, `account`); an identity token is an OAuth2 refresh token and is
 * POSTed as a `refresh_token` grant with `client_id=damselfly`. It is never sent anywhere else.
 */
import { createHash } from 'node:crypto'
import { LRUCache } from 'lru-cache'
import type { Dispatcher } from 'undici'
import type { Logger } from 'pino'
import { DeniedError, TooManyRequestsError, UnauthorizedError, UpstreamError } from '../errors.js'
import { findChallenge, parseChallenges } from './auth-challenge.js'
import { TokenCache, type TokenKey } from './token-cache.js'
import { readCapped, wrapTransportError } from './registry-errors.js'
import type { Credentials } from './registry-types.js'

type AuthScheme = { scheme: 'basic' } | { scheme: 'bearer', realm: string, service: string }
type DanceCredentials = Exclude<Credentials, { kind: 'authorization' }>

const TOKEN_BODY_LIMIT = 1024 * 1024
/** Our OAuth2 client id (the spec requires one; Docker sends `docker`). */
export const OAUTH_CLIENT_ID = 'damselfly'

export interface RegistryAuthInit {
  dispatcher: Dispatcher
  tokenCache: TokenCache
  logger: Logger
  userAgent: string
}

export function basicHeader (username: string, password: string): string {
  return `Basic ${Buffer.from(`${username}:${password}`, 'utf8').toString('base64')}`
}

function identityOf (creds: DanceCredentials): string {
  if (creds.kind === 'anonymous') return 'anonymous'
  if (creds.kind === 'identity-token') return `identity-token:${createHash('sha256').update(creds.token).digest('hex')}`
  return `basic:${createHash('sha256').update(creds.username).update('\0').update(creds.password).digest('hex')}`
}

/** An OAuth2 error answer's `error` code, if it is a plain one (RFC 6749 §5.2), for messages. */
function oauthError (body: Buffer): string | undefined {
  try {
    const code = (JSON.parse(body.toString('utf8')) as { error?: unknown }).error
    return typeof code === 'string' && /^[a-z_]{1,40}$/.test(code) ? code : undefined
  } catch {
    return undefined
  }
}

/** `p`, or the signal's abort reason if that comes first. */
async function untilAborted<T> (p: Promise<T>, signal?: AbortSignal): Promise<T> {
  if (signal === undefined) return await p
  signal.throwIfAborted()
  let onAbort: (() => void) | undefined
  const aborted = new Promise<never>((_resolve, reject) => {
    onAbort = () => { reject(signal.reason) }
    signal.addEventListener('abort', onAbort, { once: true })
  })
  try {
    return await Promise.race([p, aborted])
  } finally {
    if (onAbort !== undefined) signal.removeEventListener('abort', onAbort)
  }
}

export class RegistryAuth {
  private readonly schemes = new LRUCache<string, AuthScheme>({ max: 512 })
  private readonly inflight = new Map<string, Promise<string>>()

  constructor (private readonly init: RegistryAuthInit) {}

  /** The Authorization header to send before any challenge, if this endpoint's scheme is known. */
  preemptive (endpointUrl: string, creds: DanceCredentials, scope: string): string | undefined {
    const known = this.schemes.get(endpointUrl)
    if (known === undefined) return undefined
    if (known.scheme === 'basic') return creds.kind === 'basic' ? basicHeader(creds.username, creds.password) : undefined
    const token = this.init.tokenCache.get(this.key(known, creds, scope))
    return token === undefined ? undefined : `Bearer ${token}`
  }

  /**
   * After a 401 carrying `wwwAuthenticate`: the header to retry with, or undefined when there is
   * nothing better to try. `rejected` is the header that was just refused (its token is dropped).
   */
  async answer (endpointUrl: string, creds: DanceCredentials, scope: string, wwwAuthenticate: string | undefined, rejected: string | undefined, signal?: AbortSignal): Promise<string | undefined> {
    const challenges = parseChallenges(wwwAuthenticate)
    const bearer = findChallenge(challenges, 'bearer')
    if (bearer?.params.realm !== undefined) {
      const scheme: AuthScheme = { scheme: 'bearer', realm: bearer.params.realm, service: bearer.params.service ?? '' }
      this.schemes.set(endpointUrl, scheme)
      const key = this.key(scheme, creds, scope)
      if (rejected !== undefined && rejected === `Bearer ${this.init.tokenCache.get(key) ?? ''}`) this.init.tokenCache.delete(key)
      const token = await this.token(key, creds, wwwAuthenticate, signal)
      return `Bearer ${token}`
    }
    if (findChallenge(challenges, 'basic') !== undefined) {
      this.schemes.set(endpointUrl, { scheme: 'basic' })
      return creds.kind === 'basic' ? basicHeader(creds.username, creds.password) : undefined
    }
    return undefined
  }

  private key (scheme: Extract<AuthScheme, { scheme: 'bearer' }>, creds: DanceCredentials, scope: string): TokenKey {
    return { realm: scheme.realm, service: scheme.service, scope, identity: identityOf(creds) }
  }

  /** A cached token, or one fetched now (concurrent askers for the same key share one fetch). */
  private async token (key: TokenKey, creds: DanceCredentials, challenge: string | undefined, signal?: AbortSignal): Promise<string> {
    const cached = this.init.tokenCache.get(key)
    if (cached !== undefined) return cached
    const k = TokenCache.keyString(key)
    let p = this.inflight.get(k)
    if (p === undefined) {
      // Shared by every waiter, so not tied to one caller's signal; the agent's timeouts bound it.
      p = this.fetchToken(key, creds, challenge).finally(() => this.inflight.delete(k))
      this.inflight.set(k, p)
    }
    return await untilAborted(p, signal)
  }

  private async fetchToken (key: TokenKey, creds: DanceCredentials, challenge: string | undefined): Promise<string> {
    let url: URL
    try {
      url = new URL(key.realm)
    } catch (err) {
      throw new UpstreamError('token realm is not a URL', undefined, { cause: err })
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new UpstreamError(`token realm scheme ${url.protocol} not supported`)
    const headers: Record<string, string> = { 'user-agent': this.init.userAgent, accept: 'application/json' }
    let method: 'GET' | 'POST' = 'GET'
    let body: string | undefined
    if (creds.kind === 'identity-token') {
      // OAuth2 refresh-token grant: the form goes in the body, the realm's own query stays
      const form = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: creds.token, client_id: OAUTH_CLIENT_ID })
      if (key.service !== '') form.set('service', key.service)
      if (key.scope !== '') form.set('scope', key.scope)
      method = 'POST'
      body = form.toString()
      headers['content-type'] = 'application/x-www-form-urlencoded'
    } else {
      if (key.service !== '') url.searchParams.set('service', key.service)
      if (key.scope !== '') url.searchParams.set('scope', key.scope)
      if (creds.kind === 'basic') {
        headers.authorization = basicHeader(creds.username, creds.password)
        url.searchParams.set('account', creds.username)
      }
    }
    const log = { realm: `${url.origin}${url.pathname}`, service: key.service, scope: key.scope, grant: creds.kind === 'identity-token' ? 'refresh_token' : undefined }
    let res: Dispatcher.ResponseData
    try {
      res = await this.init.dispatcher.request({ origin: url.origin, path: `${url.pathname}${url.search}`, method, headers, body })
    } catch (err) {
      throw wrapTransportError(err, 'token request')
    }
    this.init.logger.debug({ ...log, status: res.statusCode }, 'token request')
    if (res.statusCode !== 200) {
      if (method === 'POST' && res.statusCode === 400) {
        // RFC 6749 §5.2: an unknown, expired or revoked refresh token is `invalid_grant`
        const code = oauthError(await readCapped(res.body, 64 * 1024, 'token error').catch(() => Buffer.alloc(0)))
        if (code === 'invalid_grant') throw new UnauthorizedError('token server refused the identity token', challenge)
        throw new UpstreamError(`token server answered 400${code !== undefined ? ` (${code})` : ''} to the refresh-token grant`, 400)
      }
      await res.body.dump().catch(() => undefined)
      if (res.statusCode === 401) throw new UnauthorizedError(method === 'POST' ? 'token server refused the identity token' : 'token server refused the credentials', challenge)
      if (res.statusCode === 403) throw new DeniedError('token server denied access')
      if (res.statusCode === 429) throw new TooManyRequestsError('token server: too many requests')
      throw new UpstreamError(`token server answered ${res.statusCode}`, res.statusCode)
    }
    let parsed: { token?: unknown, access_token?: unknown, expires_in?: unknown }
    try {
      parsed = JSON.parse((await readCapped(res.body, TOKEN_BODY_LIMIT, 'token response')).toString('utf8'))
    } catch (err) {
      throw wrapTransportError(err, 'token response')
    }
    const token = typeof parsed.token === 'string' && parsed.token !== '' ? parsed.token : parsed.access_token
    if (typeof token !== 'string' || token === '') throw new UpstreamError('token server answered without a token')
    this.init.tokenCache.set(key, token, typeof parsed.expires_in === 'number' ? parsed.expires_in : undefined)
    return token
  }
}
