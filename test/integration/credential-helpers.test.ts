/**
 * Docker config.json credentials beyond `auth`, against real registries in token-auth mode: a
 * `credHelpers` entry run as a real helper program (docker-credential-damselflytest on PATH),
 * and an `identitytoken` exchanged by the OAuth2 refresh-token grant. In-process first (exact
 * helper call counts), then a real supernode process preheating private images with them.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { randomBytes } from 'node:crypto'
import { pino } from 'pino'
import { Registry } from 'prom-client'
import { request } from 'undici'
import { BlobStore } from '../../shared/store/blob-store.js'
import { StoreLayout } from '../../shared/store/layout.js'
import { RegistryClient } from '../../shared/oci/registry-client.js'
import { resolveEndpoint } from '../../shared/oci/endpoints.js'
import { digestOf, DigestHasher, parseDigest } from '../../shared/oci/digest.js'
import { ANONYMOUS } from '../../shared/oci/registry-types.js'
import { CredentialStore, withConfiguredCredentials } from '../../shared/oci/credential-store.js'
import { OriginFetcher } from '../../supernode/origin/origin-fetcher.js'
import { createSupernodeMetrics } from '../../supernode/metrics.js'
import { startRegistry, TOKEN_SERVICE, type TestRegistry } from '../helpers/registry.js'
import { pushImage, type PushedImage } from '../helpers/images.js'
import { startSupernode, type SupernodeProcess } from '../helpers/processes.js'
import { installTestCredentialHelper, pathWith, TEST_HELPER, type TestCredentialHelper } from '../helpers/credential-helper.js'

const HELPER_SECRET = `helper-secret-${randomBytes(9).toString('base64url')}`
const TESTER_PASSWORD = `tester-pw-${randomBytes(9).toString('base64url')}`
const SECOND_PASSWORD = `second-pw-${randomBytes(9).toString('base64url')}`
const API_TOKEN = randomBytes(24).toString('base64url')

/** What `docker login` does against a token server that offers refresh tokens: a password grant with access_type=offline. */
async function identityToken (reg: TestRegistry, username: string, password: string): Promise<string> {
  const form = new URLSearchParams({ grant_type: 'password', username, password, service: TOKEN_SERVICE, client_id: 'docker', access_type: 'offline', scope: '' })
  const res = await request(reg.tokenServer?.realm ?? '', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: form.toString() })
  const body = await res.body.json() as { refresh_token?: string }
  assert.equal(res.statusCode, 200)
  assert.ok(typeof body.refresh_token === 'string' && body.refresh_token !== '')
  return body.refresh_token
}

async function fileDigest (path: string): Promise<string> {
  return digestOf(await readFile(path)).value
}

