import { ConfigError, DeniedError } from '../errors.js'
import { DOCKER_HUB, DOCKER_HUB_API_HOST, isValidRegistryHost, normalizeRegistry } from '../oci/reference.js'

/** A registry outside the operator's `--allow-registry` list: DENIED, 403, before the registry is contacted. */
export class RegistryNotAllowedError extends DeniedError {
  constructor (message = 'the supernode does not fetch from this registry (not in its --allow-registry list)', options?: ErrorOptions) {
    super(message, options)
  }
}

/** The pattern that allows every registry, as an empty list does. */
export const ALLOW_ANY_REGISTRY = '*'

/**
 * Which registries the supernode fetches blobs from for the swarm, by the name
 * clients give them (`docker.io`, `ghcr.io`, `registry.internal:5000`) before any
 * `--registry-endpoint` maps the name to an address. A pattern is a name, with
 * its port when it has one (`registry.internal` does not allow
 * `registry.internal:5000`), or `*.domain` for every name below that domain
 * (not the domain itself). Names compare case-insensitively, with Docker Hub's
 * aliases (`index.docker.io`, `registry-1.docker.io`) as `docker.io`. An empty
 * list, or `*`, allows every registry.
 */
export class RegistryAllowlist {
  readonly patterns: readonly string[]
  readonly any: boolean
  private readonly exact = new Set<string>()
  /** `.domain` suffixes, with the port the pattern named after them ('' for none). */
  private readonly suffixes: Array<{ domain: string, port: string }> = []

  /** Throws ConfigError naming the first pattern that is not `*`, a registry name or `*.domain`. */
  constructor (patterns: readonly string[]) {
    this.patterns = patterns.map(p => p.trim())
    this.any = this.patterns.length === 0 || this.patterns.includes(ALLOW_ANY_REGISTRY)
    for (const p of this.patterns) {
      if (p === ALLOW_ANY_REGISTRY) continue
      const bad = (why: string): ConfigError => new ConfigError(`invalid value for "allowRegistries" (--allow-registry) "${p}": ${why}`)
      const wildcard = p.startsWith('*.')
      const name = wildcard ? p.slice(2) : p
      if (name.includes('*')) throw bad('the only wildcards are a lone "*" and a leading "*."')
      if (!isValidRegistryHost(name)) throw bad('not a registry name (want host[:port], e.g. ghcr.io or registry.internal:5000)')
      if (wildcard) {
        const { host, port } = splitPort(name.toLowerCase())
        this.suffixes.push({ domain: `.${host}`, port })
      } else {
        this.exact.add(canonical(name))
      }
    }
  }

  allows (registry: string): boolean {
    if (this.any) return true
    const name = canonical(registry)
    if (this.exact.has(name)) return true
    const { host, port } = splitPort(name)
    return this.suffixes.some(s => host.endsWith(s.domain) && port === s.port)
  }

  /** Throws RegistryNotAllowedError unless the supernode may fetch from `registry`. */
  check (registry: string): void {
    if (!this.allows(registry)) throw new RegistryNotAllowedError(`the supernode does not fetch from ${registry.slice(0, 255)} (not in its --allow-registry list)`)
  }
}

function canonical (registry: string): string {
  const lower = registry.toLowerCase()
  // the API host Docker Hub is reached at counts as Docker Hub too
  return lower === DOCKER_HUB_API_HOST ? DOCKER_HUB : normalizeRegistry(lower)
}

/** `host:port` → its parts; a bracketed IPv6 address holds colons of its own, so only one after its `]` starts a port. */
function splitPort (name: string): { host: string, port: string } {
  const colon = name.lastIndexOf(':')
  if (colon < 0 || colon < name.lastIndexOf(']')) return { host: name, port: '' }
  return { host: name.slice(0, colon), port: name.slice(colon + 1) }
}
