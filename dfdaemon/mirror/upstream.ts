/**
 * Which registry a mirror request is for. One endpoint serves many registries:
 *
 * 1. containerd's hosts.toml mirrors add `?ns=<registry>`;
 * 2. podman/CRI-O mirrors put the registry in the path (`/v2/docker.io/library/alpine/...`):
 *    the first segment is a registry when it contains `.` or `:` or is `localhost`, and
 *    something follows it;
 * 3. otherwise the default upstream (`--upstream`, what Docker's `registry-mirrors` reach).
 *
 * In all three cases an explicit `registryEndpoints` entry for the registry name wins (the
 * supernode applies the same map to the name it receives), then the default upstream's own URL
 * for its name, then the usual rules (loopback and `insecureRegistries` over plain HTTP).
 *
 * On Docker Hub a repository without a slash is an official image: `alpine` → `library/alpine`.
 */
import { InvalidNameError } from '../../shared/errors.js'
import { endpointFromUrl, resolveEndpoint, type RegistryEndpoint } from '../../shared/oci/endpoints.js'
import { DOCKER_HUB, MAX_NAME_LENGTH, isValidRegistryHost, normalizeRegistry, validateRepository } from '../../shared/oci/reference.js'

export const DEFAULT_UPSTREAM = 'https://registry-1.docker.io'

export interface UpstreamResolverInit {
  /** Base URL of the default upstream (`--upstream`); default https://registry-1.docker.io (docker.io). */
  upstream?: string
  /** Registry name → base URL (config `registryEndpoints`). */
  registryEndpoints?: Record<string, string>
  /** Registry names reached over plain HTTP (config `insecureRegistries`). */
  insecureRegistries?: string[]
}

export interface UpstreamQuery {
  /** The repository as it appears in the URL, possibly with a registry as first segment. */
  name: string
  /** containerd's `?ns=` query parameter. */
  ns?: string
}

export interface ResolvedUpstream {
  /** Registry name as clients know it: `docker.io`, `127.0.0.1:5000`. */
  registry: string
  endpoint: RegistryEndpoint
  /** Repository inside that registry, validated (`library/alpine`). */
  repository: string
}

export class UpstreamResolver {
  private readonly defaultEndpoint: RegistryEndpoint
  private readonly endpoints: Record<string, string>
  private readonly insecure: string[]

  constructor (init: UpstreamResolverInit = {}) {
    this.defaultEndpoint = endpointFromUrl(init.upstream ?? DEFAULT_UPSTREAM)
    this.endpoints = { ...init.registryEndpoints }
    this.insecure = [...(init.insecureRegistries ?? [])]
  }

  /** The default upstream (for logs and readiness checks). */
  get defaultUpstream (): RegistryEndpoint {
    return { ...this.defaultEndpoint }
  }

  /** Throws InvalidNameError for a bad registry or repository name. */
  resolve (query: UpstreamQuery): ResolvedUpstream {
    const { name, ns } = query
    if (ns !== undefined && ns !== '') return this.build(this.registryName(ns), name)

    const slash = name.indexOf('/')
    if (slash !== -1) {
      const first = name.slice(0, slash)
      if (looksLikeRegistry(first)) return this.build(this.registryName(first), name.slice(slash + 1))
    }
    // the default upstream goes through the same mapping as a named registry, so the mirror
    // (manifests), the back-to-source path and the supernode all reach the same endpoint
    return this.build(this.defaultEndpoint.name, name)
  }

  private registryName (candidate: string): string {
    if (!isValidRegistryHost(candidate)) throw new InvalidNameError(`invalid registry name: ${JSON.stringify(candidate.slice(0, 80))}`)
    return normalizeRegistry(candidate)
  }

  private build (registry: string, repository: string): ResolvedUpstream {
    // The default upstream's registry keeps its configured URL unless an explicit mapping says otherwise.
    const mapped = this.endpoints[registry] !== undefined
    const endpoint = !mapped && registry === this.defaultEndpoint.name
      ? { ...this.defaultEndpoint }
      : resolveEndpoint(registry, { endpoints: this.endpoints, insecure: this.insecure })
    return this.finish(registry, endpoint, repository)
  }

  private finish (registry: string, endpoint: RegistryEndpoint, name: string): ResolvedUpstream {
    const repository = registry === DOCKER_HUB && name !== '' && !name.includes('/') ? `library/${name}` : name
    validateRepository(repository)
    if (registry.length + 1 + repository.length > MAX_NAME_LENGTH) throw new InvalidNameError(`name longer than ${MAX_NAME_LENGTH} characters`)
    return { registry, endpoint: { ...endpoint }, repository }
  }
}

function looksLikeRegistry (segment: string): boolean {
  return segment.includes('.') || segment.includes(':') || segment === 'localhost'
}
