/** Blob stores in a temp dir for one describe block: closed and removed after it. */
import { before, after } from 'node:test'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { BlobStore, type BlobStoreInit } from '../../shared/store/blob-store.js'

export interface TempStores {
  /** A fresh path under the temp dir (nothing created). */
  dir: () => string
  /** An initialised store over `init.dir`, or over a fresh path. */
  open: (init?: Partial<BlobStoreInit>) => Promise<BlobStore>
}

/** Call inside a describe: registers the before/after that make and remove the temp dir. */
export function tempStores (name: string): TempStores {
  const logger = pino({ level: 'silent' })
  const stores: BlobStore[] = []
  let root = ''
  let n = 0
  before(async () => { root = await mkdtemp(join(tmpdir(), `damselfly-${name}-`)) })
  after(async () => {
    for (const s of stores) await s.close().catch(() => {})
    await rm(root, { recursive: true, force: true })
  })
  const dir = (): string => join(root, `s${n++}`)
  return {
    dir,
    open: async (init = {}) => {
      const store = new BlobStore({ logger, ...init, dir: init.dir ?? dir() })
      await store.init()
      stores.push(store)
      return store
    }
  }
}
