/**
 * Configured registry credentials (--credentials-file, --docker-config) for the supernode's own
 * fetches, against the real registry in basic and token modes; and the guarantee that they
 * never let a client without credentials have a private blob.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { pino } from 'pino'
import { Registry } from 'prom-client'
import { request } from 'undici'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { multiaddr } from '@multiformats/multiaddr'
import { BlobStore } from '../../shared/store/blob-store.js'
import { RegistryClient } from '../../shared/oci/registry-client.js'
import { resolveEndpoint } from '../../shared/oci/endpoints.js'
import { DigestHasher, parseDigest } from '../../shared/oci/digest.js'
import { ANONYMOUS } from '../../shared/oci/registry-types.js'
import { CredentialStore, parseCredentialsFile, parseDockerConfig, withConfiguredCredentials } from '../../shared/oci/credential-store.js'
import { OriginFetcher, type OriginClient } from '../../supernode/origin/origin-fetcher.js'
import { createSupernodeMetrics } from '../../supernode/metrics.js'
import { createSupernode, type Supernode } from '../../supernode/supernode.js'
import { SUPERNODE_DEFAULTS } from '../../supernode/config.js'
import { createNode, type DamselflyNode } from '../../shared/p2p/node.js'
import { TaskAnswer, type TaskRequest } from '../../shared/p2p/task-messages.js'
import { startRegistry, TOKEN_SERVICE, type AuthMode, type TestRegistry } from '../helpers/registry.js'
import { askTask } from '../helpers/task.js'
import { pushImage, type PushedImage } from '../helpers/images.js'
import { rejectsWithName } from '../helpers/assertions.js'

const logger = pino({ level: 'silent' })
const API_TOKEN = 'credentials-test-operator-token'

function credentialsYaml (entries: Array<[string, string, string]>): string {
  return 'registries:\n' + entries.map(([name, u, p]) => `  "${name}":\n    username: ${JSON.stringify(u)}\n    password: ${JSON.stringify(p)}\n`).join('')
}

function dockerConfigJson (entries: Array<[string, string, string]>): string {
  return JSON.stringify({ auths: Object.fromEntries(entries.map(([host, u, p]) => [host, { auth: Buffer.from(`${u}:${p}`).toString('base64') }])) })
}

/** An OriginFetcher over a fresh store, its client wrapped with `store` when given. */
async function fetcherWith (dir: string, creds: CredentialStore | undefined): Promise<{ fetcher: OriginFetcher, blobs: BlobStore, close: () => Promise<void> }> {
  const blobs = new BlobStore({ dir: await mkdtemp(join(dir, 'store-')), logger })
  await blobs.init()
  const client = new RegistryClient({ logger })
  const origin: OriginClient = creds != null ? withConfiguredCredentials(client, creds) : client
  const fetcher = new OriginFetcher({ store: blobs, client: origin, resolveEndpoint: name => resolveEndpoint(name), logger, metrics: createSupernodeMetrics(new Registry()) })
  return {
    fetcher,
    blobs,
    close: async () => {
      await fetcher.stop()
      await client.close()
      await blobs.close()
    }
  }
}

async function storedDigest (blobs: BlobStore, digest: string): Promise<string> {
  const hasher = new DigestHasher()
  for await (const chunk of await blobs.createReadStream(parseDigest(digest))) hasher.update(chunk as Buffer)
  return hasher.digest().value
}

async function fetchAnonymously (fetcher: OriginFetcher, reg: TestRegistry, repository: string, digest: string): Promise<void> {
  const task = await fetcher.ensure({ registry: reg.host, repository, digest: parseDigest(digest), credentials: ANONYMOUS })
  await task.done
}

