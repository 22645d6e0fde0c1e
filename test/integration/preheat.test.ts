import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { pino } from 'pino'
import { request } from 'undici'
import { digestOf } from '../../shared/oci/digest.js'
import { createSupernode, type Supernode } from '../../supernode/supernode.js'
import { SUPERNODE_DEFAULTS } from '../../supernode/config.js'
import { startRegistry, type TestRegistry } from '../helpers/registry.js'
import { pushImage, type PushedImage } from '../helpers/images.js'
import { startDaemon, type DaemonProcess } from '../helpers/processes.js'

const logger = pino({ level: 'silent' })
const TOKEN = randomBytes(24).toString('base64url')

interface Layer { digest: string, size: number, state: string, bytes: number }
/** The fields the three APIs answer with (ours, legacy Dragonfly, open API). */
interface Body { id?: string | number, state?: string, image?: string, error?: string, layers?: Layer[], ID?: string, status?: string, startTime?: string, finishTime?: string }
interface Answer { status: number, json: Body }

async function call (base: string, method: 'GET' | 'POST', path: string, body?: unknown, token: string | null = TOKEN): Promise<Answer> {
  const headers: Record<string, string> = {}
  if (token !== null) headers.authorization = `Bearer ${token}`
  if (body !== undefined) headers['content-type'] = 'application/json'
  const res = await request(`${base}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) })
  const text = await res.body.text()
  let json: Body = {}
  try { json = JSON.parse(text) as Body } catch { /* not JSON: the status tells */ }
  return { status: res.statusCode, json }
}

/** Poll `path` until `done(answer)`, for a bounded number of rounds; returns the last answer. */
async function poll (base: string, path: string, done: (a: Answer) => boolean): Promise<Answer> {
  let last = await call(base, 'GET', path)
  for (let i = 0; i < 1200 && !done(last); i++) {
    await new Promise(resolve => setTimeout(resolve, 50))
    last = await call(base, 'GET', path)
  }
  return last
}

const v1Done = (a: Answer): boolean => a.status !== 200 || a.json.state === 'SUCCESS' || a.json.state === 'FAILURE'
const legacyDone = (a: Answer): boolean => a.status !== 200 || a.json.status === 'SUCCESS' || a.json.status === 'FAILED'
const oapiDone = (a: Answer): boolean => a.status !== 200 || a.json.state !== 'PENDING'
const basic = (u: string, p: string): string => `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}`

describe('preheat', () => {
  let dir: string
  let reg: TestRegistry
  let priv: TestRegistry
  let supernode: Supernode | undefined
  let daemon: DaemonProcess | undefined
  let base: string
  let app: PushedImage
  let multi: PushedImage
  let legacy: PushedImage
  let oapi: PushedImage
  let secret: PushedImage

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'damselfly-preheat-'))
    reg = await startRegistry()
    priv = await startRegistry({ auth: 'token' })
    app = await pushImage(reg, { repository: 'team/app', tag: 'v1', layers: [{ size: 3 << 20 }, { size: 1 << 20 }, { size: 200 << 10 }] })
    multi = await pushImage(reg, { repository: 'team/multi', tag: 'v1', layers: [{ size: 300 << 10 }, { size: 100 << 10 }], platforms: ['linux/amd64', 'linux/arm64'] })
    legacy = await pushImage(reg, { repository: 'team/legacy', tag: 'v2', layers: [{ size: 500 << 10 }, { size: 50 << 10 }] })
    oapi = await pushImage(reg, { repository: 'team/oapi', tag: 'v3', layers: [{ size: 400 << 10 }], platforms: ['linux/amd64', 'linux/arm64'] })
    secret = await pushImage(priv, { repository: 'team/secret', tag: 'v1', layers: [{ size: 300 << 10 }], credentials: { username: priv.username, password: priv.password } })
    const tokenFile = join(dir, 'api-token')
    await writeFile(tokenFile, TOKEN + '\n', { mode: 0o600 })
    supernode = await createSupernode({ ...SUPERNODE_DEFAULTS, dataDir: join(dir, 'supernode'), host: '127.0.0.1', port: 0, p2pPort: 0, logLevel: 'silent', apiTokenFile: tokenFile }, { logger })
    await supernode.start()
    base = supernode.httpAddress as string
  })

  after(async () => {
    await daemon?.stop()
    await supernode?.stop()
    await reg?.stop()
    await priv?.stop()
    await rm(dir, { recursive: true, force: true })
  })

  it('preheats every layer and the config of an image, then a daemon pull asks the origin for none of them', async () => {
    const created = await call(base, 'POST', '/api/v1/preheat', { image: `${reg.host}/team/app:v1` })
    assert.equal(created.status, 202)
    const job = await poll(base, `/api/v1/preheat/${created.json.id as string}`, v1Done)
    assert.equal(job.json.state, 'SUCCESS', JSON.stringify(job.json))
    assert.equal(job.json.image, `${reg.host}/team/app:v1`)
    const blobs = [...app.layers, app.config]
    assert.deepEqual(new Set((job.json.layers ?? []).map((l: { digest: string }) => l.digest)), new Set(blobs.map(b => b.digest)))
    for (const l of job.json.layers ?? []) {
      assert.equal(l.state, 'SUCCESS')
      assert.equal(l.bytes, l.size)
    }
    await reg.flushLog()
    for (const b of blobs) assert.equal(reg.blobRequests(b.digest), 1)

    const d = await startDaemon({ name: 'daemon', supernode: base, upstream: reg.url, dataDir: join(dir, 'daemon'), logDir: dir })
    daemon = d
    for (const layer of app.layers) {
      const res = await request(`${d.url}/v2/team/app/blobs/${layer.digest}`, { signal: AbortSignal.timeout(60_000) })
      const body = Buffer.from(await res.body.arrayBuffer())
      assert.equal(res.statusCode, 200)
      assert.equal(digestOf(body).value, layer.digest)
    }
    await reg.flushLog()
    for (const b of blobs) assert.equal(reg.blobRequests(b.digest), 1, `origin asked again for ${b.digest}`)
  })

  it('preheats only the listed platforms of a multi-arch index', async () => {
    const created = await call(base, 'POST', '/api/v1/preheat', { image: `${reg.host}/team/multi:v1`, platforms: ['linux/arm64'] })
    assert.equal(created.status, 202)
    const job = await poll(base, `/api/v1/preheat/${created.json.id as string}`, v1Done)
    assert.equal(job.json.state, 'SUCCESS', JSON.stringify(job.json))
    const arm = multi.manifests.find(m => m.platform === 'linux/arm64')
    const amd = multi.manifests.find(m => m.platform === 'linux/amd64')
    assert.ok(arm != null && amd != null)
    const want = [...multi.layers.map(l => l.digest), arm.config.digest]
    assert.deepEqual(new Set((job.json.layers ?? []).map((l: { digest: string }) => l.digest)), new Set(want))
    await reg.flushLog()
    for (const d of want) assert.equal(reg.blobRequests(d), 1)
    assert.equal(reg.blobRequests(amd.config.digest), 0)

    // again, every platform: only the missing config comes from the origin
    const all = await call(base, 'POST', '/api/v1/preheat', { image: `${reg.host}/team/multi@${multi.tagDigest}` })
    const again = await poll(base, `/api/v1/preheat/${all.json.id as string}`, v1Done)
    assert.equal(again.json.state, 'SUCCESS', JSON.stringify(again.json))
    assert.equal(again.json.layers?.length, want.length + 1)
    await reg.flushLog()
    for (const d of [...want, amd.config.digest]) assert.equal(reg.blobRequests(d), 1)
  })

  it('fails a platform the index does not have, and an unknown job is a 404', async () => {
    const created = await call(base, 'POST', '/api/v1/preheat', { image: `${reg.host}/team/multi:v1`, platforms: ['linux/s390x'] })
    const job = await poll(base, `/api/v1/preheat/${created.json.id as string}`, v1Done)
    assert.equal(job.json.state, 'FAILURE')
    assert.match(job.json.error ?? '', /^PlatformUnknownError/)
    assert.equal((await call(base, 'GET', '/api/v1/preheat/no-such-job')).status, 404)
    assert.equal((await call(base, 'POST', '/api/v1/preheat', { image: 'Not A Reference' })).status, 400)
  })

  it("answers Harbor's legacy Dragonfly provider as Harbor calls it", async () => {
    const ping = await call(base, 'GET', '/_ping')
    assert.equal(ping.status, 200)
    const created = await call(base, 'POST', '/preheats', {
      type: 'image',
      url: `${reg.url}/v2/team/legacy/manifests/v2`,
      headers: { Authorization: basic('robot$harbor', 'unused') }
    })
    assert.equal(created.status, 200)
    assert.equal(typeof created.json.ID, 'string')
    const status = await poll(base, `/preheats/${created.json.ID as string}`, legacyDone)
    assert.equal(status.json.status, 'SUCCESS', JSON.stringify(status.json))
    assert.equal(status.json.ID, created.json.ID)
    assert.ok(!Number.isNaN(Date.parse(status.json.startTime ?? '')))
    assert.ok(!Number.isNaN(Date.parse(status.json.finishTime ?? '')))
    await reg.flushLog()
    for (const b of [...legacy.layers, legacy.config]) assert.equal(reg.blobRequests(b.digest), 1)
    assert.equal((await call(base, 'GET', '/preheats/unknown')).status, 404)
  })

  it("answers Dragonfly's open API", async () => {
    const created = await call(base, 'POST', '/oapi/v1/jobs', {
      type: 'preheat',
      args: { type: 'image', url: `${reg.url}/v2/team/oapi/manifests/v3`, platform: 'linux/amd64', scope: 'single_seed_peer', headers: {} }
    })
    assert.equal(created.status, 200)
    assert.equal(typeof created.json.id, 'number')
    assert.equal(created.json.state, 'PENDING')
    const job = await poll(base, `/oapi/v1/jobs/${created.json.id as number}`, oapiDone)
    assert.equal(job.json.state, 'SUCCESS', JSON.stringify(job.json))
    assert.equal(job.json.id, created.json.id)
    const amd = oapi.manifests.find(m => m.platform === 'linux/amd64')
    const arm = oapi.manifests.find(m => m.platform === 'linux/arm64')
    assert.ok(amd != null && arm != null)
    await reg.flushLog()
    assert.equal(reg.blobRequests(amd.config.digest), 1)
    assert.equal(reg.blobRequests(arm.config.digest), 0)
    assert.equal(reg.blobRequests(oapi.layers[0].digest), 1)
    assert.equal((await call(base, 'GET', '/oapi/v1/jobs/99999')).status, 404)
  })

  it('preheats a private image with the credentials passed, and fails without them', async () => {
    const image = `${priv.host}/team/secret:v1`
    const url = `${priv.url}/v2/team/secret/manifests/v1`
    const anon = await call(base, 'POST', '/api/v1/preheat', { image })
    assert.equal((await poll(base, `/api/v1/preheat/${anon.json.id as string}`, v1Done)).json.state, 'FAILURE')
    const anonLegacy = await call(base, 'POST', '/preheats', { type: 'image', url, headers: {} })
    assert.equal((await poll(base, `/preheats/${anonLegacy.json.ID as string}`, legacyDone)).json.status, 'FAILED')
    const anonOapi = await call(base, 'POST', '/oapi/v1/jobs', { type: 'preheat', args: { type: 'image', url } })
    assert.equal((await poll(base, `/oapi/v1/jobs/${anonOapi.json.id as number}`, oapiDone)).json.state, 'FAILURE')
    await priv.flushLog()
    assert.equal(priv.blobRequests(), 0)

    const withCreds = await call(base, 'POST', '/api/v1/preheat', { image, credentials: { username: priv.username, password: priv.password } })
    const job = await poll(base, `/api/v1/preheat/${withCreds.json.id as string}`, v1Done)
    assert.equal(job.json.state, 'SUCCESS', JSON.stringify(job.json))
    assert.equal(job.json.layers?.length, 2)
    const viaHarbor = await call(base, 'POST', '/preheats', { type: 'image', url, headers: { Authorization: basic(priv.username, priv.password) } })
    assert.equal((await poll(base, `/preheats/${viaHarbor.json.ID as string}`, legacyDone)).json.status, 'SUCCESS')
    const viaOapi = await call(base, 'POST', '/oapi/v1/jobs', { type: 'preheat', args: { type: 'image', url, username: priv.username, password: priv.password } })
    assert.equal((await poll(base, `/oapi/v1/jobs/${viaOapi.json.id as number}`, oapiDone)).json.state, 'SUCCESS')
    await priv.flushLog()
    for (const b of [...secret.layers, secret.config]) assert.equal(priv.blobRequests(b.digest), 1)
  })

  it('refuses the preheat endpoints without the operator token', async () => {
    const body = { image: `${reg.host}/team/app:v1` }
    const legacyBody = { type: 'image', url: `${reg.url}/v2/team/app/manifests/v1` }
    const oapiBody = { type: 'preheat', args: legacyBody }
    for (const token of [null, 'wrong-token-wrong-token']) {
      assert.equal((await call(base, 'POST', '/api/v1/preheat', body, token)).status, 401)
      assert.equal((await call(base, 'GET', '/api/v1/preheat/x', undefined, token)).status, 401)
      assert.equal((await call(base, 'POST', '/preheats', legacyBody, token)).status, 401)
      assert.equal((await call(base, 'GET', '/preheats/x', undefined, token)).status, 401)
      assert.equal((await call(base, 'POST', '/oapi/v1/jobs', oapiBody, token)).status, 401)
      assert.equal((await call(base, 'GET', '/oapi/v1/jobs/1', undefined, token)).status, 401)
    }
  })
})
