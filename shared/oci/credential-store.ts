/**
 * Configured registry credentials for the daemon's and the supernode's own fetches (preheat,
 * back-to-source, the supernode's origin fetch) when the client sent none. Two sources:
 *
 * - a YAML/JSON credentials file: `registries: { "<registry name>": { username, password } }`;
 * - Docker's `config.json`: `auths: { "<host>": { auth: base64(user:pass) } | { username, password } }`,
 *   `https://index.docker.io/v1/` meaning docker.io.
 *
 * Both are secret files (a warning when group/others may read them). Secrets are never logged:
 * only registry names and counts are.
 *
 * The order of precedence, applied by `withConfiguredCredentials`: the client's own
 * Authorization always wins; configured credentials otherwise; anonymous last. Access checks
 * (who may have a blob) must use the raw client, never the wrapped one: configured credentials
 * serve this node's fetch, they never decide what a client may pull.
 */
import { parse as parseYaml } from 'yaml'
import type { Logger } from 'pino'
import { ConfigError } from '../errors.js'
import { readSecretFile } from '../security/secret-file.js'
import { normalizeRegistry, DOCKER_HUB } from './reference.js'
import type { RegistryEndpoint } from './endpoints.js'
import {
  ANONYMOUS, type BlobOptions, type BlobResult, type Credentials, type GetBlobOptions, type ManifestOptions,
  type ManifestResult, type RegistryResponse, type RequestOptions
} from './registry-types.js'

export type BasicCredentials = Extract<Credentials, { kind: 'basic' }>

export interface CredentialSources {
  /** YAML/JSON: `registries: { name: { username, password } }`. */
  credentialsFile?: string
  /** Docker's config.json (`auths`). */
  dockerConfig?: string
}

/** Docker's config.json names Docker Hub by these keys. */
const DOCKER_HUB_KEYS = new Set(['https://index.docker.io/v1/', 'https://index.docker.io/v1', 'index.docker.io', 'registry-1.docker.io', 'docker.io'])

/** A config.json / credentials-file key (`host`, `host:port`, `https://host/v2/`) → registry name. */
export function registryNameOfKey (key: string): string {
  const k = key.trim()
  if (DOCKER_HUB_KEYS.has(k) || DOCKER_HUB_KEYS.has(k.toLowerCase())) return DOCKER_HUB
  let host = k
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(host)) {
    try {
      host = new URL(host).host
    } catch {
      throw new ConfigError(`invalid registry key ${JSON.stringify(key.slice(0, 120))}`)
    }
  } else {
    host = host.replace(/\/.*$/, '')
  }
  if (host === '') throw new ConfigError(`invalid registry key ${JSON.stringify(key.slice(0, 120))}`)
  const lower = host.toLowerCase()
  if (lower === 'index.docker.io' || lower === 'registry-1.docker.io') return DOCKER_HUB
  return normalizeRegistry(lower)
}

