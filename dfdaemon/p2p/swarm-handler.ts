import type { Connection, Libp2p, PeerId, Startable, Stream } from '@libp2p/interface'
import type { Logger } from 'pino'
import { FramedStream } from '../../shared/p2p/codec.js'
import { SWARM_PROTOCOL } from '../../shared/p2p/protocols.js'
import { SwarmHello } from '../../shared/p2p/swarm-messages.js'
import { parseDigest } from '../../shared/oci/digest.js'
import { Bitfield } from '../../shared/pieces/bitfield.js'
import { manifestToWire } from '../../shared/pieces/piece-manifest.js'
import type { BlobStore } from '../../shared/store/blob-store.js'
import { DamselflyError } from '../../shared/errors.js'
import type { BlobDownload } from '../swarm/blob-download.js'
import { Neighbour } from '../swarm/neighbour.js'

export interface SwarmHandlerComponents {
  libp2p: Pick<Libp2p, 'handle' | 'unhandle'>
  store: BlobStore
  /** The download of a blob on this host, if one is running. */
  download: (digest: string) => BlobDownload | undefined
  logger: Logger
  /** Whether `peer` may have this blob (private blobs: a valid ticket); throws the refusal. */
  authorize?: (digest: string, peer: PeerId, ticket: string | undefined) => Promise<void>
}

export interface SwarmHandlerInit {
  maxInboundStreams?: number
  /** Deadline for the hello. */
  helloTimeoutMs?: number
}

/**
 * Answers SWARM_PROTOCOL: a daemon says hello for a blob with its bitfield;
 * we answer with our manifest and bitfield. While we are downloading the blob
 * too, the stream stays open and the peer becomes a neighbour of that
 * download; a blob we hold whole needs no stream after the welcome.
 */
export class SwarmHandler implements Startable {
  private readonly c: SwarmHandlerComponents
  private readonly init: SwarmHandlerInit
  private readonly log: Logger

  constructor (components: SwarmHandlerComponents, init: SwarmHandlerInit = {}) {
    this.c = components
    this.init = init
    this.log = components.logger.child({ component: 'swarm-handler' })
  }

  async start (): Promise<void> {
    await this.c.libp2p.handle(SWARM_PROTOCOL, async (stream, connection) => { await this.onStream(stream, connection) }, {
      maxInboundStreams: this.init.maxInboundStreams ?? 256
    })
  }

  async stop (): Promise<void> {
    await this.c.libp2p.unhandle(SWARM_PROTOCOL)
  }

  private async onStream (stream: Stream, connection: Connection): Promise<void> {
    const framed = new FramedStream(stream, { messageTimeoutMs: this.init.helloTimeoutMs ?? 10_000 })
    const peer = connection.remotePeer
    try {
      const hello = await framed.readMessage(SwarmHello)
      const digest = parseDigest(hello.digest)
      await this.c.authorize?.(digest.value, peer, hello.ticket)
      const partial = this.c.download(digest.value)?.current
      if (partial != null) {
        const theirs = Bitfield.fromBase64(partial.manifest.pieces.length, hello.have)
        // what the welcome says we hold: pieces completing while it is written are caught up on joining
        const told = partial.bitfield.toBase64()
        await framed.writeMessage({ type: 'welcome', manifest: manifestToWire(partial.manifest), have: told })
        const download = this.c.download(digest.value)
        if (download == null) {
          await framed.close()
          return
        }
        download.addNeighbour(new Neighbour(peer, theirs, framed, this.log, false, Bitfield.fromBase64(partial.manifest.pieces.length, told)))
        return
      }
      const complete = await this.c.store.getComplete(digest)
      if (complete == null) {
        await framed.writeMessage({ type: 'error', code: 'BLOB_UNKNOWN', message: 'blob not held here' })
        await framed.close()
        return
      }
      const all = new Bitfield(complete.manifest.pieces.length)
      for (let i = 0; i < all.length; i++) all.set(i)
      await framed.writeMessage({ type: 'welcome', manifest: manifestToWire(complete.manifest), have: all.toBase64() })
      await framed.close()
    } catch (err) {
      this.log.debug({ peer: peer.toString(), err: (err as Error).message }, 'swarm stream refused')
      if (err instanceof DamselflyError && err.code !== 'UNAVAILABLE') {
        await framed.writeMessage({ type: 'error', code: err.code, message: err.message.slice(0, 200) }).catch(() => {})
      }
      framed.abort(err as Error)
    }
  }
}
