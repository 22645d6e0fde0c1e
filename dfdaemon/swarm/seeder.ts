import type { Logger } from 'pino'
import type { BlobStore } from '../../shared/store/blob-store.js'
import { Bitfield } from '../../shared/pieces/bitfield.js'
import { MAX_ANNOUNCED_BLOBS } from '../../shared/p2p/tracker-messages.js'
import type { AnnounceEntry, SwarmNetwork } from './swarm-network.js'

export interface SeederComponents {
  store: BlobStore
  network: SwarmNetwork
  logger: Logger
}

export interface SeederInit {
  /** How often complete blobs are re-announced (the tracker forgets after its TTL). */
  intervalMs?: number
}

/**
 * Keeps this daemon findable for every blob it holds whole: re-announces them
 * to the tracker before the tracker's TTL runs out, and publishes provider
 * records on the DHT for them (once per blob per run; the DHT republishes).
 */
export class Seeder {
  private readonly c: SeederComponents
  private readonly intervalMs: number
  private timer?: NodeJS.Timeout
  private running?: Promise<void>

  constructor (components: SeederComponents, init: SeederInit = {}) {
    this.c = components
    this.intervalMs = init.intervalMs ?? 20_000
  }

  start (): void {
    const tick = (): void => {
      this.running = this.announceAll().catch(err => { this.c.logger.debug({ err: (err as Error).message }, 'seed announce failed') })
      void this.running.finally(() => {
        if (this.timer !== undefined) this.timer = setTimeout(tick, this.intervalMs).unref()
      })
    }
    this.timer = setTimeout(tick, 1000).unref()
  }

  async stop (): Promise<void> {
    if (this.timer != null) clearTimeout(this.timer)
    this.timer = undefined
    await this.running
  }

  private async announceAll (): Promise<void> {
    const entries: AnnounceEntry[] = []
    for (const digest of await this.c.store.listComplete()) {
      const blob = await this.c.store.getComplete(digest)
      if (blob == null) continue
      const bitfield = new Bitfield(blob.manifest.pieces.length)
      for (let i = 0; i < bitfield.length; i++) bitfield.set(i)
      entries.push({ digest, bitfield, wantPeers: false })
      this.c.network.provide(digest)
    }
    for (let i = 0; i < entries.length; i += MAX_ANNOUNCED_BLOBS) {
      await this.c.network.announce(entries.slice(i, i + MAX_ANNOUNCED_BLOBS))
    }
  }
}
