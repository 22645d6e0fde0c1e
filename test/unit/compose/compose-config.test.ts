/**
 * compose/docker-compose.yml is valid: `docker-compose config -q` (Debian's docker-compose,
 * installed by scripts/install-deps.sh). A missing tool fails the test: it is never skipped.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

/** The repository root: the nearest ancestor holding compose/docker-compose.yml. */
function repoRoot (): string {
  let dir = dirname(fileURLToPath(import.meta.url))
  for (;;) {
    if (existsSync(join(dir, 'compose', 'docker-compose.yml'))) return dir
    const up = dirname(dir)
    if (up === dir) throw new Error('compose/docker-compose.yml not found above the test file')
    dir = up
  }
}

describe('compose file', () => {
  it('validates with docker-compose config', () => {
    const root = repoRoot()
    const file = join(root, 'compose', 'docker-compose.yml')
    const res = spawnSync('docker-compose', ['-f', file, 'config', '-q'], { cwd: root, encoding: 'utf8', timeout: 60_000 })
    if (res.error != null && (res.error as NodeJS.ErrnoException).code === 'ENOENT') {
      assert.fail('docker-compose is not installed: run scripts/install-deps.sh (Debian package docker-compose) to check compose/docker-compose.yml')
    }
    assert.equal(res.error, undefined, `docker-compose could not run: ${String(res.error)}`)
    assert.equal(res.status, 0, `docker-compose config rejected ${file}:\n${res.stderr}${res.stdout}`)
  })

  it('has an origin registry, a supernode and three dfdaemons', () => {
    const root = repoRoot()
    const res = spawnSync('docker-compose', ['-f', join(root, 'compose', 'docker-compose.yml'), 'config', '--services'], { cwd: root, encoding: 'utf8', timeout: 60_000 })
    if (res.error != null) assert.fail(`docker-compose could not run (install it with scripts/install-deps.sh): ${String(res.error)}`)
    assert.equal(res.status, 0, res.stderr)
    assert.deepEqual(res.stdout.trim().split('\n').sort(), ['dfdaemon-1', 'dfdaemon-2', 'dfdaemon-3', 'origin', 'supernode'])
  })
})
