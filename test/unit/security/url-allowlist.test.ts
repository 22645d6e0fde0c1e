import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { throwsWithName } from '../../helpers/assertions.js'
import { UrlAllowlist } from '../../../shared/security/url-allowlist.js'
import { UrlAccess } from '../../../supernode/auth/url-access.js'

const list = (...patterns: string[]): UrlAllowlist => new UrlAllowlist(patterns)

function allowed (l: UrlAllowlist, urls: string[]): void {
  for (const u of urls) assert.equal(l.allows(u), true, `${u} should be allowed by ${l.patterns.join(' ')}`)
}

function refused (l: UrlAllowlist, urls: string[]): void {
  for (const u of urls) assert.equal(l.allows(u), false, `${u} should be refused by ${l.patterns.join(' ')}`)
}

describe('UrlAllowlist', () => {
  it('allows nothing when empty, and says so', () => {
    const l = list()
    assert.equal(l.empty, true)
    refused(l, ['https://files.example.com/', 'http://127.0.0.1/x'])
    throwsWithName(() => { l.check(new URL('https://files.example.com/a')) }, 'UrlNotAllowedError')
  })

  it('"*" allows any http(s) URL and nothing else', () => {
    const l = list('*')
    assert.equal(l.any, true)
    allowed(l, ['https://files.example.com/a', 'http://127.0.0.1:9/x', 'http://[::1]/'])
    refused(l, ['ftp://files.example.com/a', 'file:///etc/passwd', 'data:,x', 'not a url'])
  })

  it('matches the path prefix on segment boundaries', () => {
    const l = list('https://files.example.com/rel')
    allowed(l, ['https://files.example.com/rel', 'https://files.example.com/rel/', 'https://files.example.com/rel/v1/a.tgz'])
    refused(l, ['https://files.example.com/release', 'https://files.example.com/rel.tgz', 'https://files.example.com/re', 'https://files.example.com/'])
    const slash = list('https://files.example.com/releases/')
    allowed(slash, ['https://files.example.com/releases/v1/a.tgz', 'https://files.example.com/releases'])
    refused(slash, ['https://files.example.com/releasesX/a', 'https://files.example.com/other/releases/a'])
  })

  it('a host-only prefix allows every path on that host and no other host', () => {
    const l = list('https://files.example.com')
    allowed(l, ['https://files.example.com/', 'https://files.example.com/any/path?q=1'])
    refused(l, ['https://files.example.com.evil.example/', 'https://sub.files.example.com/', 'https://evil.example/files.example.com/', 'https://127.0.0.1/'])
  })

  it('compares scheme and port after normalisation', () => {
    refused(list('https://files.example.com/'), ['http://files.example.com/a'])
    allowed(list('https://files.example.com:443/pub/'), ['https://files.example.com/pub/a', 'https://files.example.com:443/pub/a'])
    allowed(list('http://files.example.com/pub/'), ['http://files.example.com:80/pub/a'])
    refused(list('https://files.example.com:8443/'), ['https://files.example.com/a', 'https://files.example.com:9443/a'])
    refused(list('https://files.example.com/'), ['https://files.example.com:8443/a'])
    allowed(list('https://files.example.com:8443/'), ['https://files.example.com:8443/a'])
  })

  it('lowercases scheme and host, never the path', () => {
    const l = list('https://Files.Example.COM/releases/')
    allowed(l, ['HTTPS://FILES.EXAMPLE.COM/releases/a', 'https://files.example.com/releases/a'])
    refused(l, ['https://files.example.com/Releases/a'])
  })

  it('ignores userinfo, so it cannot disguise the host', () => {
    const l = list('https://files.example.com/releases/')
    allowed(l, ['https://user:secret@files.example.com/releases/a'])
    refused(l, [
      'https://files.example.com@evil.example/releases/a',
      'https://files.example.com:443@evil.example/releases/a',
      'https://files.example.com%40evil.example/releases/a'
    ])
  })

  it('resolves dot segments, plain or encoded, before comparing', () => {
    const l = list('https://files.example.com/releases/')
    refused(l, [
      'https://files.example.com/releases/../secret',
      'https://files.example.com/releases/%2e%2e/secret',
      'https://files.example.com/releases/.%2E/secret',
      'https://files.example.com/releases/%2E%2E/%2e%2e/etc/passwd',
      'https://files.example.com/releases\\..\\secret'
    ])
    allowed(l, ['https://files.example.com/releases/./a', 'https://files.example.com/releases/a/../b', 'https://files.example.com/releases/a.%2etgz'])
  })

  it('refuses encoded separators the server might decode into other segments', () => {
    refused(list('https://files.example.com/releases/'), [
      'https://files.example.com/releases/..%2fsecret',
      'https://files.example.com/releases/%2e%2e%2Fsecret',
      'https://files.example.com/releases/..%5Csecret'
    ])
    allowed(list('*'), ['https://files.example.com/releases/..%2fsecret'])
  })

  it('matches IPv6 literals in their canonical form, with the port', () => {
    const l = list('http://[::1]:8080/pub/')
    allowed(l, ['http://[::1]:8080/pub/a', 'http://[0:0:0:0:0:0:0:1]:8080/pub/a'])
    refused(l, ['http://[::1]:8081/pub/a', 'http://[::2]:8080/pub/a', 'http://[::1]/pub/a', 'http://127.0.0.1:8080/pub/a'])
    allowed(list('http://[::1]/'), ['http://[::1]:80/x'])
  })

  it('plays no part for query and fragment', () => {
    const l = list('https://files.example.com/releases/')
    allowed(l, ['https://files.example.com/releases/a?sig=x#frag'])
    refused(l, ['https://files.example.com/other?path=/releases/a', 'https://files.example.com/other#/releases/a'])
  })

  it('refuses a redirect target with its own error', () => {
    const l = list('https://files.example.com/releases/')
    l.check(new URL('https://files.example.com/releases/a'), true)
    throwsWithName(() => { l.check(new URL('http://169.254.169.254/latest/meta-data/'), true) }, 'UrlNotAllowedError')
    throwsWithName(() => { l.check(new URL('https://files.example.com/private/a')) }, 'UrlNotAllowedError')
  })

  it('rejects patterns that are not http(s) URL prefixes', () => {
    for (const bad of ['files.example.com/releases/', 'ftp://files.example.com/', 'https://*.example.com/', 'https://files.example.com/*',
      'https://files.example.com/a?x=1', 'https://files.example.com/#a', 'https://u:p@files.example.com/', 'https://files.example.com/a%2Fb/', '']) {
      throwsWithName(() => new UrlAllowlist([bad]), 'ConfigError')
    }
  })
})

describe('UrlAccess.admit', () => {
  const access = (patterns: string[]): UrlAccess => new UrlAccess({
    visibility: { isPublic: () => false, set: async () => {} },
    store: { getComplete: async () => undefined },
    running: () => [],
    tickets: { ticketFor: async () => 'ticket' },
    urls: new UrlAllowlist(patterns)
  })

  it('returns the URL as it was checked', () => {
    assert.equal(access(['https://files.example.com/releases/']).admit('HTTPS://FILES.example.com:443/releases/./a').href, 'https://files.example.com/releases/a')
  })

  it('refuses URLs off the list, with credentials, or not http(s)', () => {
    throwsWithName(() => access([]).admit('https://files.example.com/releases/a'), 'UrlNotAllowedError')
    throwsWithName(() => access(['https://files.example.com/releases/']).admit('https://files.example.com/private/a'), 'UrlNotAllowedError')
    throwsWithName(() => access(['*']).admit('https://user:pw@files.example.com/a'), 'DeniedError')
    throwsWithName(() => access(['*']).admit('file:///etc/passwd'), 'DeniedError')
  })
})
