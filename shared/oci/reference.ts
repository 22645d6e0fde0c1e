/**
 * Image references (`[registry/]repository[:tag][@digest]`), parsed and normalised the way
 * the distribution reference grammar and the Docker CLI do it.
 */
import { InvalidNameError, InvalidReferenceError } from '../errors.js'
import { parseDigest } from './digest.js'

export interface ImageReference {
  /** Registry host[:port], normalised (`docker.io` for Docker Hub). */
  readonly registry: string
  /** Repository path inside the registry (`library/alpine` on Docker Hub). */
  readonly repository: string
  readonly tag?: string
  /** `sha256:<hex>` */
  readonly digest?: string
}

export const DOCKER_HUB = 'docker.io'
export const DOCKER_HUB_API_HOST = 'registry-1.docker.io'
export const MAX_NAME_LENGTH = 255

const COMPONENT = '[a-z0-9]+(?:(?:\\.|_|__|-+)[a-z0-9]+)*'
const REPOSITORY_RE = new RegExp(`^${COMPONENT}(?:/${COMPONENT})*$`)
const TAG_RE = /^[\w][\w.-]{0,127}$/
const DOMAIN_COMPONENT = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])'
const HOST_RE = new RegExp(`^(?:${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*|\\[[0-9a-fA-F:.]+\\])(?::[0-9]{1,5})?$`)

/** Throws InvalidNameError unless `name` is a valid repository path (without registry). */
export function validateRepository (name: string): string {
  if (typeof name !== 'string' || name.length === 0) throw new InvalidNameError('empty repository name')
  if (name.length > MAX_NAME_LENGTH) throw new InvalidNameError(`repository name longer than ${MAX_NAME_LENGTH} characters`)
  if (!REPOSITORY_RE.test(name)) throw new InvalidNameError(`invalid repository name: ${JSON.stringify(name.slice(0, 80))}`)
  return name
}

export function isValidRepository (name: string): boolean {
  try { validateRepository(name); return true } catch { return false }
}

export function isValidTag (tag: string): boolean {
  return typeof tag === 'string' && TAG_RE.test(tag)
}

/** Throws InvalidReferenceError unless `tag` matches `[\w][\w.-]{0,127}`. */
export function validateTag (tag: string): string {
  if (!isValidTag(tag)) throw new InvalidReferenceError(`invalid tag: ${JSON.stringify(String(tag).slice(0, 80))}`)
  return tag
}

export function isValidRegistryHost (host: string): boolean {
  return typeof host === 'string' && host.length <= 255 && HOST_RE.test(host)
}

/** Docker Hub's aliases collapse to `docker.io`. */
export function normalizeRegistry (registry: string): string {
  const lower = registry.toLowerCase()
  return lower === 'index.docker.io' || lower === DOCKER_HUB ? DOCKER_HUB : registry
}

/** The host that serves the registry API for `registry` (Docker Hub's API is not at docker.io). */
export function registryApiHost (registry: string): string {
  return normalizeRegistry(registry) === DOCKER_HUB ? DOCKER_HUB_API_HOST : registry
}

function looksLikeRegistry (component: string): boolean {
  return component.includes('.') || component.includes(':') || component === 'localhost'
}

/**
 * Parse `name[:tag][@digest]`. Throws InvalidReferenceError on a malformed reference,
 * InvalidNameError on a bad repository path, InvalidDigestError on a bad digest.
 */
export function parseReference (input: string): ImageReference {
  if (typeof input !== 'string' || input.length === 0) throw new InvalidReferenceError('empty reference')
  if (input.length > 512 + MAX_NAME_LENGTH) throw new InvalidReferenceError('reference too long')

  let rest = input
  let digest: string | undefined
  const at = rest.indexOf('@')
  if (at !== -1) {
    digest = parseDigest(rest.slice(at + 1)).value
    rest = rest.slice(0, at)
  }

  let tag: string | undefined
  const colon = rest.lastIndexOf(':')
  if (colon > rest.lastIndexOf('/')) {
    tag = validateTag(rest.slice(colon + 1))
    rest = rest.slice(0, colon)
  }
  if (rest.length === 0) throw new InvalidReferenceError('reference has no repository')

  let registry = DOCKER_HUB
  let repository = rest
  const slash = rest.indexOf('/')
  if (slash !== -1 && looksLikeRegistry(rest.slice(0, slash))) {
    registry = rest.slice(0, slash)
    repository = rest.slice(slash + 1)
    if (!isValidRegistryHost(registry)) throw new InvalidReferenceError(`invalid registry host: ${JSON.stringify(registry.slice(0, 80))}`)
    registry = normalizeRegistry(registry)
  }
  if (registry === DOCKER_HUB && !repository.includes('/')) repository = `library/${repository}`

  validateRepository(repository)
  if (registry.length + 1 + repository.length > MAX_NAME_LENGTH) throw new InvalidNameError('name longer than 255 characters')

  const ref: { registry: string, repository: string, tag?: string, digest?: string } = { registry, repository }
  if (tag !== undefined) ref.tag = tag
  if (digest !== undefined) ref.digest = digest
  return ref
}

/** `registry/repository[:tag][@digest]`; a reference with neither tag nor digest stays bare. */
export function formatReference (ref: ImageReference): string {
  let s = `${ref.registry}/${ref.repository}`
  if (ref.tag !== undefined) s += `:${ref.tag}`
  if (ref.digest !== undefined) s += `@${ref.digest}`
  return s
}

/** The tag or digest to ask a registry for (`latest` when the reference has neither). */
export function referenceTarget (ref: ImageReference): string {
  return ref.digest ?? ref.tag ?? 'latest'
}
