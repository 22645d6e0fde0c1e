import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { request } from 'undici'
import { multiaddr } from '@multiformats/multiaddr'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { digestOf } from '../../shared/oci/digest.js'
import { createNode, type DamselflyNode } from '../../shared/p2p/node.js'
import type { TaskAnswer } from '../../shared/p2p/task-messages.js'
import { createSupernode, type Supernode } from '../../supernode/supernode.js'
import { SUPERNODE_DEFAULTS } from '../../supernode/config.js'
import { startRegistry, type TestRegistry } from '../helpers/registry.js'
import { pushImage, type PushedImage } from '../helpers/images.js'
import { startDaemon, type DaemonProcess } from '../helpers/processes.js'
import { askTask } from '../helpers/task.js'

const logger = pino({ level: 'silent' })

describe('a supernode limited to some registries (--allow-registry)', () => {
  let dir: string
  let allowed: TestRegistry
  let other: TestRegistry
  let inAllowed: PushedImage
  let inOther: PushedImage
  let supernode: Supernode | undefined
  let client: DamselflyNode | undefined
  let daemon: DaemonProcess | undefined

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'damselfly-allow-registry-'))
    allowed = await startRegistry()
    other = await startRegistry()
    inAllowed = await pushImage(allowed, { repository: 'team/app', tag: 'v1', layers: [{ size: 700 << 10, seed: 'allow-ok' }] })
    inOther = await pushImage(other, { repository: 'team/app', tag: 'v1', layers: [{ size: 700 << 10, seed: 'allow-no' }] })
    supernode = await createSupernode({ ...SUPERNODE_DEFAULTS, dataDir: join(dir, 'supernode'), host: '127.0.0.1', port: 0, p2pPort: 0, logLevel: 'silent', allowRegistries: [allowed.host] }, { logger })
    await supernode.start()
    client = await createNode({ privateKey: await generateKeyPair('Ed25519'), host: '127.0.0.1', port: 0, dhtClientMode: true })
    await client.start()
    daemon = await startDaemon({ name: 'daemon', supernode: supernode.httpAddress as string, upstream: allowed.url, dataDir: join(dir, 'daemon'), logDir: dir })
  })

  after(async () => {
    await daemon?.stop()
    await client?.stop()
    await supernode?.stop()
    await allowed?.stop()
    await other?.stop()
    await rm(dir, { recursive: true, force: true })
  })

  async function ask (registry: string, digest: string): Promise<TaskAnswer[]> {
    return await askTask(client as DamselflyNode, multiaddr((supernode as Supernode).multiaddrs[0]), { registry, repository: 'team/app', digest })
  }

  it('refuses a task for another registry with DENIED before asking that registry anything', async () => {
    await other.flushLog()
    const pushed = other.requests().length
    const answers = await ask(other.host, inOther.layers[0].digest)
    assert.deepEqual(answers.map(a => a.type), ['error'])
    assert.equal((answers[0] as { code: string }).code, 'DENIED')
    await other.flushLog()
    const asked = other.requests().slice(pushed).filter(r => r.path.includes('/blobs/'))
    assert.deepEqual(asked, [], 'no HEAD (access check) and no GET reached the registry')
  })

  it('serves a task for a listed registry', async () => {
    const answers = await ask(allowed.host, inAllowed.layers[0].digest)
    assert.equal(answers[0]?.type, 'manifest')
    assert.equal(answers.at(-1)?.type, 'done')
    await allowed.flushLog()
    assert.equal(allowed.blobRequests(inAllowed.layers[0].digest), 1)
  })

  it('counts the refusals and the tasks served in its metrics', async () => {
    const res = await request(`${(supernode as Supernode).httpAddress as string}/metrics`)
    const text = await res.body.text()
    assert.match(text, /damselfly_supernode_tasks_total\{result="denied"\} 1\b/)
    assert.match(text, /damselfly_supernode_tasks_total\{result="ok"\} 1\b/)
  })

  it('refuses a preheat of an image on another registry, and takes one on a listed registry', async () => {
    const base = (supernode as Supernode).httpAddress as string
    const post = async (image: string): Promise<{ status: number, body: { errors?: Array<{ code: string }> } }> => {
      const res = await request(`${base}/api/v1/preheat`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ image }) })
      return { status: res.statusCode, body: await res.body.json() as { errors?: Array<{ code: string }> } }
    }
    const refused = await post(`${other.host}/team/app:v1`)
    assert.equal(refused.status, 403)
    assert.equal(refused.body.errors?.[0]?.code, 'DENIED')
    assert.equal((await post(`${allowed.host}/team/app:v1`)).status, 202)
  })

  it('a pull through a daemon gets the blob from a listed registry, and a clear 403 DENIED for another', async () => {
    const d = daemon as DaemonProcess
    const blob = inAllowed.layers[0]
    const ok = await request(`${d.url}/v2/team/app/blobs/${blob.digest}?ns=${allowed.host}`)
    assert.equal(ok.statusCode, 200)
    assert.equal(digestOf(Buffer.from(await ok.body.arrayBuffer())).value, blob.digest)
    const no = await request(`${d.url}/v2/team/app/blobs/${inOther.layers[0].digest}?ns=${other.host}`)
    const body = await no.body.json() as { errors: Array<{ code: string }> }
    assert.equal(no.statusCode, 403)
    assert.equal(body.errors[0].code, 'DENIED')
    // the daemon keeps serving
    const again = await request(`${d.url}/v2/team/app/blobs/${blob.digest}?ns=${allowed.host}`)
    assert.equal(again.statusCode, 200)
    await again.body.dump()
  })
})