for (const mode of ['basic', 'token'] as AuthMode[]) {
  describe(`configured credentials, auth=${mode}`, () => {
    let dir: string
    let reg: TestRegistry
    let other: TestRegistry
    let image: PushedImage
    let otherImage: PushedImage

    before(async () => {
      dir = await mkdtemp(join(tmpdir(), 'damselfly-creds-'))
      // no anonymous access at all: only the configured user may read
      reg = await startRegistry({ auth: mode, users: { tester: 'tester-secret' }, acl: { tester: ['team/'] }, anonymousPull: false })
      other = await startRegistry({ auth: mode, users: { second: 'second-secret' }, acl: { second: ['ops/'] }, anonymousPull: false })
      image = await pushImage(reg, { repository: 'team/app', tag: 'v1', layers: [{ size: 600 << 10 }, { size: 20 << 10 }], credentials: { username: 'tester', password: 'tester-secret' } })
      otherImage = await pushImage(other, { repository: 'ops/tool', tag: 'v1', layers: [{ size: 300 << 10 }], credentials: { username: 'second', password: 'second-secret' } })
    })

    after(async () => {
      await reg?.stop()
      await other?.stop()
      if (dir != null) await rm(dir, { recursive: true, force: true })
    })

    it('without configured credentials the origin fetch of a private blob fails UNAUTHORIZED', async () => {
      const h = await fetcherWith(dir, undefined)
      try {
        const err = await rejectsWithName(fetchAnonymously(h.fetcher, reg, 'team/app', image.layers[0].digest), 'UnauthorizedError')
        assert.equal((err as Error & { code?: string }).code, 'UNAUTHORIZED')
        // a file naming another registry does not help either
        const wrong = new CredentialStore([[other.host, { kind: 'basic', username: 'second', password: 'second-secret' }]])
        const h2 = await fetcherWith(dir, wrong)
        try {
          await rejectsWithName(fetchAnonymously(h2.fetcher, reg, 'team/app', image.layers[0].digest), 'UnauthorizedError')
        } finally {
          await h2.close()
        }
      } finally {
        await h.close()
      }
    })

    it('a credentials file naming the registry lets the supernode fetch a private blob for a task without credentials', async () => {
      const file = join(dir, 'credentials.yaml')
      await writeFile(file, credentialsYaml([[reg.host, 'tester', 'tester-secret']]), { mode: 0o600 })
      const h = await fetcherWith(dir, CredentialStore.load({ credentialsFile: file }, logger))
      try {
        await fetchAnonymously(h.fetcher, reg, 'team/app', image.layers[0].digest)
        assert.equal(await storedDigest(h.blobs, image.layers[0].digest), image.layers[0].digest)
      } finally {
        await h.close()
      }
    })

    it('a Docker config.json works the same', async () => {
      const file = join(dir, 'config.json')
      await writeFile(file, dockerConfigJson([[reg.host, 'tester', 'tester-secret']]), { mode: 0o600 })
      const h = await fetcherWith(dir, CredentialStore.load({ dockerConfig: file }, logger))
      try {
        await fetchAnonymously(h.fetcher, reg, 'team/app', image.layers[1].digest)
        assert.equal(await storedDigest(h.blobs, image.layers[1].digest), image.layers[1].digest)
      } finally {
        await h.close()
      }
    })

    it('the client\'s own credentials win over configured ones', async () => {
      const file = join(dir, 'credentials-own.yaml')
      await writeFile(file, credentialsYaml([[reg.host, 'tester', 'tester-secret']]), { mode: 0o600 })
      const h = await fetcherWith(dir, CredentialStore.load({ credentialsFile: file }, logger))
      try {
        const wrong = `Basic ${Buffer.from('tester:not-the-password').toString('base64')}`
        await rejectsWithName((async () => {
          const task = await h.fetcher.ensure({ registry: reg.host, repository: 'team/app', digest: parseDigest(image.layers[0].digest), credentials: { kind: 'authorization', header: wrong } })
          await task.done
        })(), 'UnauthorizedError')
      } finally {
        await h.close()
      }
    })

    it('two registries, each with its own credentials, through one supernode', async () => {
      const file = join(dir, 'credentials-two.yaml')
      await writeFile(file, credentialsYaml([[reg.host, 'tester', 'tester-secret'], [other.host, 'second', 'second-secret']]), { mode: 0o600 })
      const h = await fetcherWith(dir, CredentialStore.load({ credentialsFile: file }, logger))
      try {
        await Promise.all([
          fetchAnonymously(h.fetcher, reg, 'team/app', image.layers[0].digest),
          fetchAnonymously(h.fetcher, other, 'ops/tool', otherImage.layers[0].digest)
        ])
        assert.equal(await storedDigest(h.blobs, image.layers[0].digest), image.layers[0].digest)
        assert.equal(await storedDigest(h.blobs, otherImage.layers[0].digest), otherImage.layers[0].digest)
      } finally {
        await h.close()
      }
    })

    it('in a supernode: an anonymous task the access check refuses makes no fetch with the configured credentials', async () => {
      const sdir = await mkdtemp(join(dir, 'supernode-'))
      const file = join(sdir, 'credentials.yaml')
      await writeFile(file, credentialsYaml([[reg.host, 'tester', 'tester-secret']]), { mode: 0o600 })
      let sn: Supernode | undefined
      let peer: DamselflyNode | undefined
      const client = new RegistryClient({ logger })
      try {
        // the real client, its origin GETs counted (the configured credentials wrap it as usual)
        const fetches: string[] = []
        const origin: OriginClient = {
          getBlob: async (ep, repository, digest, opts) => {
            fetches.push(digest)
            return await client.getBlob(ep, repository, digest, opts)
          }
        }
        sn = await createSupernode({ ...SUPERNODE_DEFAULTS, dataDir: join(sdir, 'data'), host: '127.0.0.1', port: 0, p2pPort: 0, logLevel: 'silent', credentialsFile: file }, { logger, client: origin, accessClient: client })
        await sn.start()
        peer = await createNode({ privateKey: await generateKeyPair('Ed25519'), host: '127.0.0.1', port: 0, dhtClientMode: true })
        await peer.start()
        const digest = image.layers[1].digest
        const anon = await askTask(peer, multiaddr(sn.multiaddrs[0]), { registry: reg.host, repository: 'team/app', digest })
        assert.deepEqual(anon.map(a => a.type), ['error'])
        assert.equal((anon[0] as Extract<TaskAnswer, { type: 'error' }>).code, 'UNAUTHORIZED')
        // a fetch started beside the check would have used the configured credentials, and got the blob
        assert.deepEqual(fetches, [], 'no origin fetch for a refused asker')
      } finally {
        await peer?.stop()
        await sn?.stop()
        await client.close()
      }
    })

    it('in a supernode: preheat uses the configured credentials, yet an anonymous task for the private blob is refused', async () => {
      const sdir = await mkdtemp(join(dir, 'supernode-'))
      const file = join(sdir, 'credentials.yaml')
      await writeFile(file, credentialsYaml([[reg.host, 'tester', 'tester-secret']]), { mode: 0o600 })
      const tokenFile = join(sdir, 'api-token')
      await writeFile(tokenFile, API_TOKEN + '\n', { mode: 0o600 })
      let sn: Supernode | undefined
      let peer: DamselflyNode | undefined
      try {
        sn = await createSupernode({ ...SUPERNODE_DEFAULTS, dataDir: join(sdir, 'data'), host: '127.0.0.1', port: 0, p2pPort: 0, logLevel: 'silent', apiTokenFile: tokenFile, credentialsFile: file }, { logger })
        await sn.start()
        const base = sn.httpAddress as string
        const auth = { authorization: `Bearer ${API_TOKEN}`, 'content-type': 'application/json' }
        const created = await request(`${base}/api/v1/preheat`, { method: 'POST', headers: auth, body: JSON.stringify({ image: `${reg.host}/team/app:v1` }) })
        const id = ((await created.body.json()) as { id: string }).id
        assert.ok(created.statusCode < 300, `preheat answered ${created.statusCode}`)
        let state = ''
        for (let i = 0; i < 1200 && state !== 'SUCCESS' && state !== 'FAILURE'; i++) {
          const res = await request(`${base}/api/v1/preheat/${id}`, { headers: auth })
          state = ((await res.body.json()) as { state: string }).state
          if (state !== 'SUCCESS' && state !== 'FAILURE') await new Promise(resolve => setTimeout(resolve, 50))
        }
        assert.equal(state, 'SUCCESS', 'a private image preheats with the configured credentials')

        peer = await createNode({ privateKey: await generateKeyPair('Ed25519'), host: '127.0.0.1', port: 0, dhtClientMode: true })
        await peer.start()
        const target = multiaddr(sn.multiaddrs[0])
        const ask = async (req: TaskRequest): Promise<TaskAnswer[]> => await askTask(peer as DamselflyNode, target, req)
        // the blob is in the store, fetched with the configured credentials: a client without any still gets nothing
        const anon = await ask({ registry: reg.host, repository: 'team/app', digest: image.layers[0].digest })
        assert.equal(anon.length, 1)
        assert.equal(anon[0].type, 'error')
        assert.equal((anon[0] as Extract<TaskAnswer, { type: 'error' }>).code, 'UNAUTHORIZED')
        // with its own credentials it does (what a runtime sends: Basic, or the bearer token it got by the token dance)
        const basicAuth = `Basic ${Buffer.from('tester:tester-secret').toString('base64')}`
        let authorization = basicAuth
        if (mode === 'token') {
          const res = await request(`${reg.tokenServer?.realm ?? ''}?service=${TOKEN_SERVICE}&scope=repository:team/app:pull`, { headers: { authorization: basicAuth } })
          authorization = `Bearer ${((await res.body.json()) as { token: string }).token}`
        }
        const own = await ask({ registry: reg.host, repository: 'team/app', digest: image.layers[0].digest, authorization })
        assert.equal(own[0]?.type, 'manifest')
        assert.equal(own.at(-1)?.type, 'done')
      } finally {
        await peer?.stop()
        await sn?.stop()
      }
    })
  })
}

