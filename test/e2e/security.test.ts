/**
 * Security end to end, on real processes: a token-auth registry with a private
 * and a public repository, a closed swarm (swarm key) of a supernode with an
 * operator token and two daemons. Host A's client may pull the private image;
 * host B's client may not (no credentials, or another user's), and B's daemon
 * gets no piece of it from anyone without the supernode's ticket.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm, writeFile, readFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { request } from 'undici'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { startRegistry, TOKEN_SERVICE, type TestRegistry } from '../helpers/registry.js'
import { makeLayer, pushImage, type PushedImage } from '../helpers/images.js'
import { startSupernode, startDaemon, scrapeMetric, type SupernodeProcess, type DaemonProcess } from '../helpers/processes.js'
import { skopeoCopy, dirBlobs } from '../helpers/skopeo.js'
import { createNode, loadOrCreateKey, type DamselflyNode } from '../../shared/p2p/node.js'
import { fetchPiece } from '../../shared/p2p/piece-protocol.js'
import { FramedStream } from '../../shared/p2p/codec.js'
import { SWARM_PROTOCOL } from '../../shared/p2p/protocols.js'
import { SwarmWelcome } from '../../shared/p2p/swarm-messages.js'
import { parseDigest, sha256Hex } from '../../shared/oci/digest.js'
import { pieceLength, pieceSizeFor } from '../../shared/pieces/piece-math.js'
import { signTicket } from '../../shared/security/ticket.js'

const ALICE = { user: 'alice', password: `alice-${randomBytes(9).toString('hex')}` }
const BOB = { user: 'bob', password: `bob-${randomBytes(9).toString('hex')}` }
const API_TOKEN = `op-${randomBytes(16).toString('hex')}`
const PSK_HEX = randomBytes(32).toString('hex')
const WRONG_PSK_HEX = randomBytes(32).toString('hex')
const PRIVATE_LAYER = { size: 5 << 20, seed: 'private-big' }

const pskFile = (hex: string): string => `/key/swarm/psk/1.0.0/\n/base16/\n${hex}\n`
const pskBytes = (hex: string): Uint8Array => Buffer.from(pskFile(hex).trim())

describe('security: closed swarm, private blobs, operator token', () => {
  let dir: string
  let origin: TestRegistry
  let priv: PushedImage
  let pub: PushedImage
  let supernode: SupernodeProcess
  let daemonA: DaemonProcess
  let daemonB: DaemonProcess
  const nodes: DamselflyNode[] = []
  const secrets: string[] = []

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'damselfly-security-'))
    origin = await startRegistry({
      auth: 'token',
      users: { [ALICE.user]: ALICE.password, [BOB.user]: BOB.password },
      acl: { [ALICE.user]: ['private/', 'public/'], [BOB.user]: ['other/'], '': ['public/'] },
      anonymousPull: true
    })
    const alice = { username: ALICE.user, password: ALICE.password }
    priv = await pushImage(origin, { repository: 'private/app', tag: 'v1', layers: [PRIVATE_LAYER, { size: 2000, seed: 'private-small' }], credentials: alice })
    pub = await pushImage(origin, { repository: 'public/app', tag: 'v1', layers: [{ size: 300 << 10, seed: 'public-layer' }], credentials: alice })

    await writeFile(join(dir, 'swarm.key'), pskFile(PSK_HEX), { mode: 0o600 })
    await writeFile(join(dir, 'api.token'), `${API_TOKEN}\n`, { mode: 0o600 })
    const swarm = ['--swarm-key', join(dir, 'swarm.key')]
    supernode = await startSupernode({ dataDir: join(dir, 'supernode'), logDir: dir, extraArgs: [...swarm, '--api-token-file', join(dir, 'api.token')] })
    daemonA = await startDaemon({ name: 'daemon-a', supernode: supernode.url, upstream: origin.url, dataDir: join(dir, 'a'), logDir: dir, extraArgs: swarm })
    daemonB = await startDaemon({ name: 'daemon-b', supernode: supernode.url, upstream: origin.url, dataDir: join(dir, 'b'), logDir: dir, extraArgs: swarm })
    secrets.push(ALICE.password, BOB.password, API_TOKEN, PSK_HEX, Buffer.from(`${ALICE.user}:${ALICE.password}`).toString('base64'))
  })

  after(async () => {
    await Promise.allSettled(nodes.map(async n => { await n.stop() }))
    await Promise.allSettled([daemonA?.stop(), daemonB?.stop(), supernode?.stop()])
    await origin?.stop()
    if (process.env.DAMSELFLY_KEEP_TEST_DIR == null) await rm(dir, { recursive: true, force: true })
  })

  /** A bearer token from the registry's token server for `user` (what a client sends after its token dance). */
  async function tokenFor (user: { user: string, password: string }, repository: string): Promise<string> {
    const url = new URL(origin.tokenServer!.realm)
    url.searchParams.set('service', TOKEN_SERVICE)
    url.searchParams.set('scope', `repository:${repository}:pull`)
    const res = await request(url, { headers: { authorization: `Basic ${Buffer.from(`${user.user}:${user.password}`).toString('base64')}` } })
    const { token } = await res.body.json() as { token: string }
    secrets.push(token)
    return token
  }

  /** A libp2p node of the test itself, with a given identity and swarm key. */
  async function testNode (opts: { keyFile?: string, psk?: Uint8Array }): Promise<DamselflyNode> {
    const privateKey = opts.keyFile != null ? await loadOrCreateKey(opts.keyFile) : await generateKeyPair('Ed25519')
    const node = await createNode({ privateKey, host: '127.0.0.1', port: 0, dhtClientMode: true, psk: opts.psk })
    await node.start()
    nodes.push(node)
    return node
  }

  async function p2pAddr (daemonDir: string, port: number): Promise<string> {
    const key = await loadOrCreateKey(join(daemonDir, 'peer.key'))
    return `/ip4/127.0.0.1/tcp/${port}/p2p/${peerIdFromPrivateKey(key).toString()}`
  }

  const privateLayer = (): { digest: string, bytes: Buffer } => ({ digest: priv.layers[0].digest, bytes: makeLayer(PRIVATE_LAYER, '').blob })

  it('host A, whose client has credentials, pulls the private image through the closed swarm', async () => {
    const dest = join(dir, 'pull-a')
    await skopeoCopy(`${daemonA.host}/private/app:v1`, dest, { creds: `${ALICE.user}:${ALICE.password}` })
    const got = await dirBlobs(dest)
    for (const d of [priv.config.digest, ...priv.layers.map(l => l.digest)]) assert.equal(got.get(d.slice(7)), d.slice(7))
  })

  it('host B gets UNAUTHORIZED for the private blobs while A holds them: no credentials, or another user', async () => {
    await assert.rejects(skopeoCopy(`${daemonB.host}/private/app:v1`, join(dir, 'pull-b-anon')))
    await assert.rejects(skopeoCopy(`${daemonB.host}/private/app:v1`, join(dir, 'pull-b-bob'), { creds: `${BOB.user}:${BOB.password}` }))
    // the digests are no secret: ask B's mirror for the blob directly, as a client that knows them would
    const { digest } = privateLayer()
    const anon = await request(`${daemonB.url}/v2/private/app/blobs/${digest}`)
    const anonBody = await anon.body.json() as { errors: Array<{ code: string }> }
    assert.equal(anon.statusCode, 401)
    assert.equal(anonBody.errors[0].code, 'UNAUTHORIZED')
    assert.match(String(anon.headers['www-authenticate']), /^Bearer realm=/)
    const bob = await request(`${daemonB.url}/v2/private/app/blobs/${digest}`, { headers: { authorization: `Bearer ${await tokenFor(BOB, 'private/app')}` } })
    const bobBody = await bob.body.json() as { errors: Array<{ code: string }> }
    assert.ok([401, 403].includes(bob.statusCode), `status ${bob.statusCode}`)
    assert.ok(['UNAUTHORIZED', 'DENIED'].includes(bobBody.errors[0].code))
    // through a public repository B may read, the private digest is still refused
    const viaPublic = await request(`${daemonB.url}/v2/public/app/blobs/${digest}`)
    await viaPublic.body.dump()
    assert.equal(viaPublic.statusCode, 404)
    // a client of A's own host without credentials does not get A's stored copy either
    const local = await request(`${daemonA.url}/v2/private/app/blobs/${digest}`)
    await local.body.dump()
    assert.equal(local.statusCode, 401)
  })

  it('public images still pull anonymously, with no ticket involved', async () => {
    const dest = join(dir, 'pull-b-public')
    await skopeoCopy(`${daemonB.host}/public/app:v1`, dest)
    assert.equal((await dirBlobs(dest)).get(pub.layers[0].digest.slice(7)), pub.layers[0].digest.slice(7))
  })

  it('once its client has credentials, B pulls the private image too, trading pieces with A on its ticket', async () => {
    const dest = join(dir, 'pull-b-alice')
    await skopeoCopy(`${daemonB.host}/private/app:v1`, dest, { creds: `${ALICE.user}:${ALICE.password}` })
    const got = await dirBlobs(dest)
    for (const d of [priv.config.digest, ...priv.layers.map(l => l.digest)]) assert.equal(got.get(d.slice(7)), d.slice(7))
    // the swarm worked for a private blob: B got pieces from A, and A refused B nothing
    assert.ok(await scrapeMetric(daemonB.url, 'damselfly_dfdaemon_piece_bytes_total', { source: 'peer' }) > 0, 'B got pieces from a peer')
    assert.ok(!(await daemonA.logs()).includes('refused a private blob'))
  })

  it("refuses a raw piece request from B's identity without a ticket, with an expired or a forged one; serves a valid one", async () => {
    const { digest, bytes } = privateLayer()
    const pieceSize = pieceSizeFor(bytes.length)
    const length = pieceLength(bytes.length, pieceSize, 0)
    const opts = { digest: parseDigest(digest), index: 0, sha256: sha256Hex(bytes.subarray(0, length)), length }
    const bKey = await loadOrCreateKey(join(dir, 'b', 'peer.key'))
    const bPeer = peerIdFromPrivateKey(bKey).toString()
    const node = await testNode({ keyFile: join(dir, 'b', 'peer.key'), psk: pskBytes(PSK_HEX) })
    const holderA = multiaddr(await p2pAddr(join(dir, 'a'), daemonA.p2pPort))
    const seed = multiaddr(`/ip4/127.0.0.1/tcp/${supernode.p2pPort}/p2p/${peerIdFromPrivateKey(await loadOrCreateKey(join(dir, 'supernode', 'peer.key'))).toString()}`)
    const supernodeKey = await loadOrCreateKey(join(dir, 'supernode', 'peer.key'))
    const now = Math.floor(Date.now() / 1000)

    for (const target of [holderA, seed]) {
      await assert.rejects(fetchPiece(node, target, opts), { name: 'UnauthorizedError' }, `no ticket, ${target.toString()}`)
      const expired = await signTicket(supernodeKey, { peer: bPeer, digest, exp: now - 5 })
      await assert.rejects(fetchPiece(node, target, { ...opts, ticket: expired }), { name: 'DeniedError' }, 'expired')
      const forged = await signTicket(bKey, { peer: bPeer, digest, exp: now + 600 })
      await assert.rejects(fetchPiece(node, target, { ...opts, ticket: forged }), { name: 'DeniedError' }, 'forged')
      const aPeer = peerIdFromPrivateKey(await loadOrCreateKey(join(dir, 'a', 'peer.key'))).toString()
      const someoneElses = await signTicket(supernodeKey, { peer: aPeer, digest, exp: now + 600 })
      await assert.rejects(fetchPiece(node, target, { ...opts, ticket: someoneElses }), { name: 'DeniedError' }, "A's ticket")
    }

    // the swarm greeting is refused as well
    const stream = await node.dialProtocol(holderA, SWARM_PROTOCOL)
    const framed = new FramedStream(stream)
    await framed.writeMessage({ type: 'hello', digest, have: '' })
    const welcome = await framed.readMessage(SwarmWelcome)
    assert.equal(welcome.type, 'error')
    assert.equal(welcome.type === 'error' && welcome.code, 'UNAUTHORIZED')
    framed.abort(new Error('done'))

    // positive control: a ticket the supernode signed for this very peer is honoured
    const valid = await signTicket(supernodeKey, { peer: bPeer, digest, exp: now + 600 })
    const piece = await fetchPiece(node, holderA, { ...opts, ticket: valid })
    assert.equal(piece.byteLength, length)
  })

  it('a process with the wrong swarm key, or none, cannot connect to the supernode or a peer; with the right key it can', async () => {
    const targets = [
      multiaddr(`/ip4/127.0.0.1/tcp/${supernode.p2pPort}/p2p/${peerIdFromPrivateKey(await loadOrCreateKey(join(dir, 'supernode', 'peer.key'))).toString()}`),
      multiaddr(await p2pAddr(join(dir, 'a'), daemonA.p2pPort))
    ]
    const wrong = await testNode({ psk: pskBytes(WRONG_PSK_HEX) })
    const none = await testNode({})
    const right = await testNode({ psk: pskBytes(PSK_HEX) })
    for (const target of targets) {
      await assert.rejects(wrong.dial(target, { signal: AbortSignal.timeout(5000) }), Error, `wrong key → ${target.toString()}`)
      await assert.rejects(none.dial(target, { signal: AbortSignal.timeout(5000) }), Error, `no key → ${target.toString()}`)
      const conn = await right.dial(target, { signal: AbortSignal.timeout(5000) })
      assert.equal(conn.status, 'open')
    }
  })

  it('a daemon with the wrong swarm key cannot use the swarm', async () => {
    await writeFile(join(dir, 'wrong.key'), pskFile(WRONG_PSK_HEX), { mode: 0o600 })
    const c = await startDaemon({ name: 'daemon-c', supernode: supernode.url, upstream: origin.url, dataDir: join(dir, 'c'), logDir: dir, extraArgs: ['--swarm-key', join(dir, 'wrong.key')] })
    try {
      // the public blob is in the swarm; C can reach no one there (its own back-to-source, if any, is not the swarm)
      const res = await request(`${c.url}/v2/public/app/blobs/${pub.layers[0].digest}`)
      await res.body.dump()
      const logs = await c.logs()
      assert.match(logs, /cannot open a task stream to the supernode|supernode unavailable/)
    } finally {
      await c.stop()
    }
  })

  it('operator endpoints reject a missing or wrong token and answer the right one', async () => {
    for (const path of ['/api/v1/tasks', '/api/v1/peers']) {
      for (const headers of [{}, { authorization: 'Bearer wrong-token' }, { authorization: `Bearer ${API_TOKEN.slice(0, -1)}` }]) {
        const res = await request(`${supernode.url}${path}`, { headers })
        await res.body.dump()
        assert.equal(res.statusCode, 401, `${path} ${JSON.stringify(headers)}`)
      }
      const ok = await request(`${supernode.url}${path}`, { headers: { authorization: `Bearer ${API_TOKEN}` } })
      assert.equal(ok.statusCode, 200)
      const body = await ok.body.json() as { tasks?: Array<{ digest: string }>, peers?: unknown[] }
      if (path.endsWith('tasks')) assert.ok(body.tasks?.some(t => t.digest === priv.layers[0].digest))
      else assert.ok((body.peers?.length ?? 0) >= 2)
    }
    const info = await request(`${supernode.url}/api/v1/info`)
    await info.body.dump()
    assert.equal(info.statusCode, 200)
  })

  it('the logs of every process hold no credential, password, token or key', async () => {
    const logs = [await supernode.logs(), await daemonA.logs(), await daemonB.logs(), await readFile(join(dir, 'daemon-c.log'), 'utf8').catch(() => '')]
    assert.ok(logs[1].length > 1000, 'daemon A logged its pull')
    for (const [i, text] of logs.entries()) {
      for (const s of secrets) assert.ok(!text.includes(s), `log ${i} holds a secret (${s.slice(0, 6)}…)`)
      // no bearer JWT at all (their header always starts like this), no Basic credentials
      assert.ok(!text.includes('eyJhbGci'), `log ${i} holds a JWT`)
      assert.ok(!/Basic [A-Za-z0-9+/=]{8,}/.test(text), `log ${i} holds Basic credentials`)
    }
  })
})
