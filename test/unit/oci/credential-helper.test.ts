/**
 * CredentialHelper against real helper programs (shell scripts in a temp dir on PATH): the
 * protocol, "not found", the cache, and the bounds (timeout, output cap, failures, PATH only).
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { pino } from 'pino'
import { CredentialHelper, CredentialHelperError, findInPath, parseHelperAnswer, redactHelperText, type CredentialHelperInit } from '../../../shared/oci/credential-helper.js'
import { installTestCredentialHelper, pathWith, TEST_HELPER, type TestCredentialHelper } from '../../helpers/credential-helper.js'
import { rejectsWithName } from '../../helpers/assertions.js'

describe('CredentialHelper', () => {
  let dir: string
  let helper: TestCredentialHelper
  let logText = ''
  const logger = pino({ level: 'debug' }, new Writable({ write (chunk, _enc, cb) { logText += String(chunk); cb() } }))
  const make = (name: string, init: Partial<CredentialHelperInit> = {}): CredentialHelper =>
    new CredentialHelper({ name, logger, env: pathWith(helper.binDir), ...init })
  const script = async (name: string, body: string, mode = 0o755): Promise<void> => {
    const file = join(helper.binDir, `docker-credential-${name}`)
    await writeFile(file, `#!/bin/sh\n${body}\n`)
    await chmod(file, mode)
  }

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'damselfly-helper-'))
    helper = await installTestCredentialHelper(join(dir, 'bin'))
    await helper.answer('registry.example:5000', 'robot', 'robot-s3cret-0123456789')
    await helper.answer('https://index.docker.io/v1/', '<token>', 'hub-refresh-token-42')
    await script('damselflyfail', 'cat > /dev/null\necho "pass: store not initialised, key abcdef0123456789abcdef" >&2\nexit 3')
    await script('damselflyslow', 'exec sleep 30')
    await script('damselflyflood', 'cat > /dev/null\nhead -c 200000 /dev/zero | tr "\\0" x\nexit 0')
    await script('damselflygarbage', 'cat > /dev/null\necho "Username=robot Secret=hunter2"')
    await script('damselflynoexec', 'echo never', 0o644)
  })

  after(async () => {
    if (dir != null) await rm(dir, { recursive: true, force: true })
  })

  it('writes the server URL on stdin and reads the answer; <token> means an identity token', async () => {
    const h = make(TEST_HELPER)
    assert.deepEqual(await h.get('registry.example:5000'), { kind: 'basic', username: 'robot', password: 'robot-s3cret-0123456789' })
    assert.deepEqual(await h.get('https://index.docker.io/v1/'), { kind: 'identity-token', token: 'hub-refresh-token-42' })
    assert.deepEqual((await helper.calls()).slice(-2), ['registry.example:5000', 'https://index.docker.io/v1/'])
    // what it wrote to stderr is logged with the secret it returned masked
    assert.match(logText, /credential helper stderr/)
    assert.doesNotMatch(logText, /robot-s3cret-0123456789|hub-refresh-token-42/)
  })

  it('"credentials not found" means none; answers, none included, are cached and concurrent asks share one run', async () => {
    const h = make(TEST_HELPER)
    const before = (await helper.calls()).length
    assert.equal(await h.get('unknown.example'), undefined)
    assert.equal(await h.get('unknown.example'), undefined)
    const all = await Promise.all([1, 2, 3, 4, 5].map(async () => await h.get('registry.example:5000')))
    assert.ok(all.every((c) => c?.kind === 'basic'))
    assert.deepEqual((await helper.calls()).slice(before), ['unknown.example', 'registry.example:5000'])
    // a TTL of 0 keeps nothing: every ask runs the helper
    const uncached = make(TEST_HELPER, { ttlMs: 0 })
    await uncached.get('registry.example:5000')
    await uncached.get('registry.example:5000')
    assert.equal((await helper.calls()).length, before + 4)
  })

  it('a non-zero exit is a CredentialHelperError naming the helper; its stderr is logged redacted; the failure is cached briefly', async () => {
    const h = make('damselflyfail', { failureTtlMs: 60_000 })
    logText = ''
    const err = await rejectsWithName(h.get('registry.example:5000'), 'CredentialHelperError')
    assert.equal((err as CredentialHelperError).helper, 'docker-credential-damselflyfail')
    assert.match(logText, /store not initialised/)
    assert.doesNotMatch(logText, /abcdef0123456789abcdef/)
    assert.equal(await rejectsWithName(h.get('registry.example:5000'), 'CredentialHelperError'), err)
  })

  it('is bounded: killed after the timeout, refused past the output cap, unparseable answers refused without echoing them', async () => {
    await rejectsWithName(make('damselflyslow', { timeoutMs: 200 }).get('r.example'), 'CredentialHelperError')
    await rejectsWithName(make('damselflyflood', { maxOutputBytes: 64 * 1024 }).get('r.example'), 'CredentialHelperError')
    assert.match(logText, /damselflyflood/) // the failure is logged with the helper's name
    const garbage = await rejectsWithName(make('damselflygarbage').get('r.example'), 'CredentialHelperError')
    assert.doesNotMatch(garbage.message, /hunter2/)
  })

  it('runs only a program found in PATH\'s absolute directories, as an executable file', async () => {
    await rejectsWithName(make('damselflymissing').get('r.example'), 'CredentialHelperError')
    await rejectsWithName(make('damselflynoexec').get('r.example'), 'CredentialHelperError')
    assert.equal(await findInPath(`docker-credential-${TEST_HELPER}`, `relative/bin:.::${helper.binDir}`), join(helper.binDir, `docker-credential-${TEST_HELPER}`))
    assert.equal(await findInPath(`docker-credential-${TEST_HELPER}`, 'relative/bin:.:'), undefined)
    assert.throws(() => make('../bin/x'), { name: 'ConfigError' })
    assert.throws(() => make('/bin/sh'), { name: 'ConfigError' })
  })
})

describe('helper answers and logged text', () => {
  it('parses the protocol\'s JSON; an empty Secret is none; anything else is refused', () => {
    assert.deepEqual(parseHelperAnswer('{"ServerURL":"r","Username":"u","Secret":"s"}', 'h'), { kind: 'basic', username: 'u', password: 's' })
    assert.deepEqual(parseHelperAnswer('{"Username":"<token>","Secret":"rt"}', 'h'), { kind: 'identity-token', token: 'rt' })
    assert.equal(parseHelperAnswer('{"Username":"u","Secret":""}', 'h'), undefined)
    assert.throws(() => parseHelperAnswer('{"Username":"","Secret":"s"}', 'h'), { name: 'CredentialHelperError' })
    assert.throws(() => parseHelperAnswer('{"Username":1,"Secret":"s"}', 'h'), { name: 'CredentialHelperError' })
    assert.throws(() => parseHelperAnswer('[]', 'h'), { name: 'CredentialHelperError' })
  })

  it('masks the known secret and token-like words, keeps plain words, one capped line', () => {
    assert.equal(redactHelperText('bad token eyJhbGciOiJSUzI1NiJ9.abc123 for user\nrobot', []), 'bad token [redacted] for user robot')
    assert.equal(redactHelperText('secret is hunter2', ['hunter2']), 'secret is [redacted]')
    assert.equal(redactHelperText('/usr/local/bin/docker-credential-pass: not initialised'), '/usr/local/bin/docker-credential-pass: not initialised')
    assert.ok(redactHelperText('x '.repeat(1000)).length <= 513)
  })
})
