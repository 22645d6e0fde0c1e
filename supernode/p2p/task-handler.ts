import type { Connection, Libp2p, Startable, Stream } from '@libp2p/interface'
import type { Logger } from 'pino'
import { FramedStream } from '../../shared/p2p/codec.js'
import { TASK_PROTOCOL } from '../../shared/p2p/protocols.js'
import { TaskRequest, type TaskAnswer } from '../../shared/p2p/task-messages.js'
import { parseDigest } from '../../shared/oci/digest.js'
import { isValidRegistryHost, validateRepository } from '../../shared/oci/reference.js'
import { ANONYMOUS, type Credentials } from '../../shared/oci/registry-types.js'
import { manifestToWire } from '../../shared/pieces/piece-manifest.js'
import { DamselflyError, DeniedError, InvalidNameError } from '../../shared/errors.js'
import type { OriginFetcher } from '../origin/origin-fetcher.js'
import type { FetchTask, PieceComplete } from '../origin/fetch-task.js'
import type { BlobAccess } from '../auth/blob-access.js'
import type { UrlAccess } from '../auth/url-access.js'
import type { RegistryAllowlist } from '../../shared/security/registry-allowlist.js'
import type { SupernodeMetrics } from '../metrics.js'
import { redact, type UrlResolver } from '../origin/url-resolver.js'

export interface TaskHandlerComponents {
  libp2p: Pick<Libp2p, 'handle' | 'unhandle'>
  originFetcher: Pick<OriginFetcher, 'ensure'>
  logger: Logger
  /** Checks every request with the origin before the blob is fetched, joined or served; absent: no check. */
  access?: Pick<BlobAccess, 'authorize'>
  /** The registries blobs are fetched from (--allow-registry); absent: any. */
  registries?: Pick<RegistryAllowlist, 'check'>
  metrics?: Pick<SupernodeMetrics, 'tasks'>
  /** dfget: files named by URL (their digests learnt, their access gated); absent: URL tasks are refused. */
  urls?: { resolver: Pick<UrlResolver, 'resolve'>, access: Pick<UrlAccess, 'admit' | 'authorize' | 'track'> }
}

export interface TaskHandlerInit {
  /** Concurrent task streams per connection (a daemon asks for each blob it pulls). */
  maxInboundStreams?: number
  /** Deadline for the request to arrive and for each answer to leave. */
  messageTimeoutMs?: number
}

export const DEFAULT_MAX_TASK_STREAMS = 64

/**
 * Answers TASK_PROTOCOL: one request {registry, repository, digest,
 * authorization?}, then the piece manifest known so far, a `piece` message as
 * each further piece completes, and `done` — or one `error` with the OCI code
 * (and the origin's challenge for UNAUTHORIZED). Nothing escapes: failures are
 * logged, without the authorization, and the stream closed or aborted.
 */
export class TaskHandler implements Startable {
  private readonly components: TaskHandlerComponents
  private readonly init: TaskHandlerInit
  private readonly log: Logger

  constructor (components: TaskHandlerComponents, init: TaskHandlerInit = {}) {
    this.components = components
    this.init = init
    this.log = components.logger.child({ component: 'task-handler' })
  }

  async start (): Promise<void> {
    await this.components.libp2p.handle(TASK_PROTOCOL, async (stream, connection) => { await this.onStream(stream, connection) }, {
      maxInboundStreams: this.init.maxInboundStreams ?? DEFAULT_MAX_TASK_STREAMS
    })
  }

  async stop (): Promise<void> {
    await this.components.libp2p.unhandle(TASK_PROTOCOL)
  }

  private async onStream (stream: Stream, connection: Connection): Promise<void> {
    const framed = new FramedStream(stream, { messageTimeoutMs: this.init.messageTimeoutMs })
    const peer = connection.remotePeer.toString()
    let digest: string | undefined
    try {
      const req = await framed.readMessage(TaskRequest)
      digest = req.digest
      if (req.url != null) await this.onUrlTask(framed, req.url, req.digest, connection)
      else await this.onRegistryTask(framed, req, connection)
      this.components.metrics?.tasks.inc({ result: 'ok' })
    } catch (err) {
      this.components.metrics?.tasks.inc({ result: framed.stream.status !== 'open' ? 'abandoned' : err instanceof DamselflyError ? err.code.toLowerCase() : 'error' })
      await this.fail(framed, err, { peer, digest })
    }
  }

