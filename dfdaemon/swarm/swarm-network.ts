import type { PeerId } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import type { Logger } from 'pino'
import PQueue from 'p-queue'
import type { Digest } from '../../shared/oci/digest.js'
import type { DamselflyNode } from '../../shared/p2p/node.js'
import type { ConnectionLanes } from '../../shared/p2p/connection-lanes.js'
import { FramedStream } from '../../shared/p2p/codec.js'
import { SWARM_PROTOCOL } from '../../shared/p2p/protocols.js'
import { SwarmWelcome } from '../../shared/p2p/swarm-messages.js'
import { announce } from '../../shared/p2p/tracker-client.js'
import { MAX_ANNOUNCED_BLOBS, type TrackerAnnounce } from '../../shared/p2p/tracker-messages.js'
import { blobCid } from '../../shared/p2p/cid.js'
import { Bitfield } from '../../shared/pieces/bitfield.js'
import { manifestFromWire, type PieceManifest } from '../../shared/pieces/piece-manifest.js'
import { ProtocolError, errorFromCode } from '../../shared/errors.js'
import type { DaemonMetrics } from '../metrics.js'
import type { SupernodeClient } from './supernode-client.js'
import { Neighbour } from './neighbour.js'

/** A peer to try: its id and where it listens. */
export interface PeerContact {
  peerId: PeerId
  addrs: Multiaddr[]
}

export interface AnnounceEntry {
  digest: Digest
  bitfield: Bitfield
  wantPeers: boolean
}

interface WaitingAnnounce {
  entries: AnnounceEntry[]
  resolve: (reply: Map<string, PeerContact[]> | undefined) => void
}

export interface SwarmNetworkComponents {
  libp2p: DamselflyNode
  supernode: SupernodeClient
  metrics: DaemonMetrics
  logger: Logger
  /** Whether downloads are running on this host: provider records wait until none is. */
  busy?: () => boolean
  /** Announces and swarm streams on connections that carry no piece bytes (see ConnectionLanes). */
  lanes?: Pick<ConnectionLanes, 'dialProtocol'>
}

export interface SwarmNetworkInit {
  /** Deadline for one tracker announce. */
  announceTimeoutMs?: number
  /** Deadline for one DHT provider lookup. */
  lookupTimeoutMs?: number
  /** Deadline for opening a swarm stream and getting the welcome. */
  greetTimeoutMs?: number
  /** How often a waiting provide checks again whether the host is still busy. */
  quietPollMs?: number
}

/**
 * How a daemon finds and greets the other daemons of a blob: announces to the
 * supernode's tracker, provider records on the DHT, and the swarm protocol's
 * hello/welcome that turns a contact into a neighbour.
 */
export class SwarmNetwork {
  private readonly c: SwarmNetworkComponents
  private readonly init: SwarmNetworkInit
  private readonly log: Logger
  private readonly provided = new Set<string>()
  /**
   * DHT provides one at a time and at most two a second: each is a query to the closest
   * peers and an RPC to each, at every daemon, so a pull of fifty small blobs on every host
   * must not become a burst of them competing with the pull (the tracker is what finds
   * peers while the supernode is up; provider records are for when it is not).
   */
  private readonly provides = new PQueue({ concurrency: 1, interval: 1000, intervalCap: 2 })
  /** Whether the last tracker announce got an answer. */
  private trackerReachable = true
  private readonly waitingAnnounces: WaitingAnnounce[] = []
  private announcing = false
  private closed = false

  constructor (components: SwarmNetworkComponents, init: SwarmNetworkInit = {}) {
    this.c = components
    this.init = init
    this.log = components.logger.child({ component: 'swarm' })
  }

  /** Where message streams open: on a connection without piece bytes when lanes are given. */
  private get streams (): Pick<ConnectionLanes, 'dialProtocol'> {
    return this.c.lanes ?? this.c.libp2p
  }

  get self (): PeerId {
    return this.c.libp2p.peerId
  }

