import type { Connection, Libp2p, PeerId, Startable, Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import type { Logger } from 'pino'
import { FramedStream, MAX_MESSAGE_BYTES } from '../../shared/p2p/codec.js'
import { TRACKER_PROTOCOL } from '../../shared/p2p/protocols.js'
import { TrackerAnnounce, type TrackerAnswer, type TrackerReply } from '../../shared/p2p/tracker-messages.js'
import { parseDigest } from '../../shared/oci/digest.js'
import { DeniedError, InvalidDigestError } from '../../shared/errors.js'
import type { SupernodeMetrics } from '../metrics.js'
import { DEFAULT_PEERS_PER_REPLY, type TrackerState } from './tracker-state.js'

export interface TrackerHandlerComponents {
  libp2p: Pick<Libp2p, 'handle' | 'unhandle'>
  state: TrackerState
  logger: Logger
  metrics?: Pick<SupernodeMetrics, 'trackerAnnounces' | 'trackerBlobs' | 'trackerPeers'>
}

export interface TrackerHandlerInit {
  /** Concurrent announce streams per connection (a daemon announces one at a time). */
  maxInboundStreams?: number
  /** Deadline for the announce to arrive and for the reply to leave. */
  messageTimeoutMs?: number
  /** Peers handed out per blob (capped by MAX_PEERS_PER_BLOB). */
  peersPerBlob?: number
  /** How often stale announces are swept (they are also dropped lazily). */
  expiryIntervalMs?: number
}

export const DEFAULT_MAX_TRACKER_STREAMS = 8
export const DEFAULT_TRACKER_EXPIRY_INTERVAL_MS = 10_000
/** Most bytes of a multiaddr in a reply (TrackerPeer.addrs). */
const MAX_ADDR_LENGTH = 300
/** Room left in a reply frame for what JSON.stringify measures differently. */
const REPLY_HEADROOM = 1024

/**
 * Answers TRACKER_PROTOCOL: one TrackerAnnounce per stream, recorded under the
 * connection's remote peer, then one TrackerReply with peers for each blob
 * that wants them. An announce naming another peer in its addresses, or with a
 * malformed address or digest, records nothing and gets a TrackerRefusal; a
 * request that breaks the framing or schema has its stream aborted. Nothing
 * escapes the handler.
 */
export class TrackerHandler implements Startable {
  private readonly components: TrackerHandlerComponents
  private readonly init: TrackerHandlerInit
  private readonly log: Logger
  private timer: NodeJS.Timeout | undefined

  constructor (components: TrackerHandlerComponents, init: TrackerHandlerInit = {}) {
    this.components = components
    this.init = init
    this.log = components.logger.child({ component: 'tracker-handler' })
  }

  async start (): Promise<void> {
    await this.components.libp2p.handle(TRACKER_PROTOCOL, async (stream, connection) => { await this.onStream(stream, connection) }, {
      maxInboundStreams: this.init.maxInboundStreams ?? DEFAULT_MAX_TRACKER_STREAMS
    })
    this.timer = setInterval(() => { this.sweep() }, this.init.expiryIntervalMs ?? DEFAULT_TRACKER_EXPIRY_INTERVAL_MS)
    this.timer.unref()
  }

  async stop (): Promise<void> {
    clearInterval(this.timer)
    this.timer = undefined
    await this.components.libp2p.unhandle(TRACKER_PROTOCOL)
  }

  private async onStream (stream: Stream, connection: Connection): Promise<void> {
    const framed = new FramedStream(stream, { messageTimeoutMs: this.init.messageTimeoutMs })
    const peer = connection.remotePeer
    try {
      const announce = await framed.readMessage(TrackerAnnounce)
      let answer: TrackerAnswer
      let result: 'ok' | 'refused' = 'ok'
      try {
        answer = this.record(peer, announce)
      } catch (err) {
        if (!(err instanceof DeniedError || err instanceof InvalidDigestError)) throw err
        this.log.debug({ peer: peer.toString(), err: { name: err.name, message: err.message } }, 'announce refused')
        answer = { error: { code: err.code, message: err.message.slice(0, 2000) } }
        result = 'refused'
      }
      await framed.writeMessage(answer)
      await framed.close()
      this.components.metrics?.trackerAnnounces.inc({ result })
    } catch (err) {
      const error = err instanceof Error ? err : new Error(String(err))
      this.log.debug({ peer: peer.toString(), err: { name: error.name, message: error.message } }, 'tracker stream failed')
      framed.abort(error)
      this.components.metrics?.trackerAnnounces.inc({ result: 'failed' })
    }
  }

  /** Check the whole announce, then record it and build the reply. */
  private record (peer: PeerId, announce: TrackerAnnounce): TrackerReply {
    const { state } = this.components
    const peerId = peer.toString()
    const addrs = normaliseAddrs(announce.addrs, peer)
    for (const blob of announce.blobs) parseDigest(blob.digest)
    for (const blob of announce.blobs) {
      const have = blob.complete || blob.have == null ? 0 : countHeld(blob.pieces, blob.have)
      state.announce(peerId, addrs, { digest: blob.digest, pieces: blob.pieces, have, complete: blob.complete })
    }
    const wanted = new Set(announce.blobs.filter(b => b.wantPeers).map(b => b.digest))
    const limit = this.init.peersPerBlob ?? DEFAULT_PEERS_PER_REPLY
    const reply: TrackerReply = {
      blobs: [...wanted].map(digest => ({ digest, peers: state.peersFor(digest, peerId, limit) })),
      ttl: Math.max(1, Math.ceil(state.ttlMs / 1000))
    }
    this.updateGauges()
    return fitReply(reply, MAX_MESSAGE_BYTES - REPLY_HEADROOM)
  }

  private sweep (): void {
    this.components.state.expire()
    this.updateGauges()
  }

  private updateGauges (): void {
    const { metrics, state } = this.components
    if (metrics == null) return
    const stats = state.stats()
    metrics.trackerBlobs.set(stats.blobs)
    metrics.trackerPeers.set(stats.peers)
  }
}

/**
 * Parse each address and make it end in the announcing peer's id. Any /p2p/
 * in it must be that peer, or a relay (followed by /p2p-circuit): a daemon
 * cannot announce for someone else.
 */
function normaliseAddrs (addrs: string[], peer: PeerId): string[] {
  const out = new Set<string>()
  for (const addr of addrs) {
    let ma: Multiaddr
    try {
      ma = multiaddr(addr)
    } catch {
      throw new DeniedError(`address ${JSON.stringify(addr.slice(0, 100))} is not a multiaddr`)
    }
    const parts = ma.getComponents()
    parts.forEach((part, i) => {
      if (part.name !== 'p2p' || parts[i + 1]?.name === 'p2p-circuit') return
      if (!samePeer(part.value, peer)) throw new DeniedError(`address ${JSON.stringify(addr.slice(0, 100))} names another peer`)
    })
    const last = parts.at(-1)
    const full = last?.name === 'p2p' ? ma.toString() : ma.encapsulate(`/p2p/${peer.toString()}`).toString()
    if (full.length > MAX_ADDR_LENGTH) throw new DeniedError('address too long')
    out.add(full)
  }
  return [...out]
}

function samePeer (value: string | undefined, peer: PeerId): boolean {
  if (value == null) return false
  try {
    return peerIdFromString(value).equals(peer)
  } catch {
    return false
  }
}

const POPCOUNT = Uint8Array.from({ length: 256 }, (_, b) => { let n = 0; for (let v = b; v !== 0; v >>= 1) n += v & 1; return n })

/** Pieces set in a base64 bitfield (most significant bit first), counting only the first `pieces` bits. */
function countHeld (pieces: number, base64: string): number {
  const bytes = Buffer.from(base64, 'base64')
  const full = Math.min(bytes.length, pieces >> 3)
  let n = 0
  for (let i = 0; i < full; i++) n += POPCOUNT[bytes[i]]
  if (full < bytes.length && pieces % 8 !== 0) n += POPCOUNT[bytes[full] & (0xff << (8 - (pieces % 8)) & 0xff)]
  return n
}

/** Halve the peers per blob until the reply fits in one frame. */
function fitReply (reply: TrackerReply, maxBytes: number): TrackerReply {
  let limit = Math.max(0, ...reply.blobs.map(b => b.peers.length))
  while (limit > 0 && Buffer.byteLength(JSON.stringify(reply), 'utf8') > maxBytes) {
    limit = Math.floor(limit / 2)
    for (const blob of reply.blobs) blob.peers = blob.peers.slice(0, limit)
  }
  return reply
}
