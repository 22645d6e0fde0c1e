import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { DAEMON_DEFAULTS } from '../../../dfdaemon/config.js'
import { containerdSnippet, dockerSnippet, mirrorUrl, podmanSnippet, runtimeSnippet, type PrintConfigSettings } from '../../../dfdaemon/print-config.js'
import { DFDAEMON_BIN } from '../../helpers/processes.js'
import { mirrorHostsToml } from '../../helpers/containerd.js'

const run = promisify(execFile)
const defaults: PrintConfigSettings = { host: DAEMON_DEFAULTS.host, port: DAEMON_DEFAULTS.port, registryEndpoints: {}, insecureRegistries: [] }

describe('print-config snippets', () => {
  it('docker: registry-mirrors with the mirror URL, nothing else on loopback', () => {
    assert.equal(dockerSnippet(defaults), `# /etc/docker/daemon.json — Docker mirrors Docker Hub only; then: systemctl restart docker
{
  "registry-mirrors": [
    "http://127.0.0.1:65001"
  ]
}
`)
  })

  it('docker: a plain-HTTP mirror beyond loopback is also listed as insecure; TLS makes it https', () => {
    const lan = JSON.parse(dockerSnippet({ ...defaults, host: '10.1.2.3' }).split('\n').slice(1).join('\n')) as Record<string, string[]>
    assert.deepEqual(lan, { 'registry-mirrors': ['http://10.1.2.3:65001'], 'insecure-registries': ['10.1.2.3:65001'] })
    const tls = JSON.parse(dockerSnippet({ ...defaults, host: '10.1.2.3', tlsCert: '/etc/cert.pem' }).split('\n').slice(1).join('\n')) as Record<string, string[]>
    assert.deepEqual(tls, { 'registry-mirrors': ['https://10.1.2.3:65001'] })
  })

  it('a wildcard listen address is dialled on loopback; IPv6 is bracketed', () => {
    assert.equal(mirrorUrl({ ...defaults, host: '0.0.0.0' }), 'http://127.0.0.1:65001')
    assert.equal(mirrorUrl({ ...defaults, host: '::' }), 'http://[::1]:65001')
    assert.equal(mirrorUrl({ ...defaults, host: 'fd00::5', port: 7000, tlsCert: 'c' }), 'https://[fd00::5]:7000')
  })

  it('containerd: config_path, and per registry a hosts.toml whose server is where the daemon would fetch it', () => {
    const s = { ...defaults, port: 65123, registryEndpoints: { 'registry.example': 'http://10.0.0.1:5000' }, insecureRegistries: ['reg.lan:5000'] }
    const text = containerdSnippet(s)
    assert.ok(text.includes('[plugins."io.containerd.grpc.v1.cri".registry]\n  config_path = "/etc/containerd/certs.d"\n'))
    // the same hosts.toml the containerd end-to-end test pulls through
    for (const [name, server] of [['docker.io', 'https://registry-1.docker.io'], ['registry.example', 'http://10.0.0.1:5000'], ['reg.lan:5000', 'http://reg.lan:5000']]) {
      assert.ok(text.includes(`# /etc/containerd/certs.d/${name}/hosts.toml\n${mirrorHostsToml(server, 'http://127.0.0.1:65123')}`), name)
    }
    assert.equal(text.match(/hosts\.toml\n/g)?.length, 3)
  })

  it('podman: one [[registry]] per registry with a path-prefix mirror, insecure over plain HTTP', () => {
    assert.equal(podmanSnippet({ ...defaults, registryEndpoints: { 'docker.io': 'http://cache.lan' } }), `# /etc/containers/registries.conf.d/damselfly.conf (podman, CRI-O, skopeo, buildah)
[[registry]]
prefix = "docker.io"
location = "docker.io"

[[registry.mirror]]
location = "127.0.0.1:65001/docker.io"
insecure = true
`)
    const tls = podmanSnippet({ ...defaults, tlsCert: 'c', insecureRegistries: ['reg.lan:5000'] })
    assert.ok(tls.includes('[[registry]]\nprefix = "reg.lan:5000"\nlocation = "reg.lan:5000"\ninsecure = true\n\n[[registry.mirror]]\nlocation = "127.0.0.1:65001/reg.lan:5000"\n'))
    assert.ok(!tls.includes('location = "127.0.0.1:65001/reg.lan:5000"\ninsecure'), 'an HTTPS mirror is not insecure')
  })

  it('`dfdaemon print-config` prints the snippet for its flags and starts nothing', async () => {
    const args = ['--port', '65123', '--host', '0.0.0.0', '--registry-endpoint', 'registry.example=http://10.0.0.1:5000', '--insecure-registry', 'reg.lan:5000']
    const settings = { ...defaults, host: '0.0.0.0', port: 65123, registryEndpoints: { 'registry.example': 'http://10.0.0.1:5000' }, insecureRegistries: ['reg.lan:5000'] }
    for (const runtime of ['docker', 'containerd', 'podman'] as const) {
      const { stdout } = await run(process.execPath, [DFDAEMON_BIN, 'print-config', runtime, ...args], { timeout: 30_000 })
      assert.equal(stdout, runtimeSnippet(runtime, settings), runtime)
    }
    await assert.rejects(run(process.execPath, [DFDAEMON_BIN, 'print-config', 'rkt'], { timeout: 30_000 }), (err: { code?: number }) => err.code === 2)
    await assert.rejects(run(process.execPath, [DFDAEMON_BIN, 'print-config', 'docker', '--port', 'x'], { timeout: 30_000 }), (err: { code?: number }) => err.code === 2)
  })
})
