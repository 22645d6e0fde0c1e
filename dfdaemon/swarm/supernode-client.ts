import { request } from 'undici'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import type { PeerId } from '@libp2p/interface'
import type { ConnectionLanes } from '../../shared/p2p/connection-lanes.js'
import type { Logger } from 'pino'
import { FramedStream } from '../../shared/p2p/codec.js'
import { TASK_PROTOCOL } from '../../shared/p2p/protocols.js'
import { TaskAnswer, TASK_PROGRESS_TIMEOUT_MS, type TaskRequest } from '../../shared/p2p/task-messages.js'
import { UnavailableError } from '../../shared/errors.js'
import type { DamselflyNode } from '../../shared/p2p/node.js'

export interface SupernodeClientInit {
  /** The supernode's HTTP address, e.g. http://10.0.0.5:8002. */
  url: string
  /** Deadline for learning the supernode's identity over HTTP. */
  infoTimeoutMs?: number
  /** Deadline for each task answer (no progress → the task is stalled). */
  progressTimeoutMs?: number
  /** The supernode identity this daemon trusts (SupernodePin); another one is refused. */
  pin?: { accept: (id: PeerId) => Promise<boolean> }
}

export interface SupernodeClientComponents {
  libp2p: DamselflyNode
  logger: Logger
  /** Task streams on a connection that carries no piece bytes (see ConnectionLanes). */
  lanes?: Pick<ConnectionLanes, 'dialProtocol'>
}

/** A task in progress on the supernode, as a stream of answers. */
export interface TaskStream extends AsyncIterable<TaskAnswer> {
  close: () => void
}

/**
 * The daemon's way to the supernode: learns its peer id and addresses from
 * `/api/v1/info`, keeps them in the peer store, and opens task streams.
 */
export class SupernodeClient {
  private readonly init: SupernodeClientInit
  private readonly libp2p: DamselflyNode
  private readonly streams: Pick<ConnectionLanes, 'dialProtocol'>
  private readonly log: Logger
  private peer?: PeerId

  constructor (components: SupernodeClientComponents, init: SupernodeClientInit) {
    this.libp2p = components.libp2p
    this.streams = components.lanes ?? components.libp2p
    this.log = components.logger.child({ component: 'supernode-client' })
    this.init = init
  }

  /** The supernode's peer id, asking it over HTTP the first time. */
  async peerId (signal?: AbortSignal): Promise<PeerId> {
    if (this.peer != null) return this.peer
    const url = new URL('/api/v1/info', this.init.url)
    const timeout = AbortSignal.timeout(this.init.infoTimeoutMs ?? 5000)
    let body: { peerId?: unknown, multiaddrs?: unknown }
    try {
      const res = await request(url, { signal: signal == null ? timeout : AbortSignal.any([signal, timeout]) })
      if (res.statusCode !== 200) {
        await res.body.dump()
        throw new Error(`HTTP ${res.statusCode}`)
      }
      body = await res.body.json() as typeof body
    } catch (err) {
      throw new UnavailableError(`supernode at ${this.init.url} unreachable`, { cause: err })
    }
    if (typeof body.peerId !== 'string' || !Array.isArray(body.multiaddrs)) throw new UnavailableError('supernode info is malformed')
    const peer = peerIdFromString(body.peerId)
    if (this.init.pin != null && !await this.init.pin.accept(peer)) {
      throw new UnavailableError(`supernode at ${this.init.url} presented an identity other than the pinned one`)
    }
    const addrs = body.multiaddrs.filter((a): a is string => typeof a === 'string').map(a => multiaddr(a))
    await this.libp2p.peerStore.merge(peer, { multiaddrs: addrs })
    this.log.info({ peer: peer.toString(), addrs: addrs.map(String) }, 'supernode found')
    this.peer = peer
    return peer
  }

  /** The supernode's peer id if already known. */
  knownPeerId (): PeerId | undefined {
    return this.peer
  }

  /** Open the task for a blob; the answers arrive as the supernode makes progress. */
  async openTask (req: TaskRequest, signal?: AbortSignal): Promise<TaskStream> {
    const peer = await this.peerId(signal)
    let stream
    const dialDeadline = AbortSignal.timeout(10_000)
    try {
      stream = await this.streams.dialProtocol(peer, TASK_PROTOCOL, { signal: signal == null ? dialDeadline : AbortSignal.any([signal, dialDeadline]) })
    } catch (err) {
      // the supernode may have restarted with new addresses: ask again next time
      this.peer = undefined
      throw new UnavailableError('cannot open a task stream to the supernode', { cause: err })
    }
    const framed = new FramedStream(stream, { messageTimeoutMs: this.init.progressTimeoutMs ?? TASK_PROGRESS_TIMEOUT_MS })
    try {
      await framed.writeMessage(req, signal)
    } catch (err) {
      framed.abort(err as Error)
      throw new UnavailableError('cannot send the task request to the supernode', { cause: err })
    }
    let closed = false
    return {
      close: () => {
        if (closed) return
        closed = true
        framed.abort(new Error('task closed'))
      },
      [Symbol.asyncIterator]: async function * () {
        while (!closed) {
          let answer
          try {
            answer = await framed.readMessage(TaskAnswer, { allowEnd: true, signal })
          } catch (err) {
            // a dead or misbehaving supernode is unavailable, whatever broke
            throw err instanceof UnavailableError ? err : new UnavailableError('supernode task stream lost', { cause: err })
          }
          if (answer == null) return
          yield answer
          if (answer.type === 'done' || answer.type === 'error') {
            closed = true
            await framed.close()
            return
          }
        }
      }
    }
  }
}
