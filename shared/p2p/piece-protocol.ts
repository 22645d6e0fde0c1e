import { isPeerId, type Libp2p, type PeerId, type Stream, type Connection, type Startable } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import { Type, type Static } from '@sinclair/typebox'
import type { Logger } from 'pino'
import { parseDigest, type Digest } from '../oci/digest.js'
import { pieceBuffer, pieceSha256Hex, type PieceBytes } from '../pieces/piece-bytes.js'
import { DamselflyError, DigestMismatchError, ProtocolError, TimeoutError, errorFromCode } from '../errors.js'
import { DEFAULT_MESSAGE_TIMEOUT_MS, FramedStream } from './codec.js'
import { Deadline } from '../deadline.js'
import { PIECE_PROTOCOL } from './protocols.js'
import type { RateLimiter } from '../rate-limiter.js'
import type { ConnectionLanes } from './connection-lanes.js'

/** Where the piece server gets bytes from (the store). */
export interface PieceSource {
  readPiece: (digest: Digest, index: number) => Promise<Uint8Array | undefined>
  /** Whether a piece is held, without reading it (lets refusals come before a disk read). */
  holdsPiece?: (digest: Digest, index: number) => Promise<boolean>
}

/** Largest piece request accepted; a real one is under 150 bytes, or about 450 with a ticket. */
const MAX_REQUEST_BYTES = 2048
/** How long the server keeps an idle piece stream waiting for the next request. */
export const DEFAULT_SERVER_IDLE_MS = 60_000

export const PieceRequest = Type.Object({
  digest: Type.String({ maxLength: 80 }),
  index: Type.Integer({ minimum: 0, maximum: 1 << 20 }),
  /** The supernode's ticket for this peer and blob; needed for a private blob. */
  ticket: Type.Optional(Type.String({ maxLength: 1024 }))
}, { additionalProperties: false })

export const PieceResponse = Type.Union([
  Type.Object({ ok: Type.Literal(true), length: Type.Integer({ minimum: 0 }) }),
  Type.Object({ ok: Type.Literal(false), code: Type.String({ maxLength: 40 }), message: Type.String({ maxLength: 1000 }) })
])

export interface PieceServerComponents {
  libp2p: Pick<Libp2p, 'handle' | 'unhandle'>
  source: PieceSource
  logger: Logger
  /** Told of every connection a piece stream arrives on, so messages keep off it. */
  lanes?: Pick<ConnectionLanes, 'carriesPieces'>
}

export interface PieceServerInit {
  /** Concurrent piece streams per connection. */
  maxInboundStreams?: number
  messageTimeoutMs?: number
  /** How long a stream may wait between requests before the server closes it. */
  idleTimeoutMs?: number
  /** Called after a piece was sent, with its size (upload metrics, rate limits). */
  onUpload?: (bytes: number, peer: PeerId) => void
  /**
   * Whether to serve this request now; false answers TOOMANYREQUESTS so the
   * asker gets the piece elsewhere (super-seeding, upload bounds).
   */
  admit?: (digest: Digest, index: number, peer: PeerId) => boolean | Promise<boolean>
  /** Most pieces sent at once by this server; more are refused with TOOMANYREQUESTS. */
  maxConcurrentUploads?: number
  /** Shared bound on upload bytes per second. */
  uploadLimiter?: RateLimiter
  /**
   * Whether `peer` may have this blob at all (private blobs: a valid ticket);
   * throws a DamselflyError (UnauthorizedError, DeniedError) whose code is the answer.
   */
  authorize?: (digest: Digest, peer: PeerId, ticket: string | undefined) => Promise<void> | void
}

/**
 * Serves pieces: on each stream, request {digest, index} → header, then the raw
 * bytes, again and again until the asker closes the stream or leaves it idle.
 */
export class PieceServer implements Startable {
  private readonly components: PieceServerComponents
  private readonly init: PieceServerInit
  private readonly log: Logger
  private uploads = 0

  constructor (components: PieceServerComponents, init: PieceServerInit = {}) {
    this.components = components
    this.init = init
    this.log = components.logger.child({ component: 'piece-server' })
  }

  async start (): Promise<void> {
    await this.components.libp2p.handle(PIECE_PROTOCOL, async (stream, connection) => { await this.onStream(stream, connection) }, {
      maxInboundStreams: this.init.maxInboundStreams ?? 64
    })
  }

  async stop (): Promise<void> {
    await this.components.libp2p.unhandle(PIECE_PROTOCOL)
  }

  private async onStream (stream: Stream, connection: Connection): Promise<void> {
    this.components.lanes?.carriesPieces(connection)
    // a request is a few dozen bytes and never followed by a payload: cap what a
    // peer can make us buffer per stream (the defaults allow 16 MiB, times 64 streams)
    const framed = new FramedStream(stream, { messageTimeoutMs: this.init.messageTimeoutMs, maxMessageBytes: MAX_REQUEST_BYTES, maxPayloadBytes: 0 })
    const idleMs = this.init.idleTimeoutMs ?? DEFAULT_SERVER_IDLE_MS
    try {
      // one request after another on the same stream, until the asker closes it or idles
      for (let first = true; ; first = false) {
        let req: Static<typeof PieceRequest> | null
        try {
          req = await framed.readMessage(PieceRequest, { allowEnd: true, ...(first ? {} : { timeoutMs: idleMs }) })
        } catch (err) {
          if (!first && err instanceof TimeoutError) break
          throw err
        }
        if (req == null) break
        await this.answer(framed, req, connection.remotePeer)
      }
      await framed.close()
    } catch (err) {
      this.log.debug({ err, peer: connection.remotePeer.toString() }, 'piece stream failed')
      framed.abort(err as Error)
    }
  }

