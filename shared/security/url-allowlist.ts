import { ConfigError, DeniedError } from '../errors.js'

/** A URL outside the operator's `--allow-url` list (or a redirect to one): DENIED, 403. */
export class UrlNotAllowedError extends DeniedError {
  constructor (message = 'the supernode does not fetch this URL (not in its --allow-url list)', options?: ErrorOptions) {
    super(message, options)
  }
}

/** The pattern that allows every http(s) URL: an explicit opt-in. */
export const ALLOW_ANY_URL = '*'

interface Prefix {
  protocol: string
  /** Lowercase host, with the port only when it is not the scheme's default (as URL.host has it). */
  host: string
  /** The path prefix without its trailing slash; '' allows every path on the host. */
  path: string
}

/**
 * Which URLs the supernode may fetch for dfget: `*`, or URL prefixes
 * (scheme + host[:port] + path prefix). Both sides are compared as the WHATWG
 * URL parser leaves them — scheme and host lowercase, default port dropped,
 * `.` and `..` segments (also as %2e) resolved, userinfo ignored — and the path
 * prefix ends on a segment boundary: `/rel` allows `/rel` and `/rel/x`, not
 * `/release`. A path holding an encoded separator (%2F, %5C) matches no prefix,
 * since the server may decode it into segments the comparison never saw.
 * Query and fragment play no part. An empty list allows nothing.
 */
export class UrlAllowlist {
  readonly patterns: readonly string[]
  /** `*` was given: any http(s) URL. */
  readonly any: boolean
  private readonly prefixes: Prefix[]

  /** Throws ConfigError naming the first pattern that is not `*` or an http(s) URL prefix. */
  constructor (patterns: readonly string[]) {
    this.patterns = [...patterns]
    this.any = patterns.some(p => p.trim() === ALLOW_ANY_URL)
    this.prefixes = patterns.filter(p => p.trim() !== ALLOW_ANY_URL).map(parsePattern)
  }

  get empty (): boolean {
    return this.patterns.length === 0
  }

  allows (input: URL | string): boolean {
    let url: URL
    try {
      url = typeof input === 'string' ? new URL(input) : input
    } catch {
      return false
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') return false
    if (this.any) return true
    if (/%(2f|5c)/i.test(url.pathname)) return false
    return this.prefixes.some(p => url.protocol === p.protocol && url.host === p.host &&
      (p.path === '' || url.pathname === p.path || url.pathname.startsWith(`${p.path}/`)))
  }

  /** Throws UrlNotAllowedError unless `url` is allowed; `redirected`: it is where another URL pointed. */
  check (url: URL, redirected = false): void {
    if (this.allows(url)) return
    // the target's origin only, which is what an operator would add (its path and query may carry a signature)
    if (redirected) throw new UrlNotAllowedError(`the supernode does not follow a redirect to ${url.origin} (the target is not in its --allow-url list)`)
    if (this.empty) throw new UrlNotAllowedError('this supernode fetches no URLs (it was started without --allow-url)')
    throw new UrlNotAllowedError()
  }
}

function parsePattern (pattern: string): Prefix {
  const bad = (why: string): ConfigError => new ConfigError(`invalid value for "allowUrls" (--allow-url) "${pattern}": ${why}`)
  if (pattern.includes('*')) throw bad('the only wildcard is a lone "*" (any URL)')
  if (/[?#]/.test(pattern)) throw bad('a prefix has no query or fragment')
  let url: URL
  try {
    url = new URL(pattern.trim())
  } catch {
    throw bad('not a URL (want scheme://host[:port]/path-prefix)')
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw bad('only http and https URLs are fetched')
  if (url.username !== '' || url.password !== '') throw bad('a prefix has no user name or password')
  if (/%(2f|5c)/i.test(url.pathname)) throw bad('encoded "/" or "\\" in the path')
  return { protocol: url.protocol, host: url.host, path: url.pathname.replace(/\/+$/, '') }
}