  /** A layer of a registry: the asker must be allowed to pull it from the origin, whether it is stored, being fetched or new. */
  private async onRegistryTask (framed: FramedStream, req: TaskRequest, connection: Connection): Promise<void> {
    const origin = {
      registry: checkRegistry(req.registry),
      repository: validateRepository(req.repository),
      digest: parseDigest(req.digest),
      credentials: credentialsOf(req.authorization)
    }
    // refused before the registry is asked anything, the access check included
    try {
      this.components.registries?.check(origin.registry)
    } catch (err) {
      this.log.info({ peer: connection.remotePeer.toString(), registry: origin.registry }, 'task refused: registry not in --allow-registry')
      throw err
    }
    const grant = await this.components.access?.authorize({ ...origin, digest: origin.digest.value }, connection.remotePeer)
    const task = await this.components.originFetcher.ensure(origin)
    await this.follow(framed, task, grant?.ticket)
    await framed.close()
  }

  /** dfget: the file at `url` (if the operator allows it), its digest given or (empty) learnt by fetching it once. */
  private async onUrlTask (framed: FramedStream, requested: string, given: string, connection: Connection): Promise<void> {
    const urls = this.components.urls
    if (urls == null) throw new DeniedError('this supernode does not fetch URLs')
    // refused before anything is looked up or fetched; from here on the URL as it was checked
    let url: string
    try {
      url = urls.access.admit(requested).href
    } catch (err) {
      this.log.info({ peer: connection.remotePeer.toString(), url: redact(requested), err: (err as Error).message }, 'URL task refused')
      throw err
    }
    const digest = given === '' ? await urls.resolver.resolve(url) : parseDigest(given)
    const grant = await urls.access.authorize(digest.value, connection.remotePeer)
    const ensured = this.components.originFetcher.ensure({ registry: 'dfget', repository: 'dfget', digest, credentials: ANONYMOUS, url })
    urls.access.track(digest.value, ensured.then(async (task) => { await task.done }))
    await this.follow(framed, await ensured, grant.ticket)
    await framed.close()
  }

  /** Send the manifest so far, then each piece as it completes, then done (or the fetch's error). */
  private async follow (framed: FramedStream, task: FetchTask, ticket?: string): Promise<void> {
    const pending: PieceComplete[] = []
    let wake: (() => void) | undefined
    let gone = false
    const onClose = (): void => { gone = true; wake?.() }
    framed.stream.addEventListener('close', onClose)
    // subscribe and take the snapshot in one tick, so no piece falls between them
    const unsubscribe = task.onPiece(piece => { pending.push(piece); wake?.() })
    const manifest = manifestToWire(task.manifest)
    let finished = task.finished
    task.done.then(() => { finished = true; wake?.() }, () => { finished = true; wake?.() })
    try {
      await framed.writeMessage(answer({ type: 'manifest', manifest, ...(ticket != null ? { ticket } : {}) }))
      for (;;) {
        while (pending.length > 0 && !gone) {
          const { index, sha256 } = pending.shift() as PieceComplete
          await framed.writeMessage(answer({ type: 'piece', index, sha256 }))
        }
        if (gone) throw new DamselflyError('task stream closed by the peer')
        if (finished) break
        await new Promise<void>(resolve => { wake = resolve })
        wake = undefined
      }
    } finally {
      unsubscribe()
      framed.stream.removeEventListener('close', onClose)
    }
    if (task.error != null) throw task.error
    await framed.writeMessage(answer({ type: 'done' }))
  }

  private async fail (framed: FramedStream, err: unknown, context: { peer: string, digest?: string }): Promise<void> {
    const error = err instanceof Error ? err : new Error(String(err))
    // the error's name and message only: never the request, which may hold an authorization
    this.log.debug({ ...context, err: { name: error.name, message: error.message } }, 'task stream failed')
    const status = framed.stream.status
    if (!(err instanceof DamselflyError) || status !== 'open') {
      framed.abort(error)
      return
    }
    try {
      const message: TaskAnswer = { type: 'error', code: err.code, message: err.message.slice(0, 2000) }
      if ('challenge' in err && typeof err.challenge === 'string') message.challenge = err.challenge.slice(0, 4096)
      await framed.writeMessage(message)
      await framed.close()
    } catch (writeErr) {
      framed.abort(writeErr as Error)
    }
  }
}

function answer (a: TaskAnswer): TaskAnswer {
  return a
}

function checkRegistry (registry: string): string {
  if (!isValidRegistryHost(registry)) throw new InvalidNameError('invalid registry name')
  return registry
}

/** The client's Authorization header is passed to the origin unchanged; without one, anonymous. */
function credentialsOf (authorization: string | undefined): Credentials {
  return authorization != null && authorization !== '' ? { kind: 'authorization', header: authorization } : ANONYMOUS
}