describe('config.json credHelpers and identitytoken, real registries', () => {
  let dir: string
  let reg: TestRegistry
  let second: TestRegistry
  let image: PushedImage
  let secondImage: PushedImage
  let helper: TestCredentialHelper
  let refreshToken: string
  let configFile: string
  const secrets = (): string[] => [HELPER_SECRET, TESTER_PASSWORD, SECOND_PASSWORD, refreshToken]

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'damselfly-cred-helpers-'))
    // neither registry lets anyone in without credentials
    reg = await startRegistry({ auth: 'token', users: { tester: TESTER_PASSWORD }, acl: { tester: ['team/'] }, anonymousPull: false })
    second = await startRegistry({ auth: 'token', users: { second: SECOND_PASSWORD }, acl: { second: ['ops/'] }, anonymousPull: false })
    image = await pushImage(reg, { repository: 'team/app', tag: 'v1', layers: [{ size: 400 << 10 }, { size: 30 << 10 }], credentials: { username: 'tester', password: TESTER_PASSWORD } })
    secondImage = await pushImage(second, { repository: 'ops/tool', tag: 'v1', layers: [{ size: 200 << 10 }], credentials: { username: 'second', password: SECOND_PASSWORD } })
    helper = await installTestCredentialHelper(join(dir, 'bin'))
    // the helper holds the first registry's login; its answer's Secret is what the token server takes as the password
    await helper.answer(reg.host, 'tester', TESTER_PASSWORD)
    refreshToken = await identityToken(second, 'second', SECOND_PASSWORD)
    configFile = join(dir, 'config.json')
    await writeFile(configFile, JSON.stringify({
      auths: { [reg.host]: {}, [`https://${second.host}`]: { auth: Buffer.from('second:').toString('base64'), identitytoken: refreshToken } },
      credHelpers: { [reg.host]: TEST_HELPER }
    }), { mode: 0o600 })
  })

  after(async () => {
    await reg?.stop()
    await second?.stop()
    if (dir != null) await rm(dir, { recursive: true, force: true })
  })

  it('in process: the origin fetch uses the helper (run once for many requests) and the identity token (refresh-token grants only)', async () => {
    let logText = ''
    const logger = pino({ level: 'debug' }, new Writable({ write (chunk, _enc, cb) { logText += String(chunk); cb() } }))
    const callsBefore = (await helper.calls()).length
    const passwordGrantsBefore = second.tokenServer?.grants('password') ?? 0
    // a TTL far longer than the test: the call count below does not depend on how long it takes
    const creds = CredentialStore.load({ dockerConfig: configFile }, logger, { helper: { env: pathWith(helper.binDir), ttlMs: 3_600_000 } })
    const store = new BlobStore({ dir: join(dir, 'in-process-store'), logger })
    await store.init()
    const client = new RegistryClient({ logger })
    const fetcher = new OriginFetcher({ store, client: withConfiguredCredentials(client, creds), resolveEndpoint: name => resolveEndpoint(name), logger, metrics: createSupernodeMetrics(new Registry()) })
    try {
      const wanted: Array<[TestRegistry, string, string]> = [
        ...image.layers.map((l): [TestRegistry, string, string] => [reg, 'team/app', l.digest]),
        [reg, 'team/app', image.config.digest],
        [second, 'ops/tool', secondImage.layers[0].digest]
      ]
      await Promise.all(wanted.map(async ([r, repository, digest]) => {
        const task = await fetcher.ensure({ registry: r.host, repository, digest: parseDigest(digest), credentials: ANONYMOUS })
        await task.done
      }))
      for (const [, , digest] of wanted) {
        const hasher = new DigestHasher()
        for await (const chunk of await store.createReadStream(parseDigest(digest))) hasher.update(chunk as Buffer)
        assert.equal(hasher.digest().value, digest)
      }
      assert.deepEqual((await helper.calls()).slice(callsBefore), [reg.host], 'one helper run, for the first registry, asked by host:port')
      assert.ok((second.tokenServer?.grants('refresh_token') ?? 0) >= 1, 'the identity token was exchanged by a refresh-token grant')
      assert.equal(second.tokenServer?.grants('password'), passwordGrantsBefore, 'and never by a password grant')
      assert.match(logText, /credential helper stderr/)
      for (const s of secrets()) assert.ok(!logText.includes(s), 'a secret reached the log')
    } finally {
      await fetcher.stop()
      await client.close()
      await store.close()
    }
  })

  it('a real supernode process, the helper on its PATH, preheats both private images; stored blobs hash to their digests; no secret in its log', async () => {
    const sdir = await mkdtemp(join(dir, 'supernode-'))
    const tokenFile = join(sdir, 'api-token')
    await writeFile(tokenFile, API_TOKEN + '\n', { mode: 0o600 })
    const callsBefore = (await helper.calls()).length
    const refreshGrantsBefore = second.tokenServer?.grants('refresh_token') ?? 0
    let sn: SupernodeProcess | undefined
    try {
      sn = await startSupernode({
        dataDir: join(sdir, 'data'),
        logDir: sdir,
        env: pathWith(helper.binDir),
        extraArgs: ['--docker-config', configFile, '--api-token-file', tokenFile]
      })
      const auth = { authorization: `Bearer ${API_TOKEN}`, 'content-type': 'application/json' }
      const preheat = async (ref: string): Promise<Array<{ digest: string }>> => {
        const created = await request(`${sn?.testUrl ?? ''}/api/v1/preheat`, { method: 'POST', headers: auth, body: JSON.stringify({ image: ref }) })
        const { id } = await created.body.json() as { id: string }
        assert.ok(created.statusCode < 300, `preheat answered ${created.statusCode}`)
        let job: { state: string, error?: string, layers?: Array<{ digest: string }> } = { state: '' }
        for (let i = 0; i < 1200 && job.state !== 'SUCCESS' && job.state !== 'FAILURE'; i++) {
          if (i > 0) await new Promise(resolve => setTimeout(resolve, 50))
          job = await (await request(`${sn?.testUrl ?? ''}/api/v1/preheat/${id}`, { headers: auth })).body.json() as typeof job
        }
        assert.equal(job.state, 'SUCCESS', `preheat of ${ref}: ${job.error ?? job.state}`)
        return job.layers ?? []
      }
      const first = await preheat(`${reg.host}/team/app:v1`)
      const other = await preheat(`${second.host}/ops/tool:v1`)
      // a preheat job lists the config blob with the layers
      const blobsOf = (img: PushedImage): string[] => [img.config.digest, ...img.layers.map(l => l.digest)].sort()
      assert.deepEqual(first.map(l => l.digest).sort(), blobsOf(image))
      assert.deepEqual(other.map(l => l.digest).sort(), blobsOf(secondImage))

      const layout = new StoreLayout(join(sdir, 'data', 'store'))
      for (const digest of [...blobsOf(image), ...blobsOf(secondImage)]) {
        assert.equal(await fileDigest(layout.completeData(parseDigest(digest))), digest)
      }
      const calls = (await helper.calls()).slice(callsBefore)
      assert.ok(calls.length >= 1, 'the supernode ran the helper')
      assert.ok(calls.every(c => c === reg.host), `the helper was asked only about ${reg.host}: ${calls.join(', ')}`)
      assert.ok((second.tokenServer?.grants('refresh_token') ?? 0) > refreshGrantsBefore, 'the supernode exchanged the identity token')
      const log = await sn.logs()
      assert.match(log, /credential helper answered/)
      for (const s of secrets()) assert.ok(!log.includes(s), 'a secret reached the supernode log')
    } finally {
      await sn?.stop()
    }
  })
})
