import { byteStream, type ByteStream } from '@libp2p/utils'
import { StreamStateError, type Stream } from '@libp2p/interface'
import { TypeCompiler, type TypeCheck } from '@sinclair/typebox/compiler'
import type { Static, TSchema } from '@sinclair/typebox'
import { encode as encodeVarint, encodingLength } from 'uint8-varint'
import { Uint8ArrayList } from 'uint8arraylist'
import { ProtocolError, TimeoutError } from '../errors.js'
import { MAX_PIECE_SIZE } from '../pieces/piece-math.js'
import { Deadline } from '../deadline.js'

/** Largest JSON control message any protocol accepts. */
export const MAX_MESSAGE_BYTES = 4 << 20
/** Default deadline for one message to arrive or leave. */
export const DEFAULT_MESSAGE_TIMEOUT_MS = 10_000
/**
 * A payload's deadline is on progress: it may take up to this many message
 * deadlines in all, as long as no single one passes without a byte moving.
 */
export const PAYLOAD_MAX_DEADLINES = 6

export interface FramedStreamInit {
  /** Deadline per message in ms; for a payload, the longest it may stand still. */
  messageTimeoutMs?: number
  /** Cap on one JSON message. */
  maxMessageBytes?: number
  /** Cap on one raw payload (a piece). */
  maxPayloadBytes?: number
}

const MAX_VARINT_BYTES = 5

export interface ReadMessageOptions {
  /** Return null on a clean end of stream instead of throwing. */
  allowEnd?: boolean
  signal?: AbortSignal
  /** Deadline for this message instead of the stream's default (e.g. long for an idle neighbour). */
  timeoutMs?: number
}

/**
 * Length-prefixed frames over a libp2p stream: JSON control messages validated
 * against a schema, and raw payloads (piece bytes, never JSON-encoded). Every
 * read and write has a deadline; every frame a size cap checked before its body
 * is read. Violations throw ProtocolError, deadlines TimeoutError. A payload's
 * deadline is on progress (see Deadline): a piece sharing a slow connection with
 * many others is not thrown away part-received as long as its bytes keep moving.
 */
export class FramedStream {
  readonly stream: Stream
  private readonly bytes: ByteStream<Stream>
  private readonly timeoutMs: number
  private readonly maxMessageBytes: number
  private readonly maxPayloadBytes: number
  /**
   * Bytes the stream has delivered since its first payload read began: the progress
   * a payload's deadline watches (counted only on streams that carry payloads).
   */
  private received = 0
  private counting = false
  /** The deadline of this stream's reads, armed again for each frame (reads never overlap). */
  private readonly reading = new Deadline()

  constructor (stream: Stream, init: FramedStreamInit = {}) {
    this.stream = stream
    this.timeoutMs = init.messageTimeoutMs ?? DEFAULT_MESSAGE_TIMEOUT_MS
    this.maxMessageBytes = init.maxMessageBytes ?? MAX_MESSAGE_BYTES
    this.maxPayloadBytes = init.maxPayloadBytes ?? MAX_PIECE_SIZE
    this.bytes = byteStream(stream, { maxBufferSize: Math.max(this.maxMessageBytes, this.maxPayloadBytes) + 64 })
  }

  /** Read one JSON message and check it against `schema`. Returns null on a clean end of stream. */
  async readMessage<S extends TSchema>(schema: S, options: ReadMessageOptions & { allowEnd: true }): Promise<Static<S> | null>
  async readMessage<S extends TSchema>(schema: S, options?: ReadMessageOptions & { allowEnd?: false }): Promise<Static<S>>
  async readMessage<S extends TSchema>(schema: S, options: ReadMessageOptions = {}): Promise<Static<S> | null> {
    const frame = await this.readFrame(this.maxMessageBytes, { allowEnd: options.allowEnd === true, signal: options.signal, timeoutMs: options.timeoutMs })
    if (frame == null) return null
    let value: unknown
    try {
      value = JSON.parse(Buffer.from(frame.subarray()).toString('utf8'))
    } catch {
      throw new ProtocolError('message is not valid JSON')
    }
    if (!checkerFor(schema).Check(value)) throw new ProtocolError('message does not match its schema')
    return value
  }