function isRecord (v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

/** Parse a credentials file's text (YAML or JSON). Errors name the registry, never a secret. */
export function parseCredentialsFile (text: string, path: string): Map<string, BasicCredentials> {
  let value: unknown
  try {
    value = parseYaml(text)
  } catch (err) {
    throw new ConfigError(`credentials file ${path} is not valid YAML: ${(err as Error).message.split('\n')[0]}`)
  }
  if (value == null) return new Map()
  if (!isRecord(value)) throw new ConfigError(`credentials file ${path} must hold a mapping with "registries"`)
  for (const key of Object.keys(value)) {
    if (key !== 'registries') throw new ConfigError(`credentials file ${path}: unknown key "${key}"`)
  }
  const registries = value.registries ?? {}
  if (!isRecord(registries)) throw new ConfigError(`credentials file ${path}: "registries" must map registry names to { username, password }`)
  const out = new Map<string, BasicCredentials>()
  for (const [name, entry] of Object.entries(registries)) {
    if (!isRecord(entry) || typeof entry.username !== 'string' || typeof entry.password !== 'string' || entry.username === '') {
      throw new ConfigError(`credentials file ${path}: registry "${name}" needs a string username and password`)
    }
    out.set(registryNameOfKey(name), { kind: 'basic', username: entry.username, password: entry.password })
  }
  return out
}

/** Parse Docker's config.json text: `auths` entries with `auth` (base64 user:pass) or username/password. */
export function parseDockerConfig (text: string, path: string): Map<string, BasicCredentials> {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (err) {
    throw new ConfigError(`docker config ${path} is not valid JSON: ${(err as Error).message.split('\n')[0]}`)
  }
  if (!isRecord(value)) throw new ConfigError(`docker config ${path} must hold a JSON object`)
  const auths = value.auths ?? {}
  if (!isRecord(auths)) throw new ConfigError(`docker config ${path}: "auths" must be an object`)
  const out = new Map<string, BasicCredentials>()
  for (const [key, entry] of Object.entries(auths)) {
    if (!isRecord(entry)) throw new ConfigError(`docker config ${path}: entry "${key}" must be an object`)
    let username: string | undefined
    let password: string | undefined
    if (typeof entry.auth === 'string' && entry.auth !== '') {
      const decoded = Buffer.from(entry.auth, 'base64').toString('utf8')
      const colon = decoded.indexOf(':')
      if (colon <= 0) throw new ConfigError(`docker config ${path}: entry "${key}" has an "auth" that is not base64(user:password)`)
      username = decoded.slice(0, colon)
      password = decoded.slice(colon + 1)
    } else if (typeof entry.username === 'string' && typeof entry.password === 'string' && entry.username !== '') {
      username = entry.username
      password = entry.password
    } else {
      // identitytoken / credential helpers are not supported; an empty entry (docker login via a helper) is skipped
      continue
    }
    out.set(registryNameOfKey(key), { kind: 'basic', username, password })
  }
  return out
}

export class CredentialStore {
  private readonly byRegistry: Map<string, BasicCredentials>

  constructor (entries: Iterable<[string, BasicCredentials]> = []) {
    this.byRegistry = new Map()
    for (const [name, creds] of entries) this.byRegistry.set(registryNameOfKey(name), creds)
  }

  /**
   * Load the configured files (the credentials file wins over config.json for a registry both
   * name). Logs the registry names, never a secret; warns when a file is group/other-readable.
   */
  static load (sources: CredentialSources, logger: Logger): CredentialStore {
    const entries = new Map<string, BasicCredentials>()
    if (sources.dockerConfig != null) {
      const text = readSecretFile(sources.dockerConfig, 'docker config', logger).toString('utf8')
      for (const [k, v] of parseDockerConfig(text, sources.dockerConfig)) entries.set(k, v)
    }
    if (sources.credentialsFile != null) {
      const text = readSecretFile(sources.credentialsFile, 'registry credentials', logger).toString('utf8')
      for (const [k, v] of parseCredentialsFile(text, sources.credentialsFile)) entries.set(k, v)
    }
    const store = new CredentialStore(entries)
    if (store.size > 0) logger.info({ component: 'credentials', registries: store.registries() }, 'configured registry credentials loaded')
    return store
  }

  get size (): number {
    return this.byRegistry.size
  }

  /** Registry names that have credentials (for logs; no secrets). */
  registries (): string[] {
    return [...this.byRegistry.keys()].sort()
  }

  credentialsFor (registryName: string): Credentials | undefined {
    let name: string
    try {
      name = registryNameOfKey(registryName)
    } catch {
      return undefined
    }
    return this.byRegistry.get(name)
  }
}

/** The client's own credentials when it sent any; the configured ones otherwise; anonymous last. */
export function effectiveCredentials (store: Pick<CredentialStore, 'credentialsFor'>, registryName: string, own: Credentials | undefined): Credentials {
  if (own !== undefined && own.kind !== 'anonymous') return own
  return store.credentialsFor(registryName) ?? ANONYMOUS
}

/** The registry-client methods the wrapper knows (RegistryClient has them all). */
export interface CredentialedMethods {
  getBlob: (endpoint: RegistryEndpoint, repository: string, digest: string, opts: GetBlobOptions) => Promise<BlobResult>
  headBlob: (endpoint: RegistryEndpoint, repository: string, digest: string, opts: BlobOptions) => Promise<{ size: number, digest: string }>
  getManifest: (endpoint: RegistryEndpoint, repository: string, reference: string, opts: ManifestOptions) => Promise<ManifestResult>
  request: (endpoint: RegistryEndpoint, path: string, opts: RequestOptions) => Promise<RegistryResponse>
}

export interface WithCredentialsOptions {
  /**
   * Called before configured credentials replace a blob request's anonymous ones; throwing
   * refuses the request (the daemon checks there that an anonymous client may have the blob).
   */
  beforeBlob?: (endpoint: RegistryEndpoint, repository: string, digest: string, signal?: AbortSignal) => Promise<void>
}

/**
 * A view of `client` whose requests without credentials use the configured ones for the
 * endpoint's registry name. Only the methods `client` has are present; it does not own
 * `client` (no close). Never hand this to an access check.
 */
export function withConfiguredCredentials<C extends Partial<CredentialedMethods>> (client: C, store: Pick<CredentialStore, 'credentialsFor'>, options: WithCredentialsOptions = {}): Pick<C, keyof CredentialedMethods & keyof C> {
  const substitutes = (ep: RegistryEndpoint, own: Credentials | undefined): Credentials | undefined => {
    const eff = effectiveCredentials(store, ep.name, own)
    return eff === own || (own === undefined && eff.kind === 'anonymous') ? undefined : eff
  }
  const out: Partial<CredentialedMethods> = {}
  const { getBlob, headBlob, getManifest, request } = client
  if (getBlob !== undefined) {
    out.getBlob = async (ep, repository, digest, opts = {}) => {
      const sub = substitutes(ep, opts.credentials)
      if (sub === undefined) return await getBlob.call(client, ep, repository, digest, opts)
      await options.beforeBlob?.(ep, repository, digest, opts.signal)
      return await getBlob.call(client, ep, repository, digest, { ...opts, credentials: sub })
    }
  }
  if (headBlob !== undefined) {
    out.headBlob = async (ep, repository, digest, opts = {}) => {
      const sub = substitutes(ep, opts.credentials)
      if (sub === undefined) return await headBlob.call(client, ep, repository, digest, opts)
      await options.beforeBlob?.(ep, repository, digest, opts.signal)
      return await headBlob.call(client, ep, repository, digest, { ...opts, credentials: sub })
    }
  }
  if (getManifest !== undefined) {
    out.getManifest = async (ep, repository, reference, opts = {}) => {
      const sub = substitutes(ep, opts.credentials)
      return await getManifest.call(client, ep, repository, reference, sub === undefined ? opts : { ...opts, credentials: sub })
    }
  }
  if (request !== undefined) {
    out.request = async (ep, path, opts = {}) => {
      const sub = substitutes(ep, opts.credentials)
      return await request.call(client, ep, path, sub === undefined ? opts : { ...opts, credentials: sub })
    }
  }
  return out as Pick<C, keyof CredentialedMethods & keyof C>
}
