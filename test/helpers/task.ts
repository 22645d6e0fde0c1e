import type { Libp2p, PeerId } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import { FramedStream } from '../../shared/p2p/codec.js'
import { TASK_PROTOCOL } from '../../shared/p2p/protocols.js'
import { TaskAnswer, type TaskRequest } from '../../shared/p2p/task-messages.js'

/** Ask a supernode for a blob's task as a daemon would; every answer until done, error or the end of the stream. */
export async function askTask (node: Pick<Libp2p, 'dialProtocol'>, target: PeerId | Multiaddr, req: TaskRequest): Promise<TaskAnswer[]> {
  const framed = new FramedStream(await node.dialProtocol(target, TASK_PROTOCOL))
  await framed.writeMessage(req)
  const out: TaskAnswer[] = []
  for (;;) {
    const a = await framed.readMessage(TaskAnswer, { allowEnd: true })
    if (a == null) break
    out.push(a)
    if (a.type === 'done' || a.type === 'error') break
  }
  await framed.close()
  return out
}