  /**
   * Announce what we hold to the tracker; returns the peers it hands out per
   * blob, or undefined when the supernode cannot be reached. One announce is in
   * flight at a time: those made meanwhile (every download of a many-layer pull
   * announces) wait for it and then go together as one, so the tracker gets one
   * stream and one address check for them all rather than one each.
   */
  async announce (entries: AnnounceEntry[]): Promise<Map<string, PeerContact[]> | undefined> {
    return await new Promise(resolve => {
      this.waitingAnnounces.push({ entries, resolve })
      if (!this.announcing) void this.sendAnnounces()
    })
  }

  /** Send the waiting announces, as many as fit in one message at a time, until none waits. */
  private async sendAnnounces (): Promise<void> {
    this.announcing = true
    try {
      while (this.waitingAnnounces.length > 0) {
        const batch: WaitingAnnounce[] = []
        const byDigest = new Map<string, AnnounceEntry>()
        while (this.waitingAnnounces.length > 0) {
          const next = this.waitingAnnounces[0]
          const fresh = next.entries.filter(e => !byDigest.has(e.digest.value)).length
          if (batch.length > 0 && byDigest.size + fresh > MAX_ANNOUNCED_BLOBS) break
          this.waitingAnnounces.shift()
          batch.push(next)
          // one entry per blob: the bitfield is the live one; peers if any caller wants them
          for (const e of next.entries) {
            const had = byDigest.get(e.digest.value)
            byDigest.set(e.digest.value, { ...e, wantPeers: e.wantPeers || (had?.wantPeers ?? false) })
          }
        }
        const reply = await this.announceNow([...byDigest.values()])
        for (const w of batch) w.resolve(reply)
      }
    } finally {
      this.announcing = false
    }
  }

  private async announceNow (entries: AnnounceEntry[]): Promise<Map<string, PeerContact[]> | undefined> {
    const msg: TrackerAnnounce = {
      addrs: this.c.libp2p.getMultiaddrs().map(String).slice(0, 16),
      blobs: entries.map(e => ({
        digest: e.digest.value,
        pieces: e.bitfield.length,
        complete: e.bitfield.complete,
        wantPeers: e.wantPeers,
        ...(e.bitfield.complete ? {} : { have: e.bitfield.toBase64() })
      }))
    }
    try {
      const peer = await this.c.supernode.peerId()
      const reply = await announce(this.streams, peer, msg, { timeoutMs: this.init.announceTimeoutMs ?? 5000 })
      this.c.metrics.trackerAnnounces.inc({ result: 'ok' })
      this.trackerReachable = true
      const out = new Map<string, PeerContact[]>()
      for (const blob of reply.blobs) out.set(blob.digest, blob.peers.flatMap(p => contact(p.peerId, p.addrs)))
      return out
    } catch (err) {
      this.c.metrics.trackerAnnounces.inc({ result: 'error' })
      this.trackerReachable = false
      this.log.debug({ err: (err as Error).message, blobs: entries.length }, 'tracker announce failed')
      return undefined
    }
  }

  /** Providers of the blob on the DHT (bounded in count and time). */
  async findProviders (digest: Digest, limit: number, signal?: AbortSignal): Promise<PeerContact[]> {
    const timeout = AbortSignal.timeout(this.init.lookupTimeoutMs ?? 10_000)
    const out: PeerContact[] = []
    try {
      for await (const p of this.c.libp2p.contentRouting.findProviders(blobCid(digest), { signal: signal == null ? timeout : AbortSignal.any([signal, timeout]) })) {
        if (p.id.equals(this.self)) continue
        out.push({ peerId: p.id, addrs: p.multiaddrs })
        if (out.length >= limit) break
      }
      this.c.metrics.dhtLookups.inc({ result: out.length > 0 ? 'found' : 'none' })
    } catch (err) {
      this.c.metrics.dhtLookups.inc({ result: out.length > 0 ? 'found' : 'error' })
      this.log.debug({ digest: digest.value, err: (err as Error).message, found: out.length }, 'provider lookup ended early')
    }
    return out
  }

