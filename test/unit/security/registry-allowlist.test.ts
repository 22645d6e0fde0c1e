import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { throwsWithName } from '../../helpers/assertions.js'
import { RegistryAllowlist } from '../../../shared/security/registry-allowlist.js'

const list = (...patterns: string[]): RegistryAllowlist => new RegistryAllowlist(patterns)

function allowed (l: RegistryAllowlist, names: string[]): void {
  for (const n of names) assert.equal(l.allows(n), true, `${n} should be allowed by ${l.patterns.join(' ')}`)
}

function refused (l: RegistryAllowlist, names: string[]): void {
  for (const n of names) assert.equal(l.allows(n), false, `${n} should be refused by ${l.patterns.join(' ')}`)
}

describe('RegistryAllowlist', () => {
  it('allows every registry when empty or "*"', () => {
    for (const l of [list(), list('*'), list('ghcr.io', '*')]) {
      assert.equal(l.any, true)
      allowed(l, ['docker.io', '10.0.0.1:5000', 'registry.internal', '[::1]:5000'])
      l.check('anything.example')
    }
  })

  it('allows the names listed, case aside, and refuses the rest before anything is asked', () => {
    const l = list('ghcr.io', 'Registry.Internal:5000')
    assert.equal(l.any, false)
    allowed(l, ['ghcr.io', 'GHCR.IO', 'registry.internal:5000'])
    refused(l, ['docker.io', 'quay.io', 'ghcr.io:443', 'registry.internal', 'registry.internal:5001', 'evil.ghcr.io', 'ghcr.io.evil.example'])
    throwsWithName(() => { l.check('quay.io') }, 'RegistryNotAllowedError')
  })

  it('takes Docker Hub by any of its names', () => {
    allowed(list('docker.io'), ['docker.io', 'index.docker.io', 'registry-1.docker.io'])
    allowed(list('index.docker.io'), ['docker.io'])
    refused(list('docker.io'), ['docker.io.example.com', 'mirror.docker.io'])
  })

  it('"*.domain" allows the names below the domain, with the port it names, not the domain itself', () => {
    const l = list('*.corp.example', '*.build.example:5000')
    allowed(l, ['registry.corp.example', 'a.b.corp.example', 'x.build.example:5000'])
    refused(l, ['corp.example', 'evilcorp.example', 'registry.corp.example:5000', 'x.build.example', 'x.build.example:5001', 'corp.example.evil'])
  })

  it('tells bracketed IPv6 addresses apart by port', () => {
    const l = list('[::1]:5000')
    allowed(l, ['[::1]:5000'])
    refused(l, ['[::1]', '[::1]:5001'])
  })

  it('rejects patterns that are not registry names, naming the flag', () => {
    for (const bad of ['https://ghcr.io', 'ghcr.io/team', 'reg*.example', '*example.com', '*.', 'host:99999999', '', ' ']) {
      throwsWithName(() => list(bad), 'ConfigError')
    }
  })
})
