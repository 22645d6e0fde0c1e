import type { Libp2p, PeerId } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import { Value } from '@sinclair/typebox/value'
import { FramedStream, DEFAULT_MESSAGE_TIMEOUT_MS } from './codec.js'
import { TRACKER_PROTOCOL } from './protocols.js'
import { TrackerAnnounce, TrackerAnswer, type TrackerReply } from './tracker-messages.js'
import { DamselflyError, ProtocolError, TimeoutError, UnavailableError, errorFromCode } from '../errors.js'

export interface AnnounceOptions {
  /** Abort the announce; its reason is thrown. */
  signal?: AbortSignal
  /** Deadline for the whole exchange: dial, request and reply. */
  timeoutMs?: number
}

/**
 * Announce to the tracker (TRACKER_PROTOCOL) and return its reply. Throws
 * UnavailableError when the supernode cannot be reached or does not speak the
 * protocol, TimeoutError when the deadline passes, the caller's abort reason on
 * abort, ProtocolError for a malformed announce or reply or a broken stream,
 * and the typed error of a refusal (DeniedError for an address naming another
 * peer or not parsing, InvalidDigestError for a bad digest).
 */
export async function announce (libp2p: Pick<Libp2p, 'dialProtocol'>, supernodePeer: PeerId | Multiaddr, msg: TrackerAnnounce, options: AnnounceOptions = {}): Promise<TrackerReply> {
  if (!Value.Check(TrackerAnnounce, msg)) throw new ProtocolError('announce does not match its schema')
  const timeoutMs = options.timeoutMs ?? DEFAULT_MESSAGE_TIMEOUT_MS
  const deadline = AbortSignal.timeout(timeoutMs)
  const signal = options.signal == null ? deadline : AbortSignal.any([options.signal, deadline])

  let framed: FramedStream
  try {
    framed = new FramedStream(await libp2p.dialProtocol(supernodePeer, TRACKER_PROTOCOL, { signal }), { messageTimeoutMs: timeoutMs })
  } catch (err) {
    throw aborted(options.signal, deadline, err) ?? new UnavailableError('tracker unreachable', { cause: err })
  }
  try {
    await framed.writeMessage(msg, signal)
    const answer = await framed.readMessage(TrackerAnswer, { signal })
    await framed.close()
    if ('error' in answer) throw errorFromCode(answer.error.code, answer.error.message)
    return answer
  } catch (err) {
    framed.abort(err instanceof Error ? err : new Error(String(err)))
    const stopped = aborted(options.signal, deadline, err)
    if (stopped != null) throw stopped
    if (err instanceof DamselflyError) throw err
    throw new ProtocolError('tracker stream failed', { cause: err })
  }
}

/** The error to throw when the caller aborted or the deadline passed, else undefined. */
function aborted (caller: AbortSignal | undefined, deadline: AbortSignal, cause: unknown): Error | undefined {
  if (caller?.aborted === true) return caller.reason instanceof Error ? caller.reason : new DamselflyError('announce aborted', { cause })
  if (deadline.aborted) return new TimeoutError('tracker announce timed out', { cause })
  return undefined
}