  /** Drop provides not yet started (shutdown). */
  close (): void {
    this.closed = true
    this.provides.clear()
  }

  /**
   * Publish that we hold pieces of the blob (once per blob, queued behind
   * earlier ones, in the background). While the tracker answers, records wait
   * until no download runs on this host: they are for when the supernode is
   * gone, and every provide is a DHT query plus an RPC to each closest peer, at
   * every daemon — during a pull of fifty small layers on eight hosts that was
   * a fifth of each daemon's CPU. With the tracker unreachable they go out at once.
   */
  provide (digest: Digest): void {
    if (this.provided.has(digest.value)) return
    this.provided.add(digest.value)
    this.provides.add(async () => {
      await this.quiet()
      if (this.closed) throw new Error('swarm network closed')
      await this.c.libp2p.contentRouting.provide(blobCid(digest), { signal: AbortSignal.timeout(60_000) })
    }).then(() => {
      this.c.metrics.dhtProvides.inc({ result: 'ok' })
    }, (err: Error) => {
      this.provided.delete(digest.value)
      this.c.metrics.dhtProvides.inc({ result: 'error' })
      this.log.debug({ digest: digest.value, err: err.message }, 'provide failed')
    })
  }

  /** Resolves once no download runs here, or the tracker cannot be reached, or the network closed. */
  private async quiet (): Promise<void> {
    const every = this.init.quietPollMs ?? 1000
    while (!this.closed && this.trackerReachable && this.c.busy?.() === true) {
      await new Promise(resolve => setTimeout(resolve, every).unref())
    }
  }

  /**
   * Open a swarm stream to a peer for a blob: say hello with our bitfield
   * (empty when we know nothing yet) and get its manifest and bitfield back.
   * The neighbour remembers what the hello said, for `catchUp`.
   * A peer holding the whole blob needs no stream after that. A private
   * blob's holders want our `ticket` from the supernode.
   */
  async greet (peer: PeerContact, digest: Digest, have: Bitfield | undefined, signal?: AbortSignal, ticket?: string): Promise<{ manifest: PieceManifest, neighbour: Neighbour }> {
    // a peer-store write per greet adds up over many small blobs: only when there is no connection to reuse
    if (peer.addrs.length > 0 && this.c.libp2p.getConnections(peer.peerId).length === 0) await this.c.libp2p.peerStore.merge(peer.peerId, { multiaddrs: peer.addrs })
    const deadline = AbortSignal.timeout(this.init.greetTimeoutMs ?? 10_000)
    const stream = await this.streams.dialProtocol(peer.peerId, SWARM_PROTOCOL, { signal: signal == null ? deadline : AbortSignal.any([signal, deadline]) })
    const framed = new FramedStream(stream)
    try {
      const told = have?.toBase64() ?? ''
      await framed.writeMessage({ type: 'hello', digest: digest.value, have: told, ...(ticket != null ? { ticket } : {}) })
      const welcome = await framed.readMessage(SwarmWelcome)
      if (welcome.type === 'error') throw errorFromCode(welcome.code, welcome.message)
      const manifest = manifestFromWire(welcome.manifest)
      if (manifest.digest.value !== digest.value) throw new ProtocolError('peer answered for another blob')
      const theirs = Bitfield.fromBase64(manifest.pieces.length, welcome.have)
      if (theirs.complete) await framed.close()
      const neighbour = new Neighbour(peer.peerId, theirs, theirs.complete ? undefined : framed, this.log, true, Bitfield.fromBase64(manifest.pieces.length, told))
      return { manifest, neighbour }
    } catch (err) {
      framed.abort(err as Error)
      throw err
    }
  }
}

function contact (peerId: string, addrs: string[]): PeerContact[] {
  try {
    return [{ peerId: peerIdFromString(peerId), addrs: addrs.map(a => multiaddr(a)) }]
  } catch {
    return []
  }
}
