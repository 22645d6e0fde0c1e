/**
 * Where a registry name's API lives: explicit mapping, Docker Hub's API host, plain HTTP for
 * loopback and configured insecure registries, HTTPS otherwise.
 */
import { isIP } from 'node:net'
import { InvalidReferenceError } from '../errors.js'
import { DOCKER_HUB, DOCKER_HUB_API_HOST, normalizeRegistry } from './reference.js'

export interface RegistryEndpoint {
  /** Registry name as it appears in references: `docker.io`, `127.0.0.1:5000`. */
  name: string
  /** Base URL without trailing slash: `https://registry-1.docker.io`. */
  url: string
}

export interface ResolveEndpointOptions {
  /** Registry name → base URL; wins over every other rule. */
  endpoints?: Record<string, string>
  /** Registry names (host or host:port) to reach over plain HTTP. */
  insecure?: string[]
}

/** `host:port` / `[v6]:port` / `host` → host without port or brackets. */
export function hostOf (name: string): string {
  if (name.startsWith('[')) {
    const end = name.indexOf(']')
    return end === -1 ? name : name.slice(1, end)
  }
  const colon = name.lastIndexOf(':')
  return colon !== -1 && name.indexOf(':') === colon ? name.slice(0, colon) : name
}

export function isLoopbackHost (host: string): boolean {
  const h = host.toLowerCase()
  if (h === 'localhost' || h === '::1') return true
  return isIP(h) === 4 && h.startsWith('127.')
}

function trimSlash (url: string): string {
  return url.replace(/\/+$/, '')
}

export function resolveEndpoint (name: string, opts: ResolveEndpointOptions = {}): RegistryEndpoint {
  const normalized = normalizeRegistry(name)
  const mapped = opts.endpoints?.[name] ?? opts.endpoints?.[normalized]
  if (mapped !== undefined) return { name: normalized, url: trimSlash(mapped) }
  if (normalized === DOCKER_HUB) return { name: DOCKER_HUB, url: `https://${DOCKER_HUB_API_HOST}` }
  const host = hostOf(normalized)
  const insecure = opts.insecure ?? []
  const plain = isLoopbackHost(host) || insecure.includes(normalized) || insecure.includes(host)
  return { name: normalized, url: `${plain ? 'http' : 'https'}://${normalized}` }
}

/** An endpoint for a base URL; its name is the URL's host[:port] (Docker Hub's API host → `docker.io`). */
export function endpointFromUrl (url: string): RegistryEndpoint {
  let u: URL
  try {
    u = new URL(url)
  } catch (err) {
    throw new InvalidReferenceError(`invalid registry URL: ${JSON.stringify(url.slice(0, 120))}`, { cause: err })
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new InvalidReferenceError(`unsupported registry URL scheme: ${u.protocol}`)
  const name = u.host.toLowerCase() === DOCKER_HUB_API_HOST ? DOCKER_HUB : normalizeRegistry(u.host)
  return { name, url: trimSlash(`${u.protocol}//${u.host}${u.pathname}`) }
}
