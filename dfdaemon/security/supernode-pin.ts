import { readFile, writeFile, rename, mkdir } from 'node:fs/promises'
import { dirname } from 'node:path'
import { peerIdFromString } from '@libp2p/peer-id'
import type { PeerId } from '@libp2p/interface'
import type { Logger } from 'pino'
import { ConfigError } from '../../shared/errors.js'

/**
 * The supernode's peer id this daemon trusts: given in the config, or
 * learned from the first `/api/v1/info` answer and kept in the data dir
 * (trust on first use). A supernode presenting another id is refused, and
 * its public key is what tickets are checked with.
 */
export class SupernodePin {
  private readonly path: string
  private readonly configured?: string
  private readonly log: Logger
  private pinned?: PeerId

  constructor (init: { path: string, configured?: string, logger: Logger }) {
    this.path = init.path
    this.configured = init.configured
    this.log = init.logger.child({ component: 'supernode-pin' })
  }

  async init (): Promise<void> {
    if (this.configured != null) {
      try {
        this.pinned = peerIdFromString(this.configured)
      } catch {
        throw new ConfigError(`supernodePeerId is not a peer id: "${this.configured}"`)
      }
      return
    }
    try {
      const text = (await readFile(this.path, 'utf8')).trim()
      if (text !== '') this.pinned = peerIdFromString(text)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.log.warn({ file: this.path, err: (err as Error).message }, 'ignoring an unreadable supernode pin')
    }
  }

  /** The pinned id, if any. */
  expected (): PeerId | undefined {
    return this.pinned
  }

  /** Accept `id` if it matches the pin, or pin it when nothing is pinned yet; false: refuse it. */
  async accept (id: PeerId): Promise<boolean> {
    if (this.pinned != null) {
      if (this.pinned.equals(id)) return true
      this.log.error({ expected: this.pinned.toString(), presented: id.toString() }, 'supernode presented another identity; refusing it')
      return false
    }
    this.pinned = id
    await mkdir(dirname(this.path), { recursive: true })
    await writeFile(`${this.path}.tmp`, `${id.toString()}\n`, { mode: 0o600 })
    await rename(`${this.path}.tmp`, this.path)
    this.log.info({ peer: id.toString() }, 'supernode identity pinned')
    return true
  }
}
