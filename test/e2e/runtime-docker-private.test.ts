/**
 * Docker's own token dance through a dfdaemon mirror, for a private repository on a real
 * registry in token-auth mode. Like runtime-docker.test.ts, dockerd, the registry, the supernode
 * and the daemon run in a loopback-only network namespace; the test's token server is exposed
 * in there on the port it has out here, so the registry's challenge realm works on both sides.
 *
 * Docker sends credentials to a mirror only from the Docker Hub login
 * (`https://index.docker.io/v1/`), and `docker login` checks them against Docker Hub itself,
 * which cannot be reached from the namespace: the test writes the login to the CLI's
 * config.json, as `docker login` would. The CLI sends it to dockerd (X-Registry-Auth); dockerd
 * pings the mirror, gets the registry's 401 + Bearer challenge passed back, fetches its own
 * token from the realm with those credentials and pulls through the mirror with it.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startRegistry, type TestRegistry } from '../helpers/registry.js'
import { pushImage, type PushedImage } from '../helpers/images.js'
import { startSupernode, startDaemon, scrapeMetric, type SupernodeProcess, type DaemonProcess } from '../helpers/processes.js'
import { createNetns, type Netns } from '../helpers/netns.js'
import { startDockerd, unmountUnder, type DockerdProcess } from '../helpers/dockerd.js'

interface Inspect { Id: string, RepoDigests: string[], RootFS: { Layers: string[] } }

const ALICE = { user: 'alice', password: `alice-${randomBytes(9).toString('hex')}` }
/** The key the Docker CLI files Docker Hub credentials under, and the only ones dockerd sends to a mirror. */
const DOCKER_HUB_INDEX = 'https://index.docker.io/v1/'
const REF = 'team/private:v1'
const OTHER_REF = 'team/other:v1'
/** dockerd's log line when the mirror failed a pull and it tries the next endpoint (Docker Hub itself). */
const FELL_BACK = /Attempting next endpoint for pull after error: (.*)/g

