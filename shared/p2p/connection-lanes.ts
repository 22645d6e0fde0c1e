import { isPeerId, type AbortOptions, type Connection, type Libp2p, type PeerId, type Stream } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import type { Logger } from 'pino'
import { raceSignal } from 'race-signal'

/** How long a dial for a connection of its own may take (a piece dial that fails shares the connection there is). */
const DIAL_TIMEOUT_MS = 5_000
/** How long a peer whose piece connection could not be dialled keeps its pieces on the shared connection. */
const DIAL_FAILED_MS = 60_000

export interface ConnectionLanesComponents {
  libp2p: Pick<Libp2p, 'dial' | 'dialProtocol' | 'getConnections' | 'addEventListener' | 'removeEventListener'>
  logger: Logger
}

/**
 * Piece bytes and messages on separate connections to each peer.
 *
 * A connection's bytes leave in the order they were written: a `have`, a piece
 * request or a task's piece hash written behind half a megabyte of piece bytes
 * waits for them in the kernel's send buffer, some 50–250 ms on a 100 mbit
 * link, and every relay hop of a swarm pays it. So the piece streams this node
 * opens go on a connection it dials for pieces alone, and streams that carry
 * messages go on a connection that no piece stream uses, ours or the peer's
 * (the piece server says which connections carry its peers' piece streams).
 * A peer that reached us but cannot be dialled keeps its pieces on the one
 * connection there is.
 */
export class ConnectionLanes {
  private readonly c: ConnectionLanesComponents
  private readonly log: Logger
  /** Ids of the open connections that carry piece streams, in either direction. */
  private readonly pieceConns = new Set<string>()
  /** Per peer: our connection for pieces. */
  private readonly ownPieceConn = new Map<string, Connection>()
  /** Per peer: a dial for our piece connection in progress. */
  private readonly pieceDials = new Map<string, Promise<Connection | undefined>>()
  /** Per peer: until when a failed piece dial is not tried again. */
  private readonly dialFailed = new Map<string, number>()
  /** Per peer: a dial for a message connection in progress. */
  private readonly controlDials = new Map<string, Promise<Connection>>()
  private readonly onClose = (evt: CustomEvent<Connection>): void => {
    const conn = evt.detail
    this.pieceConns.delete(conn.id)
    const key = conn.remotePeer.toString()
    if (this.ownPieceConn.get(key)?.id === conn.id) this.ownPieceConn.delete(key)
  }

  constructor (components: ConnectionLanesComponents) {
    this.c = components
    this.log = components.logger.child({ component: 'lanes' })
    this.c.libp2p.addEventListener('connection:close', this.onClose)
  }

  /** A peer opened a piece stream on `conn`: messages keep off it. */
  carriesPieces (conn: Connection): void {
    if (conn.status === 'open') this.pieceConns.add(conn.id)
  }

  /** Whether `conn` is known to carry piece streams. */
  isPieceConnection (conn: Connection): boolean {
    return this.pieceConns.has(conn.id)
  }

  /**
   * The connection for a new piece stream to `peer`: ours for pieces, dialled
   * once (concurrent callers share the dial). Undefined when it cannot be
   * dialled: the caller uses the connection there is.
   */
  async forPieces (peer: PeerId, signal?: AbortSignal): Promise<Connection | undefined> {
    const key = peer.toString()
    const own = this.ownPieceConn.get(key)
    if (own?.status === 'open') return own
    let dial = this.pieceDials.get(key)
    if (dial == null) {
      if ((this.dialFailed.get(key) ?? 0) > Date.now()) return undefined
      this.dialFailed.delete(key)
      dial = this.dialForPieces(peer).finally(() => { this.pieceDials.delete(key) })
      this.pieceDials.set(key, dial)
    }
    const conn = await raceSignal(dial, signal)
    return conn?.status === 'open' ? conn : undefined
  }

  /**
   * A new stream for messages to `peer`, on a connection no piece stream uses;
   * one is dialled if every open connection to the peer carries pieces. A
   * multiaddr is dialled as libp2p does.
   */
  async dialProtocol (peer: PeerId | Multiaddr, protocol: string, options: AbortOptions = {}): Promise<Stream> {
    if (!isPeerId(peer)) return await this.c.libp2p.dialProtocol(peer, protocol, options)
    const open = this.c.libp2p.getConnections(peer).filter(c => c.status === 'open')
    const free = open.find(c => !this.pieceConns.has(c.id))
    if (free != null) return await free.newStream(protocol, options)
    if (open.length === 0) return await this.c.libp2p.dialProtocol(peer, protocol, options)
    const key = peer.toString()
    let dial = this.controlDials.get(key)
    if (dial == null) {
      // shared by every caller meanwhile: bounded by its own deadline, not by the first caller's signal
      dial = this.c.libp2p.dial(peer, { force: true, signal: AbortSignal.timeout(DIAL_TIMEOUT_MS) }).finally(() => { this.controlDials.delete(key) })
      dial.catch(() => {})
      this.controlDials.set(key, dial)
    }
    const conn = await raceSignal(dial, options.signal)
    return await conn.newStream(protocol, options)
  }

  /** Stop following connections (shutdown). */
  stop (): void {
    this.c.libp2p.removeEventListener('connection:close', this.onClose)
    this.pieceConns.clear()
    this.ownPieceConn.clear()
    this.dialFailed.clear()
  }

  private async dialForPieces (peer: PeerId): Promise<Connection | undefined> {
    try {
      const conn = await this.c.libp2p.dial(peer, { force: true, signal: AbortSignal.timeout(DIAL_TIMEOUT_MS) })
      this.carriesPieces(conn)
      this.ownPieceConn.set(peer.toString(), conn)
      this.log.debug({ peer: peer.toString() }, 'piece connection open')
      return conn
    } catch (err) {
      const now = Date.now()
      // peers come and go: forget the failures that have run out once they pile up
      if (this.dialFailed.size >= 1024) for (const [k, until] of this.dialFailed) if (until <= now) this.dialFailed.delete(k)
      this.dialFailed.set(peer.toString(), now + DIAL_FAILED_MS)
      this.log.debug({ peer: peer.toString(), err: (err as Error).message }, 'no piece connection; pieces share the connection there is')
      return undefined
    }
  }
}
