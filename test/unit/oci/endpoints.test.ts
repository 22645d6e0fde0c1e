import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { endpointFromUrl, resolveEndpoint } from '../../../shared/oci/endpoints.js'

describe('resolveEndpoint', () => {
  it('prefers an explicit mapping', () => {
    assert.deepEqual(resolveEndpoint('docker.io', { endpoints: { 'docker.io': 'http://127.0.0.1:5000/' } }), { name: 'docker.io', url: 'http://127.0.0.1:5000' })
  })

  it('knows Docker Hub, loopback and insecure registries', () => {
    assert.deepEqual(resolveEndpoint('docker.io'), { name: 'docker.io', url: 'https://registry-1.docker.io' })
    assert.deepEqual(resolveEndpoint('index.docker.io'), { name: 'docker.io', url: 'https://registry-1.docker.io' })
    assert.equal(resolveEndpoint('127.0.0.1:5000').url, 'http://127.0.0.1:5000')
    assert.equal(resolveEndpoint('127.9.9.9').url, 'http://127.9.9.9')
    assert.equal(resolveEndpoint('localhost:5000').url, 'http://localhost:5000')
    assert.equal(resolveEndpoint('[::1]:5000').url, 'http://[::1]:5000')
    assert.equal(resolveEndpoint('ghcr.io').url, 'https://ghcr.io')
    assert.equal(resolveEndpoint('128.0.0.1').url, 'https://128.0.0.1')
    assert.equal(resolveEndpoint('reg.lan:5000', { insecure: ['reg.lan:5000'] }).url, 'http://reg.lan:5000')
    assert.equal(resolveEndpoint('reg.lan:5000', { insecure: ['reg.lan'] }).url, 'http://reg.lan:5000')
  })
})

describe('endpointFromUrl', () => {
  it('names an endpoint by host[:port]', () => {
    assert.deepEqual(endpointFromUrl('http://127.0.0.1:5000/'), { name: '127.0.0.1:5000', url: 'http://127.0.0.1:5000' })
    assert.deepEqual(endpointFromUrl('https://registry-1.docker.io'), { name: 'docker.io', url: 'https://registry-1.docker.io' })
    assert.deepEqual(endpointFromUrl('https://mirror.example/prefix/'), { name: 'mirror.example', url: 'https://mirror.example/prefix' })
    assert.throws(() => endpointFromUrl('not a url'), (err: Error) => err.name === 'InvalidReferenceError')
    assert.throws(() => endpointFromUrl('ftp://x'), (err: Error) => err.name === 'InvalidReferenceError')
  })
})