describe('docker (dockerd --registry-mirror, Docker Hub login) through a dfdaemon to a token-auth registry, in a loopback-only netns', () => {
  let dir: string
  let netns: Netns | undefined
  let origin: TestRegistry | undefined
  let image: PushedImage
  let other: PushedImage
  let supernode: SupernodeProcess | undefined
  let daemon: DaemonProcess | undefined
  let dockerd: DockerdProcess | undefined

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'damselfly-docker-private-'))
    netns = await createNetns(dir)
    origin = await startRegistry({
      auth: 'token',
      users: { [ALICE.user]: ALICE.password },
      // anonymous clients get a token, but one that grants nothing on team/
      acl: { [ALICE.user]: ['team/'], '': ['public/'] },
      anonymousPull: true,
      netns
    })
    await netns.expose(Number(new URL(origin.tokenServer?.realm ?? '').port))
    const reach = { url: origin.testUrl }
    const credentials = { username: ALICE.user, password: ALICE.password }
    image = await pushImage(reach, {
      repository: 'team/private',
      tag: 'v1',
      format: 'docker',
      layers: [{ size: 3 << 20, seed: 'dk-private-big' }, { size: 150 << 10, seed: 'dk-private-small' }],
      credentials
    })
    other = await pushImage(reach, { repository: 'team/other', tag: 'v1', format: 'docker', layers: [{ size: 100 << 10, seed: 'dk-private-other' }], credentials })
    const endpoints = ['--registry-endpoint', `docker.io=${origin.url}`]
    supernode = await startSupernode({ dataDir: join(dir, 'supernode'), logDir: dir, extraArgs: endpoints, netns })
    daemon = await startDaemon({ name: 'daemon', supernode: supernode.url, upstream: origin.url, dataDir: join(dir, 'daemon'), logDir: dir, extraArgs: endpoints, netns })
    dockerd = await startDockerd({ dir: join(dir, 'dockerd'), mirror: daemon.url, prefix: netns.prefix })
  })

  after(async () => {
    await dockerd?.stop()
    await Promise.allSettled([daemon?.stop(), supernode?.stop()])
    await origin?.stop()
    await netns?.remove()
    if (dir != null) {
      await unmountUnder(dir)
      if (process.env.DAMSELFLY_KEEP_TEST_DIR == null) await rm(dir, { recursive: true, force: true })
    }
  })

  const docker = async (args: string[]): Promise<string> => {
    assert.ok(dockerd != null)
    return await dockerd.docker(args)
  }
  const cliConfig = (): string => join(dockerd?.dir ?? '', 'cli', 'config.json')
  const inspect = async (ref: string): Promise<Inspect> => (JSON.parse(await docker(['image', 'inspect', ref])) as Inspect[])[0]
  const imageIds = async (): Promise<string[]> => (await docker(['image', 'ls', '--all', '--quiet', '--no-trunc'])).split('\n').filter(Boolean)
  const blobsOf = (img: PushedImage): string[] => [img.config.digest, ...img.layers.map((l) => l.digest)]
  const blobsServed = async (): Promise<number> => await scrapeMetric(daemon?.testUrl ?? '', 'damselfly_dfdaemon_http_requests_total', { route: 'blobs', method: 'GET', status: '200' })
  const unauthorizedServed = async (): Promise<number> => await scrapeMetric(daemon?.testUrl ?? '', 'damselfly_dfdaemon_http_requests_total', { status: '401' })
  const inDaemonStore = async (digest: string): Promise<boolean> => await stat(join(dir, 'daemon', 'store', 'blobs', 'sha256', digest.slice(7), 'data')).then(() => true, () => false)

  /** The errors after which dockerd gave up on the mirror, from `from` (a log length) on; waits a bounded time for the first. */
  const fallbacks = async (from: number, wait = true): Promise<string[]> => {
    for (let i = 0; ; i++) {
      const text = (await dockerd?.logs() ?? '').slice(from)
      // dockerd's logfmt escapes the newlines of a multi-error message
      const found = [...text.matchAll(FELL_BACK)].map((m) => m[1].replace(/\\n/g, ' '))
      if (found.length > 0 || !wait || i >= 100) return found
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
  }

  /**
   * A pull that must fail. The mirror's refusal shows in dockerd's log only: dockerd then falls back
   * to Docker Hub, which the namespace cannot reach, and the CLI reports that last error.
   */
  const refusedPull = async (ref: string): Promise<{ blobs: number, unauthorized: number, origin: number }> => {
    assert.ok(origin != null && dockerd != null)
    const blobs = await blobsServed()
    const unauthorized = await unauthorizedServed()
    await origin.flushLog()
    const fromOrigin = origin.blobRequests()
    const logStart = (await dockerd.logs()).length
    await assert.rejects(docker(['pull', '--quiet', ref]), (err: Error) => { assert.match(err.message, /registry-1\.docker\.io/); return true })
    const mirrorError = (await fallbacks(logStart))[0] ?? ''
    assert.match(mirrorError, /\b(unauthorized|denied): /, 'dockerd left the mirror on its authorization error')
    await origin.flushLog()
    return { blobs: await blobsServed() - blobs, unauthorized: await unauthorizedServed() - unauthorized, origin: origin.blobRequests() - fromOrigin }
  }

  it('with the Docker Hub login in config.json, docker pull gets the private image through the mirror: ids and digests right, each blob from the origin once', async () => {
    assert.ok(origin?.tokenServer != null)
    const basic = Buffer.from(`${ALICE.user}:${ALICE.password}`).toString('base64')
    await writeFile(cliConfig(), JSON.stringify({ auths: { [DOCKER_HUB_INDEX]: { auth: basic } } }) + '\n', { mode: 0o600 })
    const issued = origin.tokenServer.issued()

    await docker(['pull', '--quiet', REF])
    assert.deepEqual(await fallbacks(0, false), [], 'dockerd did not give up on the mirror')
    const img = await inspect(REF)
    assert.equal(img.Id, image.config.digest)
    assert.ok(img.RepoDigests.some((r) => r.endsWith(`@${image.manifestDigest}`)), img.RepoDigests.join(' '))
    assert.deepEqual(img.RootFS.Layers, image.layers.map((l) => l.diffId))
    // dockerd went through damselfly: every blob from the daemon, its ping answered with the challenge
    assert.equal(await blobsServed(), blobsOf(image).length, 'dockerd fetched every blob from the mirror')
    assert.ok(await unauthorizedServed() >= 1, 'the daemon passed the registry\'s 401 challenge to dockerd')
    assert.ok(origin.tokenServer.issued() > issued, 'dockerd fetched a token from the realm')
    await origin.flushLog()
    for (const d of blobsOf(image)) assert.equal(origin.blobRequests(d), 1, `origin served ${d} once (to damselfly)`)
    for (const d of blobsOf(image)) assert.ok(await inDaemonStore(d), `the daemon holds ${d}`)
  })

  it('after docker logout, the same pull fails and stores nothing, while the blobs sit in the daemon\'s store', async () => {
    await docker(['logout'])
    const config = JSON.parse(await readFile(cliConfig(), 'utf8')) as { auths?: Record<string, unknown> }
    assert.ok(config.auths?.[DOCKER_HUB_INDEX] == null, 'docker logout removed the Docker Hub login')
    await docker(['image', 'rm', REF])
    assert.deepEqual(await imageIds(), [], 'dockerd holds no image')

    const refused = await refusedPull(REF)
    assert.deepEqual(await imageIds(), [], 'no image without credentials')
    assert.equal(refused.blobs, 0, 'the daemon served no blob to the anonymous dockerd')
    assert.ok(refused.unauthorized >= 1, 'the daemon refused the anonymous dockerd')
    assert.equal(refused.origin, 0, 'the origin served no blob to the anonymous attempt')
    for (const d of blobsOf(image)) assert.ok(await inDaemonStore(d), `the daemon still holds ${d}`)
  })

  it('without credentials, a private image nobody pulled yet fails too, and none of its blobs leaves the origin', async () => {
    const refused = await refusedPull(OTHER_REF)
    assert.deepEqual(await imageIds(), [], 'no image without credentials')
    assert.equal(refused.blobs, 0, 'the daemon served no blob')
    assert.ok(refused.unauthorized >= 1, 'the daemon refused the anonymous dockerd')
    for (const d of blobsOf(other)) {
      assert.equal(origin?.blobRequests(d), 0, `the origin never served ${d}`)
      assert.ok(!await inDaemonStore(d), `the daemon does not hold ${d}`)
    }
  })

  it('the daemon\'s and supernode\'s logs hold neither alice\'s password nor any bearer token', async () => {
    const basic = Buffer.from(`${ALICE.user}:${ALICE.password}`).toString('base64')
    for (const f of ['daemon.log', 'supernode.log']) {
      const text = await readFile(join(dir, f), 'utf8')
      assert.ok(text.length > 0, `${f} is not empty`)
      assert.ok(!text.includes(ALICE.password), `${f} holds alice's password`)
      assert.ok(!text.includes(basic), `${f} holds alice's Basic credentials`)
      assert.ok(!text.includes('eyJ'), `${f} holds a bearer token (JWT)`)
    }
  })
})