  /** Read one raw payload of exactly `expectedLength` bytes. */
  async readPayload (expectedLength: number, signal?: AbortSignal): Promise<Uint8ArrayList> {
    if (!this.counting) {
      this.counting = true
      this.stream.addEventListener('message', (evt) => { this.received += evt.data.byteLength })
    }
    const frame = await this.readFrame(Math.min(this.maxPayloadBytes, expectedLength), { signal, progress: () => this.received })
    if (frame == null || frame.byteLength !== expectedLength) {
      throw new ProtocolError(`payload of ${frame?.byteLength ?? 0} bytes, expected ${expectedLength}`)
    }
    return frame
  }

  async writeMessage (message: unknown, signal?: AbortSignal): Promise<void> {
    await this.writeMessages([message], signal)
  }

  /**
   * Several JSON messages in one write: the remote reads them one by one as usual,
   * but they cross the muxer, the encryption and the socket once, not once each.
   */
  async writeMessages (messages: readonly unknown[], signal?: AbortSignal): Promise<void> {
    const frames = new Uint8ArrayList()
    for (const message of messages) {
      const body = Buffer.from(JSON.stringify(message), 'utf8')
      if (body.byteLength > this.maxMessageBytes) throw new ProtocolError('outgoing message too large')
      frames.append(lengthPrefix(body.byteLength), body)
    }
    await this.write(frames, signal)
  }

  /**
   * Write one raw payload. The deadline is on the whole write, which returns once
   * the muxer has taken the payload or sent its first window's worth (the
   * reader's deadline, on progress, watches the rest).
   */
  async writePayload (payload: Uint8Array | Uint8ArrayList, signal?: AbortSignal): Promise<void> {
    await this.write(new Uint8ArrayList(lengthPrefix(payload.byteLength), payload), signal)
  }

  /** Finish writing; the remote sees a clean end. */
  async close (): Promise<void> {
    await this.stream.close({ signal: AbortSignal.timeout(this.timeoutMs) }).catch(err => { this.stream.abort(err) })
  }

  abort (err: Error): void {
    this.stream.abort(err)
  }

  /**
   * One length-prefixed frame of at most `max` bytes within `timeoutMs` (the stream's message
   * timeout by default) — with `progress`, within `timeoutMs` of the last bytes received, up to
   * PAYLOAD_MAX_DEADLINES times it in all; null for a clean end of stream where `allowEnd` allows one.
   */
  private async readFrame (max: number, opts: { allowEnd?: boolean, signal?: AbortSignal, timeoutMs?: number, progress?: () => number }): Promise<Uint8ArrayList | null> {
    const { allowEnd = false, signal, timeoutMs, progress } = opts
    // a frame already received in full (the haves a neighbour sent together, a
    // request behind the last): taken at once, with no deadline or wait to set up
    const received = receivedBytes(this.bytes)
    if (received !== undefined && signal?.aborted !== true) {
      const frame = takeFrame(received, max)
      if (frame !== undefined) return frame
    }
    const deadline = this.deadline(signal, timeoutMs ?? this.timeoutMs, progress, this.reading)
    try {
      let length = 0
      for (let i = 0; ; i++) {
        if (i >= MAX_VARINT_BYTES) throw new ProtocolError('frame length prefix too long')
        let b: Uint8ArrayList
        try {
          b = await this.bytes.read({ bytes: 1, signal: deadline.signal })
        } catch (err) {
          if (i === 0 && allowEnd && (err as Error).name === 'UnexpectedEOFError') return null
          if (i === 0 && (err as Error).name === 'UnexpectedEOFError') throw new ProtocolError('stream ended before a message')
          throw err
        }
        const byte = b.get(0)
        length += (byte & 0x7f) * 2 ** (7 * i)
        if ((byte & 0x80) === 0) break
      }
      if (length > max) throw new ProtocolError(`frame of ${length} bytes exceeds the cap of ${max}`)
      if (length === 0) return new Uint8ArrayList()
      return await this.bytes.read({ bytes: length, signal: deadline.signal })
    } catch (err) {
      throw translate(err, deadline.signal)
    } finally {
      deadline.clear()
    }
  }

