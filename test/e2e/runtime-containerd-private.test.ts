/**
 * containerd's own token dance through a dfdaemon mirror, for a private repository on a real
 * registry in token-auth mode. The mirror hands the registry's 401 + WWW-Authenticate back;
 * containerd (`ctr --user`) fetches its own token from the realm and retries through the mirror.
 * The hosts.toml `server` is a closed port, so no pull can succeed without the mirror. Without
 * credentials the pull fails, even though the blobs sit in the daemon's store; and neither the
 * daemon's nor the supernode's log holds the password or a bearer token.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm, readFile, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startRegistry, type TestRegistry } from '../helpers/registry.js'
import { pushImage, type PushedImage } from '../helpers/images.js'
import { startSupernode, startDaemon, scrapeMetric, type SupernodeProcess, type DaemonProcess } from '../helpers/processes.js'
import { startContainerd, mirrorHostsToml, parseContentList, parseImageList, type ContainerdProcess } from '../helpers/containerd.js'

/** Nothing listens there: neither the daemon's default upstream nor containerd's fallback `server` can reach the origin. */
const DEAD = 'http://127.0.0.1:9'
const ALICE = { user: 'alice', password: `alice-${randomBytes(9).toString('hex')}` }
const REF = 'docker.io/team/private:v1'

describe('containerd (ctr --hosts-dir --user) through a dfdaemon to a token-auth registry', () => {
  let dir: string
  let origin: TestRegistry | undefined
  let image: PushedImage
  let supernode: SupernodeProcess | undefined
  let daemon: DaemonProcess | undefined
  let containerd: ContainerdProcess | undefined

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'damselfly-ctr-private-'))
    origin = await startRegistry({
      auth: 'token',
      users: { [ALICE.user]: ALICE.password },
      // anonymous clients get a token, but one that grants nothing on team/private
      acl: { [ALICE.user]: ['team/'], '': ['public/'] },
      anonymousPull: true
    })
    image = await pushImage(origin, {
      repository: 'team/private',
      tag: 'v1',
      layers: [{ size: 3 << 20, seed: 'ctr-private-big' }, { size: 150 << 10, seed: 'ctr-private-small' }],
      credentials: { username: ALICE.user, password: ALICE.password }
    })
    const endpoints = ['--registry-endpoint', `docker.io=${origin.url}`]
    supernode = await startSupernode({ dataDir: join(dir, 'supernode'), logDir: dir, extraArgs: endpoints })
    daemon = await startDaemon({ name: 'daemon', supernode: supernode.url, upstream: DEAD, dataDir: join(dir, 'daemon'), logDir: dir, extraArgs: endpoints })
    containerd = await startContainerd(join(dir, 'containerd'))
    await containerd.writeHosts('docker.io', mirrorHostsToml(DEAD, daemon.url))
  })

  after(async () => {
    await Promise.allSettled([containerd?.stop(), daemon?.stop(), supernode?.stop()])
    await origin?.stop()
    if (process.env.DAMSELFLY_KEEP_TEST_DIR == null && dir != null) await rm(dir, { recursive: true, force: true })
  })

  const pull = async (user?: string): Promise<string> => {
    assert.ok(containerd != null)
    return await containerd.ctr(['images', 'pull', '--hosts-dir', containerd.hostsDir, '--snapshotter', 'native', ...(user != null ? ['--user', user] : []), REF], 120_000)
  }
  const blobs = (): string[] => [image.config.digest, ...image.layers.map((l) => l.digest)]
  const blobsServed = async (): Promise<number> => await scrapeMetric(daemon?.url ?? '', 'damselfly_dfdaemon_http_requests_total', { route: 'blobs', method: 'GET', status: '200' })
  const unauthorizedServed = async (): Promise<number> => await scrapeMetric(daemon?.url ?? '', 'damselfly_dfdaemon_http_requests_total', { status: '401' })

  it('pulls the private image with --user alice: the mirror returns the 401 challenge, containerd gets its own token and retries', async () => {
    assert.ok(containerd != null && origin != null && daemon != null)
    await pull(`${ALICE.user}:${ALICE.password}`)
    assert.equal(parseImageList(await containerd.ctr(['images', 'ls'])).get(REF), image.manifestDigest)
    const content = parseContentList(await containerd.ctr(['content', 'ls']))
    for (const d of [image.manifestDigest, ...blobs()]) {
      assert.ok(content.has(d), `${d} is in the content store`)
      assert.equal(await containerd.contentDigest(d), d, `${d} has the right content`)
    }
    // containerd went through damselfly: every blob from the daemon, the first try of it refused with 401
    assert.equal(await blobsServed(), blobs().length, 'containerd fetched every blob from the daemon')
    assert.ok(await unauthorizedServed() >= 1, 'the daemon passed a 401 back to containerd')
    await origin.flushLog()
    for (const d of blobs()) assert.equal(origin.blobRequests(d), 1, `origin served ${d} once (to damselfly)`)
    // the big layer went through the swarm machinery: the daemon holds it complete
    for (const d of blobs()) await stat(join(dir, 'daemon', 'store', 'blobs', 'sha256', d.slice(7), 'data'))
  })

  it('the same pull without --user fails, while the blobs sit in the daemon\'s store', async () => {
    assert.ok(containerd != null && origin != null)
    await containerd.ctr(['images', 'rm', '--sync', REF])
    const left = parseContentList(await containerd.ctr(['content', 'ls']))
    const ours = [image.manifestDigest, ...blobs()].filter((d) => left.has(d))
    if (ours.length > 0) await containerd.ctr(['content', 'rm', ...ours])
    const now = parseContentList(await containerd.ctr(['content', 'ls']))
    for (const d of [image.manifestDigest, ...blobs()]) assert.ok(!now.has(d), `${d} was removed from containerd`)

    const servedBefore = await blobsServed()
    const unauthorizedBefore = await unauthorizedServed()
    await origin.flushLog()
    const originBefore = origin.blobRequests()
    await assert.rejects(pull(), (err: Error) => { assert.match(err.message, /401|unauthori[sz]ed|authori[sz]ation|denied|not found|failed to resolve/i); return true })
    assert.ok(!parseImageList(await containerd.ctr(['images', 'ls'])).has(REF), 'no image without credentials')
    const after = parseContentList(await containerd.ctr(['content', 'ls']))
    for (const d of blobs()) assert.ok(!after.has(d), `${d} did not reach containerd`)
    assert.equal(await blobsServed(), servedBefore, 'the daemon served no blob to the anonymous client')
    assert.ok(await unauthorizedServed() > unauthorizedBefore, 'the daemon refused the anonymous client')
    await origin.flushLog()
    assert.equal(origin.blobRequests(), originBefore, 'the origin served no blob to the anonymous attempt')
    for (const d of blobs()) await stat(join(dir, 'daemon', 'store', 'blobs', 'sha256', d.slice(7), 'data'))
  })

  it('the daemon\'s and supernode\'s logs hold neither alice\'s password nor any bearer token', async () => {
    const files = ['daemon.log', 'supernode.log']
    const basic = Buffer.from(`${ALICE.user}:${ALICE.password}`).toString('base64')
    for (const f of files) {
      const text = await readFile(join(dir, f), 'utf8')
      assert.ok(text.length > 0, `${f} is not empty`)
      assert.ok(!text.includes(ALICE.password), `${f} holds alice's password`)
      assert.ok(!text.includes(basic), `${f} holds alice's Basic credentials`)
      assert.ok(!text.includes('eyJ'), `${f} holds a bearer token (JWT)`)
    }
  })
})
