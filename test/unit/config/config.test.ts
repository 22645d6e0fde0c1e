import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Type, type Static } from '@sinclair/typebox'
import { loadConfig, parseBytes } from '../../../shared/config.js'

const Schema = Type.Object({
  port: Type.Integer({ minimum: 1, maximum: 65535 }),
  host: Type.String({ minLength: 1 }),
  verbose: Type.Boolean(),
  peers: Type.Array(Type.String()),
  limit: Type.Optional(Type.Number({ minimum: 0 }))
})
type Config = Static<typeof Schema>

const DEFAULTS: Config = { port: 8080, host: '127.0.0.1', verbose: false, peers: [] }

describe('loadConfig', () => {
  let dir: string
  let n = 0

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'damselfly-config-'))
  })

  after(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  async function file (text: string): Promise<string> {
    const path = join(dir, `config-${n++}.yaml`)
    await writeFile(path, text)
    return path
  }

  async function fileRefused (text: string, what?: string): Promise<void> {
    const path = await file(text)
    assert.throws(() => loadConfig(Schema, DEFAULTS, { file: path }), { name: 'ConfigError' }, what ?? text)
  }

  it('returns the defaults when nothing else is given', () => {
    assert.deepEqual(loadConfig(Schema, DEFAULTS, {}), DEFAULTS)
    assert.deepEqual(loadConfig(Schema, DEFAULTS, { flags: {} }), DEFAULTS)
  })

  it('does not change the defaults object', async () => {
    const defaults = { ...DEFAULTS }
    loadConfig(Schema, defaults, { file: await file('port: 9000\n'), flags: { host: '::1' } })
    assert.deepEqual(defaults, DEFAULTS)
  })

  it('layers a YAML file over the defaults and flags over the file', async () => {
    const path = await file('port: 9000\nhost: 0.0.0.0\npeers:\n  - a\n  - b\n')
    assert.deepEqual(loadConfig(Schema, DEFAULTS, { file: path }), { port: 9000, host: '0.0.0.0', verbose: false, peers: ['a', 'b'] })
    assert.deepEqual(
      loadConfig(Schema, DEFAULTS, { file: path, flags: { port: 9100, verbose: true, host: undefined } }),
      { port: 9100, host: '0.0.0.0', verbose: true, peers: ['a', 'b'] },
      'a flag left undefined must not hide the file value'
    )
  })

  it('reads JSON and an empty file', async () => {
    assert.equal(loadConfig(Schema, DEFAULTS, { file: await file('{"port": 1234}') }).port, 1234)
    assert.deepEqual(loadConfig(Schema, DEFAULTS, { file: await file('') }), DEFAULTS)
    assert.deepEqual(loadConfig(Schema, DEFAULTS, { file: await file('# only a comment\n') }), DEFAULTS)
  })

  it('converts string numbers and booleans from the command line', () => {
    const c = loadConfig(Schema, DEFAULTS, { flags: { port: '9200', verbose: 'true', limit: '1.5' } })
    assert.equal(c.port, 9200)
    assert.equal(c.verbose, true)
    assert.equal(c.limit, 1.5)
    // one value where a list is wanted becomes a list of one
    assert.deepEqual(loadConfig(Schema, DEFAULTS, { flags: { peers: 'a' } }).peers, ['a'])
  })

  it('refuses an unknown key from the file or the flags', async () => {
    await fileRefused('prot: 9000\n')
    assert.throws(() => loadConfig(Schema, DEFAULTS, { flags: { colour: 'blue' } }), { name: 'ConfigError' })
  })

  it('refuses keys that only exist on Object.prototype', async () => {
    for (const key of ['toString', 'constructor', 'hasOwnProperty', '__proto__']) {
      await fileRefused(`${key}: 1\n`, key)
    }
    assert.throws(() => loadConfig(Schema, DEFAULTS, { flags: { valueOf: 1 } }), { name: 'ConfigError' })
  })

  it('refuses bad values', async () => {
    await fileRefused('port: 70000\n')
    await fileRefused('port: eighty\n')
    await fileRefused('peers: {a: 1}\n')
    assert.throws(() => loadConfig(Schema, DEFAULTS, { flags: { port: '80x' } }), { name: 'ConfigError' })
    assert.throws(() => loadConfig(Schema, DEFAULTS, { flags: { host: '' } }), { name: 'ConfigError' })
    assert.throws(() => loadConfig(Schema, DEFAULTS, { flags: { limit: -1 } }), { name: 'ConfigError' })
  })

  it('refuses a file that is not a mapping or not YAML', async () => {
    await fileRefused('- port\n- host\n')
    await fileRefused('just a string\n')
    await fileRefused('port: [1, 2\n')
  })

  it('refuses a file it cannot read', async () => {
    assert.throws(() => loadConfig(Schema, DEFAULTS, { file: join(dir, 'no-such-file.yaml') }), { name: 'ConfigError' })
    assert.throws(() => loadConfig(Schema, DEFAULTS, { file: dir }), { name: 'ConfigError' }, 'a directory')
  })
})

describe('parseBytes', () => {
  it('reads plain numbers and binary units', () => {
    assert.equal(parseBytes('1048576'), 1048576)
    assert.equal(parseBytes('512K'), 512 * 1024)
    assert.equal(parseBytes('512k'), 512 * 1024)
    assert.equal(parseBytes('100M'), 100 * 1024 ** 2)
    assert.equal(parseBytes('100MiB'), 100 * 1024 ** 2)
    assert.equal(parseBytes('100MB'), 100 * 1024 ** 2)
    assert.equal(parseBytes('2G'), 2 * 1024 ** 3)
    assert.equal(parseBytes('1T'), 1024 ** 4)
    assert.equal(parseBytes('1.5M'), 1.5 * 1024 ** 2)
    assert.equal(parseBytes(' 10 K '), 10 * 1024)
    assert.equal(parseBytes('0'), 0)
  })

  it('passes numbers and undefined through', () => {
    assert.equal(parseBytes(4096), 4096)
    assert.equal(parseBytes(undefined), undefined)
  })

  it('refuses what is not a size', () => {
    for (const bad of ['', 'M', '-5M', '5 X', '1e6', '5MM', 'ten', '0x10']) {
      assert.throws(() => parseBytes(bad), { name: 'ConfigError' }, JSON.stringify(bad))
    }
  })
})