  /** Write bytes already framed, under one deadline. */
  private async write (frames: Uint8ArrayList, signal?: AbortSignal): Promise<void> {
    const deadline = this.deadline(signal, this.timeoutMs)
    try {
      await this.bytes.write(frames, { signal: deadline.signal })
    } catch (err) {
      throw translate(err, deadline.signal)
    } finally {
      deadline.clear()
    }
  }

  /**
   * A deadline for one frame: `reuse` armed again when it is free (its signal is the
   * last frame's unless that one was aborted), else a new one. Writes take a new one
   * each: a write waiting for 'drain' leaves a listener on its signal (p-event's), which
   * a signal kept for the stream's life would gather.
   */
  private deadline (signal: AbortSignal | undefined, timeoutMs: number, progress?: () => number, reuse?: Deadline): Deadline {
    const deadline = reuse?.busy === false ? reuse : new Deadline()
    if (progress == null) {
      deadline.arm(signal, timeoutMs, messageTimedOut)
      return deadline
    }
    const maxMs = timeoutMs * PAYLOAD_MAX_DEADLINES
    deadline.arm(signal, timeoutMs, () => new TimeoutError(`payload stood still for ${timeoutMs} ms`), {
      progress, maxMs, tooLong: () => new TimeoutError(`payload took over ${maxMs} ms`)
    })
    return deadline
  }
}

/**
 * Take one whole frame (length prefix and body) off the front of `buffer`, or
 * return undefined and leave it untouched when the frame is not all there yet.
 * Throws ProtocolError for a prefix longer than a varint may be or a frame over `max`.
 */
export function takeFrame (buffer: Uint8ArrayList, max: number): Uint8ArrayList | undefined {
  let length = 0
  let i = 0
  for (; ; i++) {
    if (i >= MAX_VARINT_BYTES) throw new ProtocolError('frame length prefix too long')
    if (i >= buffer.byteLength) return undefined
    const byte = buffer.get(i)
    length += (byte & 0x7f) * 2 ** (7 * i)
    if ((byte & 0x80) === 0) break
  }
  if (length > max) throw new ProtocolError(`frame of ${length} bytes exceeds the cap of ${max}`)
  const end = i + 1 + length
  if (buffer.byteLength < end) return undefined
  const frame = buffer.sublist(i + 1, end)
  buffer.consume(end)
  return frame
}

/**
 * The bytes a byteStream has received and not yet handed out. Its buffer is
 * not part of its declared type: when a release of @libp2p/utils drops or
 * renames it (or brings its own uint8arraylist), this is undefined and every
 * read takes the waiting path.
 */
function receivedBytes (bytes: ByteStream<Stream>): Uint8ArrayList | undefined {
  const buffer = (bytes as { readBuffer?: unknown }).readBuffer
  return buffer instanceof Uint8ArrayList ? buffer : undefined
}

function messageTimedOut (): Error {
  return new TimeoutError('message deadline passed')
}

/** Schema checks compiled once per schema (typebox's interpreted check walks the schema for every message). */
const checkers = new WeakMap<TSchema, TypeCheck<TSchema>>()

function checkerFor<S extends TSchema> (schema: S): TypeCheck<S> {
  let checker = checkers.get(schema)
  if (checker == null) {
    checker = TypeCompiler.Compile(schema)
    checkers.set(schema, checker)
  }
  return checker as TypeCheck<S>
}

function lengthPrefix (length: number): Uint8Array {
  return encodeVarint(length, new Uint8Array(encodingLength(length)))
}

function translate (err: unknown, deadline: AbortSignal): Error {
  if (err instanceof ProtocolError) return err
  if (deadline.aborted) {
    const reason: unknown = deadline.reason
    if (reason instanceof Error && reason.name === 'TimeoutError') return new TimeoutError(reason.message, { cause: err })
    return reason instanceof Error ? reason : new TimeoutError('aborted', { cause: err })
  }
  if (err instanceof Error && err.name === 'UnexpectedEOFError') return new ProtocolError('stream ended mid-message', { cause: err })
  // a write waiting for 'drain' is rejected with the stream's close event itself
  if (err instanceof Event) {
    const cause = (err as Event & { error?: unknown }).error
    return cause instanceof Error ? cause : new StreamStateError('stream closed while writing')
  }
  return err instanceof Error ? err : new ProtocolError(String(err))
}
