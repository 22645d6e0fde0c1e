/**
 * Configured registry credentials for the daemon's and the supernode's own fetches (preheat,
 * back-to-source, the supernode's origin fetch) when the client sent none. Two sources:
 *
 * - a YAML/JSON credentials file: `registries: { "<registry name>": { username, password } }`;
 * - Docker's `config.json` (see docker-config.ts): `auths` (user/password or an identity token),
 *   `credHelpers` per registry and `credsStore` for the rest, run as Docker runs them
 *   (credential-helper.ts).
 *
 * For a registry, the credentials file wins; then, as in Docker, the helper config.json names for
 * it (its `credHelpers` entry, else `credsStore`) is its only source, and its inline `auths` entry
 * is used only when no helper applies. A helper that has nothing for the registry means anonymous;
 * one that fails fails the fetch (CredentialHelperError).
 *
 * Both files are secret files (a warning when group/others may read them). Secrets are never
 * logged: only registry names, helper names and counts are.
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
import type { RegistryEndpoint } from './endpoints.js'
import { CredentialHelper, type CredentialHelperInit } from './credential-helper.js'
import { helperServerUrl, parseDockerConfig, registryNameOfKey, type ConfiguredCredentials, type DockerConfig } from './docker-config.js'
import {
  ANONYMOUS, type BlobOptions, type BlobResult, type Credentials, type GetBlobOptions, type ManifestOptions,
  type ManifestResult, type RegistryResponse, type RequestOptions
} from './registry-types.js'

export { parseDockerConfig, registryNameOfKey, type ConfiguredCredentials, type DockerConfig } from './docker-config.js'

export type BasicCredentials = Extract<Credentials, { kind: 'basic' }>

export interface CredentialSources {
  /** YAML/JSON: `registries: { name: { username, password } }`. */
  credentialsFile?: string
  /** Docker's config.json (`auths`, `credHelpers`, `credsStore`). */
  dockerConfig?: string
}

export interface CredentialStoreOptions {
  /** How helpers run (environment and PATH, timeout, cache lifetimes); default: as credential-helper.ts says. */
  helper?: Omit<CredentialHelperInit, 'name' | 'logger'>
}

/** What the store needs of a helper (CredentialHelper; a stub in tests). */
export type HelperLookup = Pick<CredentialHelper, 'get'>

/** Docker config.json credentials: the parsed file and how to reach a helper by name. */
export interface DockerCredentials {
  config: DockerConfig
  helper: (name: string) => HelperLookup
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

export class CredentialStore {
  private readonly byRegistry: Map<string, ConfiguredCredentials>

  /** `entries` (the credentials file) win over everything in `docker`. */
  constructor (entries: Iterable<[string, ConfiguredCredentials]> = [], private readonly docker?: DockerCredentials) {
    this.byRegistry = new Map()
    for (const [name, creds] of entries) this.byRegistry.set(registryNameOfKey(name), creds)
  }

  /**
   * Load the configured files. Logs registry and helper names, never a secret; warns when a
   * file is group/other-readable and when a named helper is not in PATH (fetches needing it
   * then fail, as `docker pull` would).
   */
  static load (sources: CredentialSources, logger: Logger, options: CredentialStoreOptions = {}): CredentialStore {
    const log = logger.child({ component: 'credentials' })
    let docker: DockerCredentials | undefined
    if (sources.dockerConfig != null) {
      const text = readSecretFile(sources.dockerConfig, 'docker config', logger).toString('utf8')
      const config = parseDockerConfig(text, sources.dockerConfig)
      const helpers = new Map<string, CredentialHelper>()
      for (const name of [...config.credHelpers.values(), config.credsStore ?? '']) {
        if (name === '' || helpers.has(name)) continue
        const helper = new CredentialHelper({ ...options.helper, name, logger })
        helpers.set(name, helper)
        helper.locate().then((path) => {
          if (path === undefined) log.warn({ helper: helper.program }, 'credential helper named in the docker config is not in PATH; fetches that need it will fail')
        }, () => undefined)
      }
      docker = { config, helper: (name) => helpers.get(name) as CredentialHelper }
    }
    const entries = sources.credentialsFile != null
      ? parseCredentialsFile(readSecretFile(sources.credentialsFile, 'registry credentials', logger).toString('utf8'), sources.credentialsFile)
      : new Map<string, BasicCredentials>()
    const store = new CredentialStore(entries, docker)
    if (store.size > 0) {
      log.info({
        registries: store.registries(),
        credHelpers: docker !== undefined && docker.config.credHelpers.size > 0 ? Object.fromEntries(docker.config.credHelpers) : undefined,
        credsStore: docker?.config.credsStore
      }, 'configured registry credentials loaded')
    }
    return store
  }

