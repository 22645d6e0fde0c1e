/**
 * A task whose origin fetch uses the asker's own credentials starts that fetch beside the access
 * check instead of after it (the first asker's layer is on its way a round trip sooner), and
 * still answers nothing before the check has passed.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { multiaddr } from '@multiformats/multiaddr'
import { RegistryClient } from '../../shared/oci/registry-client.js'
import { DeniedError } from '../../shared/errors.js'
import type { AccessClient } from '../../shared/security/access-check.js'
import type { OriginClient } from '../../supernode/origin/origin-fetcher.js'
import { createNode, type DamselflyNode } from '../../shared/p2p/node.js'
import type { TaskAnswer } from '../../shared/p2p/task-messages.js'
import { createSupernode, type Supernode } from '../../supernode/supernode.js'
import { SUPERNODE_DEFAULTS } from '../../supernode/config.js'
import { startRegistry, type TestRegistry } from '../helpers/registry.js'
import { pushImage, type PushedImage } from '../helpers/images.js'
import { askTask } from '../helpers/task.js'

const logger = pino({ level: 'silent' })
/** How long a held access check waits for the fetch before it answers anyway. */
const HOLD_MS = 5000

describe('a task fetches beside its access check', () => {
  let dir: string
  let reg: TestRegistry
  let image: PushedImage
  let client: RegistryClient
  let peer: DamselflyNode | undefined
  /** Digests whose origin GET has started. */
  const fetching = new Set<string>()
  const fetchStarted = new Map<string, () => void>()
  /** Per digest: whether its GET had started when its access check was answered. */
  const fetchedBeforeCheck = new Map<string, boolean>()
  /** Digests whose access check refuses (what a registry denying this asker would say). */
  const refuse = new Set<string>()

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'damselfly-task-beside-'))
    reg = await startRegistry()
    image = await pushImage(reg, { repository: 'team/app', tag: 'v1', layers: [{ size: 900 << 10, seed: 'beside-a' }, { size: 700 << 10, seed: 'beside-b' }] })
    client = new RegistryClient({ logger })
    peer = await createNode({ privateKey: await generateKeyPair('Ed25519'), host: '127.0.0.1', port: 0, dhtClientMode: true })
    await peer.start()
  })

  after(async () => {
    await peer?.stop()
    await client?.close()
    await reg?.stop()
    await rm(dir, { recursive: true, force: true })
  })

  /** A supernode whose origin client notes each GET, and whose access check is held until the GET has started (or HOLD_MS). */
  async function supernode (name: string): Promise<Supernode> {
    const origin: OriginClient = {
      getBlob: async (ep, repository, digest, opts) => {
        fetching.add(digest)
        fetchStarted.get(digest)?.()
        return await client.getBlob(ep, repository, digest, opts)
      }
    }
    const access: AccessClient = {
      headBlob: async (ep, repository, digest, opts) => {
        if (!fetching.has(digest)) {
          let timer: NodeJS.Timeout | undefined
          await new Promise<void>(resolve => {
            fetchStarted.set(digest, resolve)
            timer = setTimeout(resolve, HOLD_MS)
          })
          clearTimeout(timer)
        }
        fetchedBeforeCheck.set(digest, fetching.has(digest))
        if (refuse.has(digest)) throw new DeniedError('not for this asker')
        return await client.headBlob(ep, repository, digest, opts)
      }
    }
    const sn = await createSupernode({ ...SUPERNODE_DEFAULTS, dataDir: join(dir, name), host: '127.0.0.1', port: 0, p2pPort: 0, logLevel: 'silent' }, { logger, client: origin, accessClient: access })
    await sn.start()
    return sn
  }

  async function ask (sn: Supernode, digest: string): Promise<TaskAnswer[]> {
    return await askTask(peer as DamselflyNode, multiaddr(sn.multiaddrs[0]), { registry: reg.host, repository: 'team/app', digest })
  }

  it('the origin GET starts while the access check is still unanswered; the task then completes', async () => {
    const sn = await supernode('open')
    try {
      const digest = image.layers[0].digest
      const answers = await ask(sn, digest)
      assert.equal(answers[0]?.type, 'manifest')
      assert.equal(answers.at(-1)?.type, 'done')
      assert.equal(fetchedBeforeCheck.get(digest), true, 'the GET had started before the access check was answered')
      await reg.flushLog(() => reg.blobRequests(digest) === 1)
      assert.equal(reg.blobRequests(digest), 1)
    } finally {
      await sn.stop()
    }
  })

  it('a refused check is the answer, though the fetch beside it went ahead', async () => {
    const sn = await supernode('refused')
    try {
      const digest = image.layers[1].digest
      refuse.add(digest)
      const answers = await ask(sn, digest)
      assert.deepEqual(answers.map(a => a.type), ['error'])
      assert.equal((answers[0] as Extract<TaskAnswer, { type: 'error' }>).code, 'DENIED')
      assert.equal(fetchedBeforeCheck.get(digest), true)
      // the supernode keeps serving (the refusal itself is remembered for a while, as any is)
      const other = await ask(sn, image.layers[0].digest)
      assert.equal(other[0]?.type, 'manifest')
      assert.equal(other.at(-1)?.type, 'done')
    } finally {
      await sn.stop()
    }
  })
})
