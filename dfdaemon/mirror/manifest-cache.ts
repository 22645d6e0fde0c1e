/**
 * Manifests kept on disk so pulls go on while the origin is down. A manifest is
 * content-addressed: it is stored under its digest, checked against it on
 * every read (a damaged entry is deleted, never served), and served only to
 * requests for a repository it was fetched for. For tags only the last digest
 * seen per (registry, repository, tag) is remembered. Bounded by entry count
 * and bytes; the least recently used entries go first.
 *
 *   <dir>/sha256/<hex>   one line of JSON ({ mediaType, repos }), a newline, the manifest bytes
 *   <dir>/tags.json      { "<registry>/<repository>:<tag>": { digest, at } }
 */
import { mkdir, readdir, readFile, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import type { Logger } from '../../shared/logging.js'
import { isDigest, sha256Hex } from '../../shared/oci/digest.js'
import { writeFileAtomic } from '../../shared/store/atomic-write.js'

export interface ManifestCacheInit {
  /** The cache's own directory (under the daemon's data dir). */
  dir: string
  logger?: Logger
  /** Bytes of manifests kept at most. */
  maxBytes?: number
  maxEntries?: number
  /** Tags remembered at most. */
  maxTags?: number
  /** A tag's last digest older than this is not used as a fallback. */
  tagMaxAgeMs?: number
}

export interface CachedManifest {
  digest: string
  mediaType: string
  body: Buffer
}

interface Meta {
  mediaType: string
  /** `<registry>/<repository>` names this manifest was fetched for. */
  repos: string[]
}

interface TagEntry {
  digest: string
  at: number
}

export const DEFAULT_CACHE_MAX_BYTES = 64 << 20
export const DEFAULT_CACHE_MAX_ENTRIES = 4096
export const DEFAULT_CACHE_MAX_TAGS = 4096
export const DEFAULT_TAG_MAX_AGE_MS = 7 * 24 * 3600_000
/** Repositories remembered per manifest (a base image's manifest is shared by few names). */
const MAX_REPOS_PER_ENTRY = 64

export class ManifestCache {
  private readonly dir: string
  private readonly log: Logger | undefined
  private readonly maxBytes: number
  private readonly maxEntries: number
  private readonly maxTags: number
  private readonly tagMaxAgeMs: number
  /** hex → size on disk; Map order is least recently used first. */
  private readonly entries = new Map<string, number>()
  private readonly tags = new Map<string, TagEntry>()
  private bytes = 0
  private savingTags: Promise<void> = Promise.resolve()
  private tagsDirty = false

  constructor (init: ManifestCacheInit) {
    this.dir = init.dir
    this.log = init.logger?.child({ component: 'manifest-cache' })
    this.maxBytes = init.maxBytes ?? DEFAULT_CACHE_MAX_BYTES
    this.maxEntries = init.maxEntries ?? DEFAULT_CACHE_MAX_ENTRIES
    this.maxTags = init.maxTags ?? DEFAULT_CACHE_MAX_TAGS
    this.tagMaxAgeMs = init.tagMaxAgeMs ?? DEFAULT_TAG_MAX_AGE_MS
  }

  private get manifestsDir (): string { return join(this.dir, 'sha256') }
  private get tagsFile (): string { return join(this.dir, 'tags.json') }

  /** Load what an earlier run left (oldest first by modification time). */
  async init (): Promise<void> {
    await mkdir(this.manifestsDir, { recursive: true })
    const found: Array<{ hex: string, size: number, mtime: number }> = []
    for (const name of await readdir(this.manifestsDir)) {
      if (!/^[a-f0-9]{64}$/.test(name)) continue
      const st = await stat(join(this.manifestsDir, name)).catch(() => undefined)
      if (st?.isFile() === true) found.push({ hex: name, size: st.size, mtime: st.mtimeMs })
    }
    found.sort((a, b) => a.mtime - b.mtime)
    for (const f of found) { this.entries.set(f.hex, f.size); this.bytes += f.size }
    try {
      const parsed = JSON.parse(await readFile(this.tagsFile, 'utf8')) as Record<string, TagEntry>
      for (const [key, e] of Object.entries(parsed)) {
        if (typeof e?.digest === 'string' && isDigest(e.digest) && typeof e.at === 'number') this.tags.set(key, { digest: e.digest, at: e.at })
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.log?.warn({ err: (err as Error).message }, 'ignoring an unreadable tag file')
    }
    await this.evict()
  }

  /** A manifest by digest, if cached for `repo` (`<registry>/<repository>`) and still intact. */
  async get (digest: string, repo: string): Promise<CachedManifest | undefined> {
    if (!isDigest(digest)) return undefined
    const hex = digest.slice('sha256:'.length)
    if (!this.entries.has(hex)) return undefined
    const entry = await this.read(hex)
    if (entry == null || !entry.meta.repos.includes(repo)) return undefined
    this.touch(hex)
    return { digest, mediaType: entry.meta.mediaType, body: entry.body }
  }

  /** Keep a manifest fetched for `repo`; ignored unless `body` hashes to `digest`. */
  async put (digest: string, repo: string, mediaType: string, body: Buffer): Promise<void> {
    if (!isDigest(digest) || `sha256:${sha256Hex(body)}` !== digest) return
    const hex = digest.slice('sha256:'.length)
    const existing = this.entries.has(hex) ? await this.read(hex) : undefined
    if (existing != null && existing.meta.mediaType === mediaType && existing.meta.repos.includes(repo)) {
      this.touch(hex)
      return
    }
    const repos = [repo, ...(existing?.meta.repos ?? []).filter(r => r !== repo)].slice(0, MAX_REPOS_PER_ENTRY)
    const data = Buffer.concat([Buffer.from(JSON.stringify({ mediaType, repos } satisfies Meta) + '\n'), body])
    await writeFileAtomic(join(this.manifestsDir, hex), data)
    this.bytes += data.byteLength - (this.entries.get(hex) ?? 0)
    this.entries.delete(hex)
    this.entries.set(hex, data.byteLength)
    await this.evict()
  }

  /** The last digest seen for a tag, unless it is older than the fallback age. */
  tag (registry: string, repository: string, tag: string): string | undefined {
    const e = this.tags.get(tagKey(registry, repository, tag))
    return e != null && Date.now() - e.at <= this.tagMaxAgeMs ? e.digest : undefined
  }

  setTag (registry: string, repository: string, tag: string, digest: string): void {
    if (!isDigest(digest)) return
    const key = tagKey(registry, repository, tag)
    this.tags.delete(key)
    this.tags.set(key, { digest, at: Date.now() })
    while (this.tags.size > this.maxTags) this.tags.delete(this.tags.keys().next().value as string)
    this.saveTags()
  }

  /** Wait for pending tag writes (shutdown, tests). */
  async flush (): Promise<void> {
    await this.savingTags
  }

  private touch (hex: string): void {
    const size = this.entries.get(hex)
    if (size === undefined) return
    this.entries.delete(hex)
    this.entries.set(hex, size)
  }

  private async read (hex: string): Promise<{ meta: Meta, body: Buffer } | undefined> {
    let data: Buffer
    try {
      data = await readFile(join(this.manifestsDir, hex))
    } catch {
      this.forget(hex)
      return undefined
    }
    const nl = data.indexOf(0x0a)
    try {
      if (nl < 0) throw new Error('no header')
      const meta = JSON.parse(data.subarray(0, nl).toString('utf8')) as Meta
      const body = data.subarray(nl + 1)
      if (typeof meta.mediaType !== 'string' || !Array.isArray(meta.repos) || sha256Hex(body) !== hex) throw new Error('content does not match its digest')
      return { meta, body }
    } catch (err) {
      this.log?.warn({ digest: `sha256:${hex}`, err: (err as Error).message }, 'dropping a damaged cached manifest')
      await this.remove(hex)
      return undefined
    }
  }

  private async evict (): Promise<void> {
    while (this.entries.size > 0 && (this.entries.size > this.maxEntries || this.bytes > this.maxBytes)) {
      await this.remove(this.entries.keys().next().value as string)
    }
  }

  private async remove (hex: string): Promise<void> {
    this.forget(hex)
    await rm(join(this.manifestsDir, hex), { force: true })
  }

  private forget (hex: string): void {
    const size = this.entries.get(hex)
    if (size === undefined) return
    this.entries.delete(hex)
    this.bytes -= size
  }

  /** At most one write in flight and one queued; each writes the latest state. */
  private saveTags (): void {
    if (this.tagsDirty) return
    this.tagsDirty = true
    this.savingTags = this.savingTags.then(async () => {
      this.tagsDirty = false
      await writeFileAtomic(this.tagsFile, JSON.stringify(Object.fromEntries(this.tags)))
    }).catch((err: unknown) => { this.log?.warn({ err: (err as Error).message }, 'cannot save the tag file') })
  }
}

function tagKey (registry: string, repository: string, tag: string): string {
  return `${registry}/${repository}:${tag}`
}