  /** How many registries have credentials configured, a default helper (credsStore) counting as one. */
  get size (): number {
    return this.registries().length + (this.docker?.config.credsStore !== undefined ? 1 : 0)
  }

  /** Registry names that have credentials or a helper of their own (for logs; no secrets). */
  registries (): string[] {
    const names = new Set(this.byRegistry.keys())
    for (const name of this.docker?.config.auths.keys() ?? []) names.add(name)
    for (const [name, helper] of this.docker?.config.credHelpers ?? []) if (helper !== '') names.add(name)
    return [...names].sort()
  }

  /** Is anything configured for this registry (credentials, or a helper to ask)? Runs nothing. */
  covers (registryName: string): boolean {
    let name: string
    try {
      name = registryNameOfKey(registryName)
    } catch {
      return false
    }
    if (this.byRegistry.has(name)) return true
    const config = this.docker?.config
    if (config === undefined) return false
    return (config.credHelpers.get(name) ?? config.credsStore ?? '') !== '' || config.auths.has(name)
  }

  /** The configured credentials for a registry, undefined for none; may run a helper (CredentialHelperError). */
  async credentialsFor (registryName: string): Promise<Credentials | undefined> {
    let name: string
    try {
      name = registryNameOfKey(registryName)
    } catch {
      return undefined
    }
    const own = this.byRegistry.get(name)
    if (own !== undefined || this.docker === undefined) return own
    const { config, helper } = this.docker
    const helperName = config.credHelpers.get(name) ?? config.credsStore ?? ''
    if (helperName !== '') return await helper(helperName).get(helperServerUrl(name))
    return config.auths.get(name)
  }
}

/** The client's own credentials when it sent any; the configured ones otherwise; anonymous last. */
export async function effectiveCredentials (store: Pick<CredentialStore, 'credentialsFor'>, registryName: string, own: Credentials | undefined): Promise<Credentials> {
  if (own !== undefined && own.kind !== 'anonymous') return own
  return (await store.credentialsFor(registryName)) ?? ANONYMOUS
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
export function withConfiguredCredentials<C extends Partial<CredentialedMethods>> (client: C, store: Pick<CredentialStore, 'covers' | 'credentialsFor'>, options: WithCredentialsOptions = {}): Pick<C, keyof CredentialedMethods & keyof C> {
  /** The configured credentials to use instead of `own`, if any; `gate` first (before any helper runs). */
  const substitutes = async (ep: RegistryEndpoint, own: Credentials | undefined, gate?: () => Promise<void>): Promise<Credentials | undefined> => {
    if ((own !== undefined && own.kind !== 'anonymous') || !store.covers(ep.name)) return undefined
    await gate?.()
    return await store.credentialsFor(ep.name)
  }
  const out: Partial<CredentialedMethods> = {}
  const { getBlob, headBlob, getManifest, request } = client
  if (getBlob !== undefined) {
    out.getBlob = async (ep, repository, digest, opts = {}) => {
      const sub = await substitutes(ep, opts.credentials, async () => { await options.beforeBlob?.(ep, repository, digest, opts.signal) })
      return await getBlob.call(client, ep, repository, digest, sub === undefined ? opts : { ...opts, credentials: sub })
    }
  }
  if (headBlob !== undefined) {
    out.headBlob = async (ep, repository, digest, opts = {}) => {
      const sub = await substitutes(ep, opts.credentials, async () => { await options.beforeBlob?.(ep, repository, digest, opts.signal) })
      return await headBlob.call(client, ep, repository, digest, sub === undefined ? opts : { ...opts, credentials: sub })
    }
  }
  if (getManifest !== undefined) {
    out.getManifest = async (ep, repository, reference, opts = {}) => {
      const sub = await substitutes(ep, opts.credentials)
      return await getManifest.call(client, ep, repository, reference, sub === undefined ? opts : { ...opts, credentials: sub })
    }
  }
  if (request !== undefined) {
    out.request = async (ep, path, opts = {}) => {
      const sub = await substitutes(ep, opts.credentials)
      return await request.call(client, ep, path, sub === undefined ? opts : { ...opts, credentials: sub })
    }
  }
  return out as Pick<C, keyof CredentialedMethods & keyof C>
}
