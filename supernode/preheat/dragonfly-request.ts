/**
 * Dragonfly's preheat requests (Harbor's "Dragonfly" provider, legacy and open
 * API) turned into a PreheatRequest: a manifest URL, headers and credentials.
 */
import { InvalidReferenceError } from '../../shared/errors.js'
import { endpointFromUrl } from '../../shared/oci/endpoints.js'
import { parseDigest } from '../../shared/oci/digest.js'
import { validateRepository, validateTag } from '../../shared/oci/reference.js'
import type { Credentials } from '../../shared/oci/registry-types.js'
import type { PreheatRequest } from './preheat-job.js'

export interface DragonflyPreheat {
  /** `<scheme>://<registry>/v2/<repository>/manifests/<tag|digest>` */
  url: string
  headers?: Record<string, unknown>
  username?: string
  password?: string
  /** `os/arch[/variant]` */
  platform?: string
}

const MANIFEST_PATH = /^\/v2\/(.+)\/manifests\/([^/]+)$/

/**
 * The URL's host is the registry name (resolved like any other, so loopback is
 * plain HTTP and configured endpoints apply); an `Authorization: Basic` header or
 * username/password become Basic credentials (token dance included), any other
 * Authorization header is passed through as is.
 */
export function fromDragonfly (input: DragonflyPreheat): PreheatRequest {
  let url: URL
  try {
    url = new URL(input.url)
  } catch (err) {
    throw new InvalidReferenceError('preheat url is not a URL', { cause: err })
  }
  const registry = endpointFromUrl(`${url.protocol}//${url.host}`).name
  const m = MANIFEST_PATH.exec(decodeURIComponent(url.pathname))
  if (m === null) throw new InvalidReferenceError('preheat url is not a /v2/<name>/manifests/<reference> URL')
  const repository = validateRepository(m[1])
  const reference = m[2].includes(':') ? parseDigest(m[2]).value : validateTag(m[2])
  const platforms = input.platform !== undefined && input.platform !== '' ? [input.platform] : undefined
  return { registry, repository, reference, platforms, credentials: credentialsOf(input) }
}

function credentialsOf (input: DragonflyPreheat): Credentials {
  if (input.username !== undefined && input.username !== '') return { kind: 'basic', username: input.username, password: input.password ?? '' }
  const entry = Object.entries(input.headers ?? {}).find(([name]) => name.toLowerCase() === 'authorization')
  const value = Array.isArray(entry?.[1]) ? (entry[1] as unknown[])[0] : entry?.[1]
  if (typeof value !== 'string' || value.trim() === '') return { kind: 'anonymous' }
  const basic = /^Basic\s+(\S+)\s*$/i.exec(value)
  if (basic !== null) {
    const decoded = Buffer.from(basic[1], 'base64').toString('utf8')
    const colon = decoded.indexOf(':')
    if (colon === -1) throw new InvalidReferenceError('malformed Basic authorization header')
    return { kind: 'basic', username: decoded.slice(0, colon), password: decoded.slice(colon + 1) }
  }
  return { kind: 'authorization', header: value.trim() }
}
