/**
 * Docker's `config.json` as far as registry credentials go, read the way the Docker CLI reads it:
 *
 * - `auths: { "<key>": { auth: base64(user:pass) } | { username, password } | { identitytoken } }`;
 *   an `identitytoken` (what `docker login` stores when the token server gave it a refresh token)
 *   wins over `auth` in the same entry; an empty entry (the login lives in a helper) is skipped.
 * - `credHelpers: { "<key>": "<name>" }`: that registry's credentials come from
 *   `docker-credential-<name>`; `""` means "no helper for this one" (its `auths` entry then).
 * - `credsStore: "<name>"`: the helper for every other registry.
 *
 * Keys name a registry as Docker does: `https://index.docker.io/v1/` (or `docker.io`,
 * `index.docker.io`, `registry-1.docker.io`) is Docker Hub; any other key is `host[:port]`, with or
 * without an `http(s)://` prefix and a path, case-insensitive. When two keys name one registry, the
 * exact form (`host[:port]`, Hub's URL) wins, as in Docker's own exact-then-normalised lookup.
 */
import { ConfigError } from '../errors.js'
import { normalizeRegistry, DOCKER_HUB } from './reference.js'
import { isValidHelperName } from './credential-helper.js'
import type { Credentials } from './registry-types.js'

/** What configuration may hold for a registry: a username and password, or an identity token. */
export type ConfiguredCredentials = Extract<Credentials, { kind: 'basic' | 'identity-token' }>

export interface DockerConfig {
  /** Registry name → inline credentials. */
  auths: Map<string, ConfiguredCredentials>
  /** Registry name → helper name; `''` means no helper for that registry (not even credsStore). */
  credHelpers: Map<string, string>
  /** The default helper, if any. */
  credsStore?: string
}

/** The key `docker login` gives Docker Hub, and what its credential helpers are asked for. */
export const DOCKER_HUB_SERVER_URL = 'https://index.docker.io/v1/'

/** Docker's config.json names Docker Hub by these keys. */
const DOCKER_HUB_KEYS = new Set([DOCKER_HUB_SERVER_URL, 'https://index.docker.io/v1', 'index.docker.io', 'registry-1.docker.io', 'docker.io'])

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

/** The server URL a credential helper is asked about for a registry (what `docker login` stored it under). */
export function helperServerUrl (registryName: string): string {
  const name = registryNameOfKey(registryName)
  return name === DOCKER_HUB ? DOCKER_HUB_SERVER_URL : name
}

/** Is `key` the exact form Docker looks up first for the registry it names? */
function isExactKey (key: string, name: string): boolean {
  return name === DOCKER_HUB ? key === DOCKER_HUB_SERVER_URL : key.toLowerCase() === name
}

/** Put `value` under `key`'s registry unless an exact key already holds it (exact beats normalised; else first wins). */
function setByKey<V> (out: Map<string, V>, exact: Set<string>, key: string, value: V): void {
  const name = registryNameOfKey(key)
  const isExact = isExactKey(key, name)
  if (out.has(name) && (exact.has(name) || !isExact)) return
  out.set(name, value)
  if (isExact) exact.add(name)
}

function isRecord (v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function helperName (value: unknown, where: string, path: string): string {
  if (typeof value !== 'string' || (value !== '' && !isValidHelperName(value))) {
    throw new ConfigError(`docker config ${path}: ${where} must name a credential helper (letters, digits, ".", "_", "-"), not a path`)
  }
  return value
}

function entryCredentials (key: string, entry: Record<string, unknown>, path: string): ConfiguredCredentials | undefined {
  if (typeof entry.identitytoken === 'string' && entry.identitytoken !== '') return { kind: 'identity-token', token: entry.identitytoken }
  if (typeof entry.auth === 'string' && entry.auth !== '') {
    const decoded = Buffer.from(entry.auth, 'base64').toString('utf8')
    const colon = decoded.indexOf(':')
    if (colon <= 0) throw new ConfigError(`docker config ${path}: entry "${key}" has an "auth" that is not base64(user:password)`)
    return { kind: 'basic', username: decoded.slice(0, colon), password: decoded.slice(colon + 1) }
  }
  if (typeof entry.username === 'string' && typeof entry.password === 'string' && entry.username !== '') {
    return { kind: 'basic', username: entry.username, password: entry.password }
  }
  return undefined // `{}` (the login is in a helper), or only an email
}

/** Parse Docker's config.json text. Errors name the key, never a secret; other keys are ignored. */
export function parseDockerConfig (text: string, path: string): DockerConfig {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (err) {
    throw new ConfigError(`docker config ${path} is not valid JSON: ${(err as Error).message.split('\n')[0]}`)
  }
  if (!isRecord(value)) throw new ConfigError(`docker config ${path} must hold a JSON object`)
  const auths = value.auths ?? {}
  if (!isRecord(auths)) throw new ConfigError(`docker config ${path}: "auths" must be an object`)
  const helpers = value.credHelpers ?? {}
  if (!isRecord(helpers)) throw new ConfigError(`docker config ${path}: "credHelpers" must map registries to helper names`)

  const config: DockerConfig = { auths: new Map(), credHelpers: new Map() }
  const exactAuths = new Set<string>()
  for (const [key, entry] of Object.entries(auths)) {
    if (!isRecord(entry)) throw new ConfigError(`docker config ${path}: entry "${key}" must be an object`)
    const creds = entryCredentials(key, entry, path)
    if (creds !== undefined) setByKey(config.auths, exactAuths, key, creds)
  }
  const exactHelpers = new Set<string>()
  for (const [key, name] of Object.entries(helpers)) {
    setByKey(config.credHelpers, exactHelpers, key, helperName(name, `credHelpers entry "${key}"`, path))
  }
  if (value.credsStore !== undefined) {
    const store = helperName(value.credsStore, '"credsStore"', path)
    if (store !== '') config.credsStore = store
  }
  return config
}
