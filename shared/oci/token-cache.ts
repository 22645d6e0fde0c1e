/**
 * Bearer tokens from registry token servers, cached per (realm, service, scope, credential
 * identity) until shortly before they expire.
 */
import { LRUCache } from 'lru-cache'

export interface TokenKey {
  realm: string
  service: string
  scope: string
  /**
   * Who asked: `anonymous`, or the credential kind and an opaque hash of its secret
   * (`basic:<sha256>`, `identity-token:<sha256>`), never the secret itself.
   */
  identity: string
}

export interface TokenCacheInit {
  /** Most tokens kept at once (default 1024). */
  maxEntries?: number
  /** Drop a token this long before it expires (default 10 s, at most half its lifetime). */
  marginMs?: number
}

/** The token spec's default lifetime when `expires_in` is absent. */
export const DEFAULT_TOKEN_LIFETIME_S = 60
const DEFAULT_MAX_ENTRIES = 1024
const DEFAULT_MARGIN_MS = 10_000

export class TokenCache {
  private readonly cache: LRUCache<string, string>
  private readonly marginMs: number

  constructor (init: TokenCacheInit = {}) {
    this.cache = new LRUCache<string, string>({ max: init.maxEntries ?? DEFAULT_MAX_ENTRIES, ttlAutopurge: false })
    this.marginMs = init.marginMs ?? DEFAULT_MARGIN_MS
  }

  static keyString (key: TokenKey): string {
    return JSON.stringify([key.realm, key.service, key.scope, key.identity])
  }

  get (key: TokenKey): string | undefined {
    return this.cache.get(TokenCache.keyString(key))
  }

  /**
   * Remember `token` for `expiresInS` seconds (default 60) counted from now, minus the
   * margin. A token with no useful lifetime left is not cached.
   */
  set (key: TokenKey, token: string, expiresInS?: number): void {
    const lifetimeMs = (expiresInS !== undefined && Number.isFinite(expiresInS) && expiresInS > 0 ? expiresInS : DEFAULT_TOKEN_LIFETIME_S) * 1000
    const ttl = Math.floor(lifetimeMs - Math.min(this.marginMs, lifetimeMs / 2))
    if (ttl <= 0) return
    this.cache.set(TokenCache.keyString(key), token, { ttl })
  }

  delete (key: TokenKey): void {
    this.cache.delete(TokenCache.keyString(key))
  }

  clear (): void {
    this.cache.clear()
  }

  get size (): number {
    return this.cache.size
  }
}