describe('credential files', () => {
  it('parse both formats; Docker Hub\'s config.json key means docker.io; hosts are case-insensitive', async () => {
    const yaml = parseCredentialsFile(credentialsYaml([['Registry.Example:5000', 'u', 'p:w'], ['docker.io', 'hub', 'hubpw']]), 'creds.yaml')
    assert.deepEqual(yaml.get('registry.example:5000'), { kind: 'basic', username: 'u', password: 'p:w' })
    assert.deepEqual(yaml.get('docker.io'), { kind: 'basic', username: 'hub', password: 'hubpw' })
    const docker = parseDockerConfig(JSON.stringify({
      auths: {
        'https://index.docker.io/v1/': { auth: Buffer.from('hub:pa:ss').toString('base64') },
        'https://ghcr.example/v2/': { username: 'g', password: 'gp' },
        'helper.example': {}
      }
    }), 'config.json')
    assert.deepEqual(docker.auths.get('docker.io'), { kind: 'basic', username: 'hub', password: 'pa:ss' })
    assert.deepEqual(docker.auths.get('ghcr.example'), { kind: 'basic', username: 'g', password: 'gp' })
    assert.equal(docker.auths.has('helper.example'), false)
    const store = new CredentialStore([...docker.auths])
    assert.deepEqual(await store.credentialsFor('index.docker.io'), { kind: 'basic', username: 'hub', password: 'pa:ss' })
    assert.equal(await store.credentialsFor('elsewhere.example'), undefined)
  })

  it('rejects malformed files with a message that names no secret', () => {
    assert.throws(() => parseCredentialsFile('registries:\n  r.example:\n    username: u\n', 'c.yaml'), /registry "r\.example" needs a string username and password/)
    assert.throws(() => parseCredentialsFile('other: 1\n', 'c.yaml'), /unknown key "other"/)
    assert.throws(() => parseDockerConfig('{"auths":{"r.example":{"auth":"' + Buffer.from('nocolon-supersecret').toString('base64') + '"}}}', 'config.json'), (err: Error) => !err.message.includes('supersecret'))
  })

  it('warns when a file is readable by group or others, and never logs a secret', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'damselfly-creds-mode-'))
    try {
      const file = join(dir, 'creds.yaml')
      await writeFile(file, credentialsYaml([['r.example', 'user', 'very-secret-password']]), { mode: 0o644 })
      let out = ''
      const sink = new Writable({ write (chunk, _enc, cb) { out += String(chunk); cb() } })
      const store = CredentialStore.load({ credentialsFile: file }, pino({ level: 'debug' }, sink))
      assert.equal(store.size, 1)
      assert.match(out, /readable by group or others/)
      assert.match(out, /r\.example/)
      assert.doesNotMatch(out, /very-secret-password/)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})
