/**
 * A private blob whose download outlasts its ticket: the daemon renews the
 * ticket with the supernode before it expires, and its neighbour keeps serving
 * it pieces to the end (without the renewal, the holder refuses the expired
 * ticket and the daemon goes back to the origin for the rest).
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { startRegistry, type TestRegistry } from '../helpers/registry.js'
import { pushImage, type PushedImage } from '../helpers/images.js'
import { startSupernode, startDaemon, scrapeMetric, type SupernodeProcess, type DaemonProcess } from '../helpers/processes.js'
import { skopeoCopy, dirBlobs } from '../helpers/skopeo.js'

const ALICE = { user: 'alice', password: `alice-${randomBytes(9).toString('hex')}` }
/** The supernode's shortest ticket life, in seconds. */
const TICKET_TTL = 10
/** B's download bound: the 6 MiB layer takes it about 16 s, past the ticket's life. */
const SLOW = '400K'

describe('a private blob whose download outlasts its ticket', () => {
  let dir: string
  let origin: TestRegistry
  let image: PushedImage
  let supernode: SupernodeProcess
  let holder: DaemonProcess
  let slow: DaemonProcess

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'damselfly-ticket-renewal-'))
    origin = await startRegistry({ auth: 'token', users: { [ALICE.user]: ALICE.password }, acl: { [ALICE.user]: ['private/'] } })
    image = await pushImage(origin, { repository: 'private/app', tag: 'v1', layers: [{ size: 6 << 20, seed: 'renewal-big' }], credentials: { username: ALICE.user, password: ALICE.password } })
    supernode = await startSupernode({ dataDir: join(dir, 'supernode'), logDir: dir, extraArgs: ['--ticket-ttl', String(TICKET_TTL)] })
    holder = await startDaemon({ name: 'holder', supernode: supernode.url, upstream: origin.url, dataDir: join(dir, 'holder'), logDir: dir })
    slow = await startDaemon({ name: 'slow', supernode: supernode.url, upstream: origin.url, dataDir: join(dir, 'slow'), logDir: dir, extraArgs: ['--download-limit', SLOW] })
  })

  after(async () => {
    await Promise.allSettled([holder?.stop(), slow?.stop(), supernode?.stop()])
    await origin?.stop()
    if (process.env.DAMSELFLY_KEEP_TEST_DIR == null) await rm(dir, { recursive: true, force: true })
  })

  it('renews the ticket and gets every piece from the swarm, none refused and none from the origin', async () => {
    const creds = `${ALICE.user}:${ALICE.password}`
    await skopeoCopy(`${holder.host}/private/app:v1`, join(dir, 'pull-holder'), { creds })
    const dest = join(dir, 'pull-slow')
    await skopeoCopy(`${slow.host}/private/app:v1`, dest, { creds })
    const got = await dirBlobs(dest)
    for (const d of [image.config.digest, ...image.layers.map(l => l.digest)]) assert.equal(got.get(d.slice(7)), d.slice(7))
    const layer = image.layers[0]
    assert.ok(await scrapeMetric(slow.url, 'damselfly_dfdaemon_piece_bytes_total', { source: 'peer' }) >= layer.size / 2, 'most of the layer came from the holder')
    assert.equal(await scrapeMetric(slow.url, 'damselfly_dfdaemon_piece_bytes_total', { source: 'origin' }), 0, 'no back-to-source')
    assert.equal(await scrapeMetric(slow.url, 'damselfly_dfdaemon_piece_failures_total', { reason: 'DeniedError' }), 0, 'no piece refused for an expired ticket')
    assert.ok((await slow.logs()).includes('ticket renewed'), 'the ticket was renewed during the download')
  })
})
