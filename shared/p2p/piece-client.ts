import type { Libp2p, PeerId } from '@libp2p/interface'
import type { FramedStream } from './codec.js'
import type { PieceBytes } from '../pieces/piece-bytes.js'
import type { ConnectionLanes } from './connection-lanes.js'
import { exchangePiece, openPieceStream, type FetchPieceOptions, type PieceAnswer } from './piece-protocol.js'

export interface PieceClientInit {
  /** How long an idle stream is kept for the next request (below the server's idle timeout). */
  idleTimeoutMs?: number
  /** Idle streams kept per peer. */
  maxIdlePerPeer?: number
  /** Piece streams on connections of their own, apart from the messages (see ConnectionLanes). */
  lanes?: Pick<ConnectionLanes, 'forPieces'>
}

interface Idle { framed: FramedStream, timer: NodeJS.Timeout, onRemoteClose: () => void }

/**
 * Fetches pieces over streams it keeps open, one request at a time per stream,
 * so a piece costs a request and its answer rather than a new stream (a yamux
 * open, protocol negotiation, peer-store bookkeeping and a fresh flow-control
 * window at both ends). A stream that errs is reset and never reused; a
 * refusal leaves it good. Errors are typed as fetchPiece's.
 */
export class PieceClient {
  private readonly libp2p: Pick<Libp2p, 'dialProtocol' | 'getConnections'>
  private readonly idleMs: number
  private readonly maxIdle: number
  private readonly lanes?: Pick<ConnectionLanes, 'forPieces'>
  private readonly idle = new Map<string, Idle[]>()
  private closed = false

  constructor (libp2p: Pick<Libp2p, 'dialProtocol' | 'getConnections'>, init: PieceClientInit = {}) {
    this.libp2p = libp2p
    this.idleMs = init.idleTimeoutMs ?? 20_000
    this.maxIdle = init.maxIdlePerPeer ?? 16
    this.lanes = init.lanes
  }

  /** The verified bytes of one piece from `peer`; throws its refusal or the failure. */
  async fetch (peer: PeerId, opts: FetchPieceOptions): Promise<PieceBytes> {
    let answer: PieceAnswer | undefined
    let framed = this.take(peer)
    if (framed != null) {
      try {
        answer = await exchangePiece(framed, opts)
      } catch (err) {
        framed.abort(err as Error)
        // the holder may have closed the idle stream as we sent on it: once more on a new one
        if (opts.signal?.aborted === true || !goneUnderUs(err)) throw err
      }
    }
    if (answer == null) {
      framed = await openPieceStream(this.libp2p, peer, { ...opts, lanes: this.lanes })
      try {
        answer = await exchangePiece(framed, opts)
      } catch (err) {
        framed.abort(err as Error)
        throw err
      }
    }
    this.put(peer, framed as FramedStream)
    if (answer.refused != null) throw answer.refused
    return answer.bytes
  }

  /** Close every idle stream (shutdown). */
  close (): void {
    this.closed = true
    for (const list of this.idle.values()) for (const entry of list) this.release(entry)
    this.idle.clear()
  }

  private take (peer: PeerId): FramedStream | undefined {
    const list = this.idle.get(peer.toString())
    while (list != null && list.length > 0) {
      const entry = list.pop() as Idle
      if (list.length === 0) this.idle.delete(peer.toString())
      clearTimeout(entry.timer)
      entry.framed.stream.removeEventListener('remoteCloseWrite', entry.onRemoteClose)
      if (usable(entry.framed)) return entry.framed
      entry.framed.abort(new Error('stale piece stream'))
    }
    return undefined
  }

  /** Take an idle entry out of use and close its stream. */
  private release (entry: Idle): void {
    clearTimeout(entry.timer)
    entry.framed.stream.removeEventListener('remoteCloseWrite', entry.onRemoteClose)
    void entry.framed.close()
  }

  private put (peer: PeerId, framed: FramedStream): void {
    const key = peer.toString()
    const list = this.idle.get(key) ?? []
    if (this.closed || !usable(framed) || list.length >= this.maxIdle) {
      void framed.close()
      return
    }
    // idle too long here, or closed by the holder (its own idle timeout): out of the pool
    const evict = (): void => {
      const i = list.indexOf(entry)
      if (i >= 0) list.splice(i, 1)
      if (list.length === 0 && this.idle.get(key) === list) this.idle.delete(key)
      this.release(entry)
    }
    const entry: Idle = { framed, timer: setTimeout(evict, this.idleMs).unref(), onRemoteClose: evict }
    framed.stream.addEventListener('remoteCloseWrite', evict, { once: true })
    list.push(entry)
    this.idle.set(key, list)
  }
}

function usable (framed: FramedStream): boolean {
  const s = framed.stream
  return s.status === 'open' && s.writeStatus === 'writable' && s.remoteWriteStatus === 'writable'
}

/** Whether the stream ended or was reset before any answer: nothing was received, asking again is safe. */
function goneUnderUs (err: unknown): boolean {
  const e = err as Error
  return e?.name === 'StreamResetError' || e?.name === 'StreamStateError' || e?.name === 'StreamClosedError' ||
    (e?.name === 'ProtocolError' && /ended before a message/.test(e.message))
}
