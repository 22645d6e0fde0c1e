import type { PeerId } from '@libp2p/interface'
import type { Logger } from 'pino'
import type { Bitfield } from '../../shared/pieces/bitfield.js'
import type { FramedStream } from '../../shared/p2p/codec.js'
import { SwarmUpdate } from '../../shared/p2p/swarm-messages.js'

/** How long a neighbour's stream may stay silent: pieces of one blob can take a while. */
export const NEIGHBOUR_IDLE_TIMEOUT_MS = 10 * 60_000

export interface NeighbourHandlers {
  onHave: (index: number) => void
  onClose: () => void
}

/**
 * Another daemon exchanging one blob with us: its bitfield, kept current by
 * its `have` messages, and ours sent to it as our pieces complete. A neighbour
 * that holds the whole blob (a seed) needs no stream after the greeting.
 */
export class Neighbour {
  readonly peer: PeerId
  readonly bitfield: Bitfield
  /** Whether we opened the stream (two daemons may greet each other at once). */
  readonly outbound: boolean
  private readonly framed?: FramedStream
  /** The pieces our greeting (hello or welcome) said we hold. */
  private readonly told?: Bitfield
  private readonly log: Logger
  private sending: Promise<void> = Promise.resolve()
  /** Pieces completed since the last `have` write was queued: they go out together. */
  private unsent: number[] = []
  private closed = false

  constructor (peer: PeerId, bitfield: Bitfield, framed: FramedStream | undefined, logger: Logger, outbound: boolean, told?: Bitfield) {
    this.peer = peer
    this.outbound = outbound
    this.bitfield = bitfield
    this.framed = framed
    this.log = logger
    this.told = told
  }

  get id (): string {
    return this.peer.toString()
  }

  get isClosed (): boolean {
    return this.closed
  }

  /** Read `have` messages until the stream ends; call `onClose` once when it does. */
  start (handlers: NeighbourHandlers): void {
    if (this.framed == null) return
    const framed = this.framed
    void (async () => {
      try {
        for (;;) {
          const msg = await framed.readMessage(SwarmUpdate, { allowEnd: true, timeoutMs: NEIGHBOUR_IDLE_TIMEOUT_MS })
          if (msg == null || this.closed) break
          if (msg.index >= this.bitfield.length) throw new Error(`have for piece ${msg.index} out of range`)
          if (this.bitfield.set(msg.index)) handlers.onHave(msg.index)
        }
      } catch (err) {
        if (!this.closed) this.log.debug({ peer: this.id, err: (err as Error).message }, 'neighbour stream ended')
      }
      this.close()
      handlers.onClose()
    })()
  }

  /**
   * Tell the neighbour we now hold piece `index` (queued; a failure closes the
   * neighbour). Pieces that complete while a write is under way go out in the
   * next write together, one `have` message each: a busy host sends fewer,
   * fuller writes instead of one per piece per neighbour.
   */
  sendHave (index: number): void {
    const framed = this.framed
    if (framed == null || this.closed) return
    this.unsent.push(index)
    // a write is already queued: it takes this index along
    if (this.unsent.length > 1) return
    this.sending = this.sending.then(async () => {
      const batch = this.unsent
      this.unsent = []
      // queued before any close: close lets them go out first
      await framed.writeMessages(batch.map(i => ({ type: 'have', index: i })))
    }).catch(() => { this.close() })
  }

  /**
   * Send `have` for every piece in `ours` that our greeting did not mention. A
   * piece completing while the greeting was under way went to the neighbours of
   * that moment only: without this, the neighbour would never learn we hold it.
   */
  catchUp (ours: Bitfield): void {
    for (let i = 0; i < ours.length; i++) if (ours.has(i) && this.told?.has(i) !== true) this.sendHave(i)
  }

  close (): void {
    if (this.closed) return
    this.closed = true
    if (this.framed != null) {
      const framed = this.framed
      // let queued haves go out, then end our side
      void this.sending.then(async () => { await framed.close() })
    }
  }
}