  /** Answer one request: a refusal with its code, or the header and the piece's bytes. */
  private async answer (framed: FramedStream, req: Static<typeof PieceRequest>, peer: PeerId): Promise<void> {
    const digest = parseDigest(req.digest)
    if (this.init.authorize != null) {
      try {
        await this.init.authorize(digest, peer, req.ticket)
      } catch (err) {
        if (!(err instanceof DamselflyError)) throw err
        await framed.writeMessage({ ok: false, code: err.code, message: err.message.slice(0, 200) })
        return
      }
    }
    // a piece not held is "unknown", whatever the upload bounds or super-seeding would say
    if (this.components.source.holdsPiece != null && !(await this.components.source.holdsPiece(digest, req.index))) {
      await framed.writeMessage({ ok: false, code: 'BLOB_UNKNOWN', message: 'piece not held' })
      return
    }
    const busy = this.uploads >= (this.init.maxConcurrentUploads ?? Infinity)
    if (busy || (this.init.admit != null && !(await this.init.admit(digest, req.index, peer)))) {
      await framed.writeMessage({ ok: false, code: 'TOOMANYREQUESTS', message: busy ? 'too many uploads' : 'ask your neighbours' })
      return
    }
    this.uploads++
    try {
      const bytes = await this.components.source.readPiece(digest, req.index)
      if (bytes == null) {
        await framed.writeMessage({ ok: false, code: 'BLOB_UNKNOWN', message: 'piece not held' })
        return
      }
      await this.init.uploadLimiter?.take(bytes.byteLength)
      await framed.writeMessage({ ok: true, length: bytes.byteLength })
      await framed.writePayload(bytes)
      this.init.onUpload?.(bytes.byteLength, peer)
    } finally {
      this.uploads--
    }
  }
}

export interface FetchPieceOptions {
  digest: Digest
  index: number
  /** The piece's sha256 (hex); the bytes are checked against it before they are returned. */
  sha256: string
  length: number
  signal?: AbortSignal
  messageTimeoutMs?: number
  /** The supernode's ticket, shown to holders of a private blob. */
  ticket?: string
}

/**
 * Ask `peer` for one piece on a stream of its own and return its verified bytes.
 * Throws a typed error (ProtocolError, DigestMismatchError, TimeoutError, or the
 * remote's code). PieceClient does the same over streams it keeps open.
 */
export async function fetchPiece (libp2p: Pick<Libp2p, 'dialProtocol' | 'getConnections'>, peer: PeerId | Multiaddr, opts: FetchPieceOptions): Promise<Uint8Array> {
  const framed = await openPieceStream(libp2p, peer, opts)
  let answer: PieceAnswer
  try {
    answer = await exchangePiece(framed, opts)
  } catch (err) {
    framed.abort(err as Error)
    throw err
  }
  await framed.close()
  if (answer.refused != null) throw answer.refused
  return pieceBuffer(answer.bytes)
}

/**
 * A new piece stream to `peer`: on our connection for pieces when `lanes` is
 * given and one can be had, else on an open connection when there is one (far
 * cheaper than a dial).
 */
export async function openPieceStream (libp2p: Pick<Libp2p, 'dialProtocol' | 'getConnections'>, peer: PeerId | Multiaddr, opts: { signal?: AbortSignal, messageTimeoutMs?: number, lanes?: Pick<ConnectionLanes, 'forPieces'> }): Promise<FramedStream> {
  const timeoutMs = opts.messageTimeoutMs ?? DEFAULT_MESSAGE_TIMEOUT_MS
  const deadline = new Deadline(opts.signal, timeoutMs, () => new TimeoutError(`no piece stream within ${timeoutMs} ms`))
  try {
    const signal = deadline.signal
    const conn = isPeerId(peer) ? (await opts.lanes?.forPieces(peer, signal)) ?? libp2p.getConnections(peer).find(c => c.status === 'open') : undefined
    const stream = conn != null ? await conn.newStream(PIECE_PROTOCOL, { signal }) : await libp2p.dialProtocol(peer, PIECE_PROTOCOL, { signal })
    return new FramedStream(stream, { messageTimeoutMs: opts.messageTimeoutMs })
  } catch (err) {
    throw deadline.signal.aborted && !(opts.signal?.aborted ?? false) ? deadline.signal.reason : err
  } finally {
    deadline.clear()
  }
}

/** What one exchange ended with: the verified bytes, or the holder's refusal (its code as a typed error). */
export type PieceAnswer = { bytes: PieceBytes, refused?: undefined } | { refused: DamselflyError }

/**
 * One request and its answer on `framed`. After either answer the stream is
 * ready for the next request; a thrown error leaves it unusable.
 */
export async function exchangePiece (framed: FramedStream, opts: FetchPieceOptions): Promise<PieceAnswer> {
  await framed.writeMessage({ digest: opts.digest.value, index: opts.index, ...(opts.ticket != null ? { ticket: opts.ticket } : {}) }, opts.signal)
  const res = await framed.readMessage(PieceResponse, { signal: opts.signal })
  if (!res.ok) return { refused: errorFromCode(res.code, res.message) }
  if (res.length !== opts.length) throw new ProtocolError(`peer announced ${res.length} bytes for a ${opts.length}-byte piece`)
  // the frames as they arrived: hashed and written chunk by chunk, never copied into one buffer
  const bytes = [...await framed.readPayload(opts.length, opts.signal)]
  if (pieceSha256Hex(bytes) !== opts.sha256) throw new DigestMismatchError(`piece ${opts.index} of ${opts.digest.value} failed verification`)
  return { bytes }
}

