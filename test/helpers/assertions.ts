/** Small assertions shared by tests: errors are matched by `name`, never by message. */
import assert from 'node:assert/strict'

export async function rejectsWithName (p: Promise<unknown>, name: string): Promise<Error> {
  try {
    await p
  } catch (err) {
    assert.equal((err as Error).name, name, `expected ${name}, got ${(err as Error).name}: ${(err as Error).message}`)
    return err as Error
  }
  assert.fail(`expected ${name}, nothing was thrown`)
}

/** `fn` throws an error named `name` (sync counterpart of rejectsWithName). */
export function throwsWithName (fn: () => unknown, name: string): Error {
  try {
    fn()
  } catch (err) {
    assert.equal((err as Error).name, name, `expected ${name}, got ${(err as Error).name}: ${(err as Error).message}`)
    return err as Error
  }
  assert.fail(`expected ${name}, nothing was thrown`)
}

export async function collect (body: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const c of body) chunks.push(Buffer.from(c))
  return Buffer.concat(chunks)
}
